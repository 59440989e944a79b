package main

// End-to-end tests of `mabd build`: a real buildkitd under builder's
// supervisor (bin/buildkitd, runc), a real registry (Debian's
// docker-registry), a busybox base image for amd64 and arm64, the arm64
// handler in the HOST's binfmt_misc table (BuildKit runs RUN steps in the
// host's user namespace; the handler is removed afterwards unless it was
// there before) and skopeo as an independent client. `make deps` installs
// all of it.

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"mabd/builder/buildertest"
	"mabd/emulator"
	"mabd/internal/cli"
	"mabd/testing/fixtures"
	"mabd/testing/registry"
)

// skopeo runs skopeo (for at most a minute) and returns its stdout.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "skopeo", args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s(install skopeo: make deps)", args, err, errb.String())
	}
	return out
}

func platformOf(p *ocispecs.Platform) string {
	if p == nil {
		return "<none>"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// archFiles reads /arch of every image of the OCI layout dir, whose
// index.json points at one image index, by platform.
func archFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 {
		t.Fatalf("index.json of %s has %d entries, want the image index", dir, len(tm.Manifests))
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc := mutate.Extract(img)
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == "arch" || h.Name == "/arch" || h.Name == "./arch" {
				b, _ := io.ReadAll(tr)
				p := d.Platform.OS + "/" + d.Platform.Architecture
				got[p] = strings.TrimSpace(string(b))
			}
		}
		rc.Close()
	}
	return got
}

// tarFiles reads the files of the tarball file that keep selects, by name.
func tarFiles(t *testing.T, file string, keep func(*tar.Header) bool) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if keep(h) {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return files
}

// ociTarball reads an OCI layout tarball: its index.json must point at one
// image index, whose manifests' platforms are returned.
func ociTarball(t *testing.T, file string) []string {
	t.Helper()
	files := tarFiles(t, file, func(h *tar.Header) bool {
		return h.Name == "index.json" || strings.HasPrefix(h.Name, "blobs/") && h.Size < 1<<20
	})
	var top, idx ocispecs.Index
	if err := json.Unmarshal(files["index.json"], &top); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].MediaType != ocispecs.MediaTypeImageIndex {
		t.Fatalf("index.json: %+v, want one image index", top.Manifests)
	}
	blob := func(d ocispecs.Descriptor) []byte {
		return files["blobs/"+d.Digest.Algorithm().String()+"/"+d.Digest.Encoded()]
	}
	if err := json.Unmarshal(blob(top.Manifests[0]), &idx); err != nil {
		t.Fatalf("nested index: %v", err)
	}
	var ps []string
	for _, m := range idx.Manifests {
		if m.MediaType != ocispecs.MediaTypeImageManifest || blob(m) == nil {
			t.Errorf("nested index entry %+v is not a manifest in the tarball", m)
		}
		ps = append(ps, platformOf(m.Platform))
	}
	sort.Strings(ps)
	return ps
}

// helloExample checks the tools the build tests use and returns the path
// of examples/hello.
func helloExample(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"skopeo", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%v: install %s (make deps)", err, tool)
		}
	}
	root, err := fixtures.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "examples", "hello")
}

func TestBuild(t *testing.T) {
	hello := helloExample(t)

	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64", "i386")
	t0 := time.Now()
	// The builder emulates arm64 in its private binfmt_misc table: the
	// host's table is not used (it is empty on a fresh host).
	// linux/386 too: native where the kernel runs it, else emulated in
	// the private table as well.
	s := buildertest.Start(t, "linux/amd64", "linux/arm64", "linux/386")
	t.Logf("builder ready in %v", time.Since(t0))
	addr := s.Address()
	machine386 := "i686"
	if emulator.IsNative("i386") {
		machine386 = "x86_64"
	}

	t.Run("WorkersListArm64", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, buildertest.Bin(t, "buildctl"), "--addr", addr, "debug", "workers").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "linux/arm64") {
			t.Fatalf("buildctl debug workers: %v\n%s", err, out)
		}
	})

	t.Run("PushTwoPlatforms", func(t *testing.T) {
		ref := reg + "/demo:v1"
		oci := filepath.Join(t.TempDir(), "demo.tar")
		t0 := time.Now()
		code, stdout, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain",
			"--platform", "linux/amd64,linux/arm64", "--push", "-t", ref, "--insecure-registry", reg,
			"--build-arg", "BASE="+base, "--output", "type=oci,dest="+oci, hello)
		t.Logf("built and pushed in %v", time.Since(t0))
		if code != 0 {
			t.Fatalf("exit status %d\n%s", code, stderr)
		}
		digest := strings.TrimSpace(stdout)
		if !strings.HasPrefix(digest, "sha256:") || strings.Contains(digest, "\n") {
			t.Fatalf("stdout %q, want the digest", stdout)
		}
		if !strings.Contains(stderr, "RUN uname -m > /arch") {
			t.Errorf("the progress display does not show the step:\n%s", stderr)
		}

		raw := skopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
		var idx ocispecs.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatalf("skopeo inspect --raw: %v\n%s", err, raw)
		}
		var ps []string
		for _, m := range idx.Manifests {
			ps = append(ps, platformOf(m.Platform))
		}
		sort.Strings(ps)
		if idx.MediaType != ocispecs.MediaTypeImageIndex || !slices.Equal(ps, []string{"linux/amd64", "linux/arm64"}) {
			t.Fatalf("pushed %s with platforms %q, want an image index of linux/amd64 and linux/arm64:\n%s", idx.MediaType, ps, raw)
		}
		sum := sha256.Sum256(raw)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
			t.Errorf("printed digest %s, the registry's index is %s", digest, got)
		}

		dir := filepath.Join(t.TempDir(), "layout")
		skopeo(t, "copy", "--all", "--src-tls-verify=false", "docker://"+ref, "oci:"+dir+":v1")
		arch := archFiles(t, dir)
		if arch["linux/amd64"] != "x86_64" || arch["linux/arm64"] != "aarch64" {
			t.Errorf("/arch by platform: %q, want x86_64 and aarch64", arch)
		}

		if ps := ociTarball(t, oci); !slices.Equal(ps, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("OCI tarball platforms %q", ps)
		}

		// mabd manifest inspect agrees with skopeo on what mabd build
		// pushed, byte for byte, and reads the OCI tarball it wrote.
		code, inspected, _ := mabd(t, "manifest", "inspect", "--raw", ref)
		if code != 0 || inspected != string(raw) {
			t.Errorf("mabd manifest inspect --raw %s: exit %d, differs from skopeo's\n%s", ref, code, inspected)
		}
		code, table, _ := mabd(t, "manifest", "inspect", "--format", "table", "oci-archive:"+oci)
		if code != 0 || !strings.Contains(table, "linux/amd64") || !strings.Contains(table, "linux/arm64") {
			t.Errorf("mabd manifest inspect oci-archive:%s: exit %d\n%s", oci, code, table)
		}
	})

	t.Run("DefaultPlatformIsTheHosts", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain",
			"--build-arg", "BASE="+base, "--output", "type=local,dest="+out, hello)
		if code != 0 {
			t.Fatalf("exit status %d\n%s", code, stderr)
		}
		// One platform: its files straight in the directory.
		if b, err := os.ReadFile(filepath.Join(out, "arch")); err != nil || strings.TrimSpace(string(b)) != "x86_64" {
			t.Errorf("arch: %q, %v; want x86_64, the build host's", b, err)
		}
	})

	t.Run("DockerDefaultPlatform", func(t *testing.T) {
		t.Setenv("DOCKER_DEFAULT_PLATFORM", "linux/arm64")
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain",
			"--build-arg", "BASE="+base, "--output", "type=local,dest="+out, hello)
		if code != 0 {
			t.Fatalf("exit status %d\n%s", code, stderr)
		}
		if b, err := os.ReadFile(filepath.Join(out, "arch")); err != nil || strings.TrimSpace(string(b)) != "aarch64" {
			t.Errorf("arch: %q, %v; want aarch64", b, err)
		}
	})

	t.Run("AllPlatforms", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain", "--platform", "all",
			"--build-arg", "BASE="+base, "--output", "type=local,dest="+out, hello)
		if code != 0 {
			t.Fatalf("exit status %d\n%s", code, stderr)
		}
		for dir, want := range map[string]string{"linux_amd64": "x86_64", "linux_arm64": "aarch64", "linux_386": machine386} {
			b, err := os.ReadFile(filepath.Join(out, dir, "arch"))
			if err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("%s/arch: %q, %v; want %s", dir, b, err, want)
			}
		}
		if des, _ := os.ReadDir(out); len(des) != 3 {
			t.Errorf("built %d platforms, want 3 (every platform the builder verified: amd64, 386, the emulated arm64)", len(des))
		}
	})

	t.Run("UnsupportedPlatformRefused", func(t *testing.T) {
		code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain",
			"--platform", "linux/amd64,linux/s390x", "--build-arg", "BASE="+base, hello)
		if code != cli.ExitError {
			t.Errorf("exit status %d, want %d", code, cli.ExitError)
		}
		// mabd's private builder: the host's table says nothing about it.
		want := "linux/s390x is not supported by the builder (its platforms: linux/amd64, linux/386, linux/arm64): linux/s390x: add s390x to [buildkit] architectures"
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
		if strings.Contains(stderr, "#1 ") || strings.Contains(stderr, "load build definition") {
			t.Errorf("a build started:\n%s", stderr)
		}
	})

	t.Run("FailingStep", func(t *testing.T) {
		dir := t.TempDir()
		df := "ARG BASE=busybox\nFROM $BASE\nRUN echo boom-output && false\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain",
			"--platform", "linux/arm64", "--build-arg", "BASE="+base, dir)
		if code != cli.ExitDegraded {
			t.Errorf("exit status %d, want %d", code, cli.ExitDegraded)
		}
		for _, want := range []string{"boom-output", `"/bin/sh -c echo boom-output && false" did not complete successfully`, ">>> RUN echo boom-output && false"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("output does not contain %q:\n%s", want, stderr)
			}
		}
	})

	t.Run("BadUsage", func(t *testing.T) {
		for _, args := range [][]string{
			{"build", "--addr", addr},
			{"build", "--addr", addr, "--push", hello},
			{"build", "--addr", addr, "--output", "type=oci", hello},
			{"build", "--addr", addr, "--output", "dest=x", hello},
			{"build", "--addr", addr, "--progress", "fancy", hello},
			{"build", "--addr", addr, "--build-arg", "NOEQUALS", hello},
			{"build", "--addr", addr, "--platform", "linux/arm64/v8/x", hello},
			{"build", "--addr", addr, filepath.Join(t.TempDir(), "missing")},
			{"build", "--addr", addr, "-f", "/nonexistent/Dockerfile", hello},
			{"build", "--addr", addr, "--bogus-flag", hello},
		} {
			if code, _, _ := mabd(t, args...); code != cli.ExitError {
				t.Errorf("mabd %q: exit status %d, want %d", args, code, cli.ExitError)
			}
		}
	})

	t.Run("UnreachableDaemon", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "none.sock")
		code, _, stderr := mabd(t, "build", "--addr", "unix://"+sock, "--build-arg", "BASE="+base, hello)
		if code != cli.ExitError || !strings.Contains(stderr, "cannot reach the builder") {
			t.Errorf("exit status %d, stderr %q", code, stderr)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v", sock, err)
		}
	})
}
