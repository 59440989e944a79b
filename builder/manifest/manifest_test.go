package manifest_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/builder/manifest"
	"mabd/testing/registry"
)

func TestParseReference(t *testing.T) {
	for _, c := range []struct {
		in         string
		kind       manifest.Kind
		path, tag  string
		digest     bool
		name, fail string
	}{
		{in: "127.0.0.1:5000/demo:v1", kind: manifest.Registry, name: "127.0.0.1:5000/demo:v1"},
		{in: "alpine", kind: manifest.Registry, name: "index.docker.io/library/alpine:latest"},
		{in: "oci-layout:out", kind: manifest.Layout, path: "out"},
		{in: "oci-layout:/tmp/a:b/out:v1", kind: manifest.Layout, path: "/tmp/a:b/out", tag: "v1"},
		{in: "oci-archive:out.tar:latest", kind: manifest.Archive, path: "out.tar", tag: "latest"},
		{in: "oci-archive:out.tar@sha256:" + strings.Repeat("ab", 32), kind: manifest.Archive, path: "out.tar", digest: true},
		{in: "oci-archive:out.tar@sha256:abc", fail: "digest"},
		{in: "oci-layout:", fail: "no path"},
		{in: "docker://alpine", fail: "without a scheme"},
		{in: "UPPER/case", fail: "parse reference"},
	} {
		r, err := manifest.ParseReference(c.in, manifest.Options{})
		if c.fail != "" {
			if err == nil || !strings.Contains(err.Error(), c.fail) {
				t.Errorf("%s: error %v, want %q", c.in, err, c.fail)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if r.Kind != c.kind || r.Path != c.path || r.Tag != c.tag || (r.Digest != nil) != c.digest || r.String() != c.in {
			t.Errorf("%s: %+v", c.in, r)
		}
		if c.name != "" && r.Name.Name() != c.name {
			t.Errorf("%s: name %s", c.in, r.Name.Name())
		}
	}
}

// TestLocalRegistry: which registries are on this machine, and so reached
// over plain HTTP without being named insecure.
func TestLocalRegistry(t *testing.T) {
	for _, c := range []struct {
		ref, host string
		local     bool
	}{
		{"localhost/demo:v1", "localhost", true},
		{"localhost:5000/demo:v1", "localhost:5000", true},
		{"127.0.0.1:5000/demo:v1", "127.0.0.1:5000", true},
		{"127.0.0.1/demo", "127.0.0.1", true},
		{"127.1.2.3:80/a/b@sha256:" + strings.Repeat("ab", 32), "127.1.2.3:80", true},
		{"[::1]:5000/demo:v1", "[::1]:5000", true},
		{"[::1]/demo", "[::1]", true},
		{"registry.example:5000/demo:v1", "registry.example:5000", false},
		{"10.0.0.1:5000/demo", "10.0.0.1:5000", false},
		{"[2001:db8::1]:5000/demo", "[2001:db8::1]:5000", false},
		{"localhost.example/demo", "localhost.example", false},
		{"alpine", "docker.io", false},
		{"library/alpine:3", "docker.io", false},
		{"localhost", "docker.io", false}, // a Docker Hub repository named localhost
	} {
		host := manifest.RegistryHost(c.ref)
		if host != c.host || manifest.LocalRegistry(host) != c.local {
			t.Errorf("%s: host %q, local %v; want %q, %v", c.ref, host, manifest.LocalRegistry(host), c.host, c.local)
		}
	}
}

// ociArchive writes a BuildKit-like OCI layout of a two-platform busybox
// index (index.json → image index → manifests) named ref.name "v1", and its
// tarball.
func ociArchive(t *testing.T) (dir, file string, idx v1.ImageIndex) {
	t.Helper()
	idx, err := registry.BusyboxIndex(registry.DebianBase(t, "amd64"), registry.DebianBase(t, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	dir, file = registry.WriteOCIArchive(t, idx)
	return dir, file, idx
}

// TestLayouts resolves the same nested index from a directory and a
// tarball, by default, by tag and by digest.
func TestLayouts(t *testing.T) {
	ctx := context.Background()
	dir, file, idx := ociArchive(t)
	want, _ := idx.Digest()
	im, _ := idx.IndexManifest()
	for _, base := range []string{"oci-layout:" + dir, "oci-archive:" + file} {
		for _, ref := range []string{base, base + ":v1", base + "@" + want.String()} {
			a, err := manifest.Resolve(ctx, ref, manifest.Options{})
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			if a.Index == nil || a.Descriptor.Digest != want || a.Descriptor.MediaType != types.OCIImageIndex {
				t.Errorf("%s: resolved to %+v", ref, a.Descriptor)
			}
			ms, err := a.Manifests()
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			if len(ms) != 2 {
				t.Fatalf("%s: %d manifests", ref, len(ms))
			}
			for i, m := range ms {
				if m.Descriptor.Digest != im.Manifests[i].Digest || m.Descriptor.Platform.String() != im.Manifests[i].Platform.String() {
					t.Errorf("%s: manifest %d: %+v", ref, i, m.Descriptor)
				}
				if !strings.HasPrefix(m.Ref, base+"@sha256:") || len(m.Indexes) != 1 || m.Indexes[0] != want {
					t.Errorf("%s: manifest %d: ref %s, indexes %v", ref, i, m.Ref, m.Indexes)
				}
				// Layers stream from the archive, their digest checked.
				ls, err := m.Image.Layers()
				if err != nil {
					t.Fatal(err)
				}
				rc, err := ls[0].Compressed()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Errorf("%s: layer: %v", ref, err)
				}
				rc.Close()
			}
			// One image of the index, by digest.
			one, err := manifest.Resolve(ctx, base+"@"+ms[1].Descriptor.Digest.String(), manifest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if one.Image == nil || one.Descriptor.Platform == nil || one.Descriptor.Platform.Architecture != "arm64" {
				t.Errorf("%s@arm64 digest: %+v", base, one.Descriptor)
			}
			a.Close()
			one.Close()
		}
		if _, err := manifest.Resolve(ctx, base+":v2", manifest.Options{}); !errors.Is(err, manifest.ErrNotFound) || !strings.Contains(err.Error(), "it has v1") {
			t.Errorf("%s:v2: %v", base, err)
		}
	}
	if _, err := manifest.Resolve(ctx, "oci-archive:"+filepath.Join(t.TempDir(), "missing.tar"), manifest.Options{}); !errors.Is(err, manifest.ErrNotFound) {
		t.Errorf("missing archive: %v", err)
	}
	if _, err := manifest.Resolve(ctx, "oci-layout:"+file, manifest.Options{}); err == nil || !strings.Contains(err.Error(), "oci-archive:") {
		t.Errorf("a file as a layout: %v", err)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1.00kB", 2_112_000: "2.11MB", 999_999: "1.00MB", 999_400: "999kB", 12_345_678: "12.3MB"} {
		if got := manifest.HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
