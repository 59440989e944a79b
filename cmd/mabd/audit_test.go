package main

// Tests of `mabd image audit` against a real registry, with busybox images
// built by go-containerregistry: the host's x86-64 busybox, and Debian's
// arm64 and s390x ones from the fixtures.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/builder/audit"
	"mabd/builder/buildertest"
	"mabd/internal/cli"
	"mabd/testing/registry"
)

// auditJSON runs `mabd image audit --json` and decodes the report.
func auditJSON(t *testing.T, args ...string) (int, audit.Report) {
	t.Helper()
	code, out, _ := mabd(t, append([]string{"image", "audit", "--json"}, args...)...)
	var rep audit.Report
	if code != cli.ExitError {
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("audit --json: %v\n%s", err, out)
		}
	}
	return code, rep
}

// TestImageAuditWrongArchitecture is the article's mistake: an image that
// says it is arm64 but holds the build host's x86-64 busybox.
func TestImageAuditWrongArchitecture(t *testing.T) {
	addr := registry.Start(t)
	wrong, _, err := registry.BusyboxImage(registry.Base{Platform: "linux/arm64", Busybox: registry.HostBusybox})
	if err != nil {
		t.Fatal(err)
	}
	ref := addr + "/wrong:v1"
	mfPush(t, ref, wrong)
	layers, _ := wrong.Layers()
	layer, _ := layers[0].Digest()

	code, out, _ := mabd(t, "image", "audit", ref)
	want := "linux/arm64 image contains x86_64 /bin/busybox (layer " + layer.String() + ")"
	if code != cli.ExitDegraded || !strings.Contains(out, want) || !strings.Contains(out, "1 platform audited: 0 clean, 1 with mismatches") {
		t.Errorf("audit %s: exit %d, want 1 and %q:\n%s", ref, code, want, out)
	}
	code, rep := auditJSON(t, ref)
	ps := rep.Problems()
	if code != cli.ExitDegraded || len(ps) != 1 || ps[0].Path != "/bin/busybox" || ps[0].Layer != layer.String() || ps[0].Found != "x86_64" || ps[0].Expected != "aarch64" {
		t.Errorf("audit --json: %d %+v", code, ps)
	}

	// In an index, next to a right amd64 image, and one whose index entry
	// says s390x over an amd64 config: only those two are flagged.
	amd := mfBusybox(t, "amd64")
	s390x := &v1.Platform{OS: "linux", Architecture: "s390x"}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: wrong, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: s390x}},
	)
	multi := addr + "/wrong:multi"
	mfPush(t, multi, idx)
	code, rep = auditJSON(t, multi)
	if code != cli.ExitDegraded || len(rep.Platforms) != 3 || rep.Platforms[0].Failed() || !rep.Platforms[1].Failed() || !rep.Platforms[2].Failed() {
		t.Fatalf("audit %s: %d %+v", multi, code, rep.Platforms)
	}
	s := rep.Platforms[2]
	if len(s.Problems) != 2 || s.Problems[0].Kind != audit.KindConfig || s.Config != "linux/amd64" || s.Problems[1].Found != "x86_64" || s.Problems[1].Expected != "s390x" {
		t.Errorf("s390x entry: %+v", s)
	}
	if code, _ := auditJSON(t, "--platform", "linux/amd64", multi); code != 0 {
		t.Errorf("--platform linux/amd64: exit %d", code)
	}
	if code, rep := auditJSON(t, "--platform", "linux/arm64,linux/s390x", multi); code != cli.ExitDegraded || len(rep.Platforms) != 2 {
		t.Errorf("--platform linux/arm64,linux/s390x: %d %d", code, len(rep.Platforms))
	}
	if code, _, errs := mabd(t, "image", "audit", "--platform", "linux/riscv64", multi); code != cli.ExitError || !strings.Contains(errs, "no linux/riscv64 image") {
		t.Errorf("--platform linux/riscv64: %d %q", code, errs)
	}
	if code, _, errs := mabd(t, "image", "audit", addr+"/wrong:nope"); code != cli.ExitError || !strings.Contains(errs, "not found") {
		t.Errorf("missing image: %d %q", code, errs)
	}
}

// TestImageAuditClean audits a right two-platform busybox image, and an
// arm64 image whose extra layer holds scripts and data files, none of
// them flagged.
func TestImageAuditClean(t *testing.T) {
	addr := registry.Start(t)
	ref := registry.PushBusyboxBase(t, addr, "base/busybox", "amd64", "arm64")
	code, out, _ := mabd(t, "image", "audit", ref)
	if code != 0 || !strings.Contains(out, "2 platforms audited: 2 clean, 0 with mismatches") {
		t.Errorf("audit %s: %d\n%s", ref, code, out)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := map[string]string{
		"usr/local/bin/entrypoint.sh": "#!/bin/sh\nexec \"$@\"\n",
		"usr/local/bin/tool.py":       "#!/usr/bin/env python3\nprint('hi')\n",
		"etc/app/config.json":         `{"listen": ":8080"}`,
		"usr/share/app/blob.bin":      strings.Repeat("\x00\x01\x02\xff", 4096),
		"usr/share/app/elfish":        "\x7fELF", // too short to be ELF
		"usr/share/app/notes.txt":     "ELF files are checked; this is not one\n",
	}
	for n, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	extra, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mfBusybox(t, "arm64"), extra)
	if err != nil {
		t.Fatal(err)
	}
	app := addr + "/app:arm64"
	mfPush(t, app, img)
	code, rep := auditJSON(t, app)
	if code != 0 || len(rep.Platforms) != 1 || len(rep.Platforms[0].Layers) != 2 {
		t.Fatalf("audit %s: %d %+v", app, code, rep)
	}
	p := rep.Platforms[0]
	if p.Platform != "linux/arm64" || len(p.Problems) != 0 || p.Layers[0].ELF != 1 || p.Layers[1].Files != len(files) || p.Layers[1].ELF != 0 {
		t.Errorf("scripts and data: %+v", p)
	}
}

// TestImageAuditNothingToAudit: an image with nothing to audit used to
// pass ("0 platforms audited", exit 0); it fails (exit 1) saying why.
// --platform that matches nothing, or an empty one, is an error (exit 2).
func TestImageAuditNothingToAudit(t *testing.T) {
	dir := t.TempDir()
	if _, err := layout.Write(dir, empty.Index); err != nil {
		t.Fatal(err)
	}
	ref := "oci-layout:" + dir
	code, out, _ := mabd(t, "image", "audit", ref)
	if want := "failed: " + ref + " lists no image: there is nothing to audit"; code != cli.ExitDegraded || !strings.Contains(out, want) {
		t.Errorf("audit of an empty index: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	code, rep := auditJSON(t, ref)
	if code != cli.ExitDegraded || rep.OK() || !strings.Contains(rep.Failure, "nothing to audit") {
		t.Errorf("audit --json of an empty index: exit %d, %+v", code, rep)
	}
	for _, c := range []struct {
		platform, want string
	}{
		{"linux/arm64", "no linux/arm64 image (it has no image of any platform)"},
		{"", "--platform is empty"},
	} {
		if code, _, errs := mabd(t, "image", "audit", "--platform", c.platform, ref); code != cli.ExitError || !strings.Contains(errs, c.want) {
			t.Errorf("--platform %q: exit %d, %q; want 2 and %q", c.platform, code, errs, c.want)
		}
	}
}

// TestImageAuditLayerIsDevZero: a layout whose layer is a symlink to
// /dev/zero used to make the audit run forever; it is refused (exit 2).
func TestImageAuditLayerIsDevZero(t *testing.T) {
	img := mfBusybox(t, "amd64")
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	blob := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", blob); err != nil {
		t.Fatal(err)
	}
	code, _, errs := mabd(t, "image", "audit", "oci-layout:"+dir)
	if code != cli.ExitError || !strings.Contains(errs, "not a regular file: it is a character device (through a symlink to /dev/zero)") {
		t.Errorf("audit: exit %d, %q", code, errs)
	}
}

// TestImageAuditOfBuild: `mabd build --audit` audits what a real buildkitd
// (linux/amd64 only: no binfmt handler needed) pushed, and the OCI tarball
// it wrote, which passes the archive checks (regular files only, sizes and
// digests).
func TestImageAuditOfBuild(t *testing.T) {
	hello := helloExample(t)
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64")
	addr := buildertest.Start(t, "linux/amd64").Address()
	build := []string{"build", "--addr", addr, "--progress", "plain", "--platform", "linux/amd64", "--build-arg", "BASE=" + base, "--audit"}
	for _, args := range [][]string{
		{"--push", "-t", reg + "/demo:v1", "--insecure-registry", reg},
		{"--output", "type=oci,dest=" + filepath.Join(t.TempDir(), "demo.tar")},
	} {
		code, _, errs := mabd(t, append(append(build, args...), hello)...)
		if code != 0 || !strings.Contains(errs, "1 platform audited: 1 clean, 0 with mismatches") {
			t.Errorf("mabd build --audit %s: exit %d\n%s", strings.Join(args, " "), code, errs)
		}
	}
}
