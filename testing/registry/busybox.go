package registry

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/binfmt"
	"mabd/testing/fixtures"
)

// HostBusybox is the host's static busybox (Debian's busybox-static), the
// amd64 one of [PushBusyboxBase].
const HostBusybox = "/bin/busybox"

// Applets are the commands a busybox image links to bin/busybox.
var Applets = []string{"sh", "cat", "uname", "echo", "true", "false", "ls", "mkdir", "rm", "env"}

// Base is one platform of a busybox base image.
type Base struct {
	// Platform is its OCI platform: "linux/arm64", "linux/arm/v7".
	Platform string
	// Busybox is the path of a static busybox built for it.
	Busybox string
}

// epoch is the modification time of every file of the layer, so that the
// same busybox always gives the same digest.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// busyboxLayer is a tar of bin/busybox, its applet links, an /etc with
// root in passwd and group, and empty /tmp, /proc, /dev and /root.
func busyboxLayer(busybox string) ([]byte, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"root", 0o700}, {"tmp", 0o1777}} {
		if err := dir(d.name, d.mode); err != nil {
			return nil, err
		}
	}
	if err := file("bin/busybox", 0o755, bb); err != nil {
		return nil, err
	}
	for _, a := range Applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte("root:x:0:\n")); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BusyboxImage builds a one-layer OCI image of busybox for platform, whose
// command is sh.
func BusyboxImage(b Base) (v1.Image, *v1.Platform, error) {
	p, err := platforms.Parse(b.Platform)
	if err != nil {
		return nil, nil, err
	}
	p = platforms.Normalize(p)
	data, err := busyboxLayer(b.Busybox)
	if err != nil {
		return nil, nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Cmd = []string{"sh"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, nil, err
	}
	return img, &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}, nil
}

// BusyboxIndex builds an OCI image index with one busybox image per base,
// in their order.
func BusyboxIndex(bases ...Base) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range bases {
		img, p, err := BusyboxImage(b)
		if err != nil {
			return nil, fmt.Errorf("busybox image for %s: %w", b.Platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return idx, nil
}

// PushIndex pushes idx to ref ("127.0.0.1:5000/busybox:latest") over plain
// HTTP.
func PushIndex(ref string, idx v1.ImageIndex) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.WriteIndex(r, idx)
}

// DebianBase returns the base for a Debian architecture: the host's
// /bin/busybox for amd64, the fixture (fixtures/busybox/<arch>) otherwise.
func DebianBase(t testing.TB, debArch string) Base {
	t.Helper()
	a, err := binfmt.Lookup(debArch)
	if err != nil || a.Platform == "" {
		t.Fatalf("registry: Debian architecture %q has no OCI platform: %v", debArch, err)
	}
	if debArch == "amd64" {
		if _, err := os.Stat(HostBusybox); err != nil {
			t.Fatalf("registry: %v: install busybox-static (make deps)", err)
		}
		return Base{Platform: a.Platform, Busybox: HostBusybox}
	}
	return Base{Platform: a.Platform, Busybox: fixtures.Busybox(t, debArch)}
}

// PushBusyboxBase builds a busybox base image for the Debian architectures
// debArches (default amd64 and arm64), pushes it to the registry at addr as
// repo:latest and returns its reference ("ADDR/REPO:latest").
func PushBusyboxBase(t testing.TB, addr, repo string, debArches ...string) string {
	t.Helper()
	if len(debArches) == 0 {
		debArches = []string{"amd64", "arm64"}
	}
	var bases []Base
	for _, a := range debArches {
		bases = append(bases, DebianBase(t, a))
	}
	idx, err := BusyboxIndex(bases...)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	ref := addr + "/" + repo + ":latest"
	if err := PushIndex(ref, idx); err != nil {
		t.Fatalf("registry: push %s: %v", ref, err)
	}
	return ref
}
