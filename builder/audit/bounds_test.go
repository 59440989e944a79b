package audit_test

// Tests of audits that must not pass or run on: layers that are not
// regular files or not what their descriptor says, and images with
// nothing to audit.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/builder/audit"
)

// writeLayout writes an OCI layout whose index.json lists idx's manifests.
func writeLayout(t *testing.T, idx v1.ImageIndex) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAuditLayerBounded audits an image whose layer blob is replaced by
// /dev/zero (the audit used to run forever), a FIFO (it used to hang), a
// longer file, or other bytes: each is an error, not a report.
func TestAuditLayerBounded(t *testing.T) {
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	script := layerTar(t, tarFile{name: "bin/run.sh", data: []byte("#!/bin/sh\necho hi\n")})
	for _, c := range []struct {
		name   string
		mangle func(t *testing.T, p string)
		want   string // "" audits fine
	}{
		{name: "plain"},
		{name: "the zero device", mangle: func(t *testing.T, p string) { os.Remove(p); must(t, os.Symlink("/dev/zero", p)) }, want: "not a regular file"},
		{name: "a FIFO", mangle: func(t *testing.T, p string) { os.Remove(p); must(t, syscall.Mkfifo(p, 0o644)) }, want: "not a regular file"},
		{name: "longer than its descriptor", mangle: func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			f.Write(make([]byte, 1<<20))
			f.Close()
		}, want: "its descriptor says"},
		{name: "other bytes", mangle: func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			must(t, err)
			b[4] ^= 1 // the gzip header's mtime: gzip itself does not mind
			must(t, os.WriteFile(p, b, 0o644))
		}, want: "does not match its digest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := image(t, arm, script)
			idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &arm}})
			dir := writeLayout(t, idx)
			ls, _ := img.Layers()
			d, _ := ls[0].Digest()
			if c.mangle != nil {
				c.mangle(t, filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
			}
			rep, err := audit.Audit(context.Background(), "oci-layout:"+dir, audit.Options{})
			switch {
			case c.want == "" && (err != nil || !rep.OK()):
				t.Errorf("audit: %v %+v", err, rep)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), d.String())):
				t.Errorf("error %v, want one saying %q of layer %s", err, c.want, d)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditNothingToAudit: an audit that audits no image fails, saying
// why; --platform that matches nothing is an error.
func TestAuditNothingToAudit(t *testing.T) {
	sparc := v1.Platform{OS: "linux", Architecture: "sparc64"}
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	script := layerTar(t, tarFile{name: "bin/run.sh", data: []byte("#!/bin/sh\n")})
	emptyIndex := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, c := range []struct {
		name      string
		idx       v1.ImageIndex
		platforms []string
		failure   string // Report.Failure
		err       string // or the error
	}{
		{name: "an empty index", idx: emptyIndex, failure: "lists no image: there is nothing to audit"},
		{name: "an empty index, one platform asked", idx: emptyIndex, platforms: []string{"linux/arm64"}, err: "no linux/arm64 image (it has no image of any platform)"},
		{name: "only a platform without an ELF table entry", failure: "no image of", idx: mutate.AppendManifests(emptyIndex,
			mutate.IndexAddendum{Add: image(t, sparc, script), Descriptor: v1.Descriptor{Platform: &sparc}})},
		{name: "a platform not there", platforms: []string{"linux/s390x"}, err: "no linux/s390x image (it has linux/arm64)", idx: mutate.AppendManifests(emptyIndex,
			mutate.IndexAddendum{Add: image(t, arm, script), Descriptor: v1.Descriptor{Platform: &arm}})},
		{name: "one image audited, one skipped", idx: mutate.AppendManifests(emptyIndex,
			mutate.IndexAddendum{Add: image(t, arm, script), Descriptor: v1.Descriptor{Platform: &arm}},
			mutate.IndexAddendum{Add: image(t, sparc, script), Descriptor: v1.Descriptor{Platform: &sparc}})},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeLayout(t, c.idx)
			// index.json lists the index, as BuildKit's tarball does.
			p, err := layout.Write(t.TempDir(), empty.Index)
			must(t, err)
			must(t, os.MkdirAll(filepath.Join(string(p), "blobs", "sha256"), 0o755)) // for an empty index, no blob made it
			must(t, p.AppendIndex(c.idx))
			for _, ref := range []string{"oci-layout:" + dir, "oci-layout:" + string(p)} {
				rep, err := audit.Audit(context.Background(), ref, audit.Options{Platforms: c.platforms})
				switch {
				case c.err != "":
					if err == nil || !strings.Contains(err.Error(), c.err) {
						t.Errorf("%s: error %v, want %q", ref, err, c.err)
					}
				case err != nil:
					t.Errorf("%s: %v", ref, err)
				case c.failure == "" && (!rep.OK() || rep.Failure != ""):
					t.Errorf("%s: report %+v, want it to pass", ref, rep)
				case c.failure != "" && (rep.OK() || !strings.Contains(rep.Failure, c.failure)):
					t.Errorf("%s: OK %v, failure %q; want it to fail with %q", ref, rep.OK(), rep.Failure, c.failure)
				}
			}
		})
	}
}
