package main

// End to end, as users run it: `mabd daemon` starts BuildKit in its
// private namespace with arm64 emulated there (the host's table is not
// touched: architectures = []); buildctl and `mabd build` use its socket;
// a two-platform image is pushed to a real registry and checked with
// skopeo; buildkitd killed with SIGKILL comes back.

import (
	"context"
	"encoding/json"
	"fmt"
	"mabd/daemon/api"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"mabd/builder/buildertest"
	"mabd/testing/registry"
	"mabd/testing/sandbox"
)

func TestDaemonRunsBuildKitEndToEnd(t *testing.T) {
	hello := helloExample(t)
	bin := mabdBinary(t)
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")

	d, n, bkSock := launchBuildKitDaemon(t, bin, filepath.Join(buildertest.Dir(t), "root"), "")
	sock := d.socket
	defer func() {
		stopDaemon(t, d, time.Minute)
		if _, err := os.Stat(bkSock); !os.IsNotExist(err) {
			t.Errorf("BuildKit's socket left after stop: %v", err)
		}
	}()
	n.wait(t, "READY=1", 2*time.Minute)
	// READY=1 waited for BuildKit: its socket answers now.
	c := api.NewClient(sock)
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bk := st.Daemon.BuildKit
	if bk == nil || !bk.Running || !slices.Contains(bk.Platforms, "linux/arm64") || bk.Version == "" {
		t.Fatalf("at READY=1 BuildKit is %+v", bk)
	}
	code, out, _ := mabd(t, "status", "--socket", sock)
	if code != 0 || !strings.Contains(out, "buildkit: "+bk.Version) {
		t.Errorf("mabd status does not show BuildKit (exit %d):\n%s", code, out)
	}

	addr := "unix://" + bkSock
	workers, err := exec.Command(buildertest.Bin(t, "buildctl"), "--addr", addr, "debug", "workers").CombinedOutput()
	if err != nil || !strings.Contains(string(workers), "linux/arm64") {
		t.Fatalf("buildctl debug workers on mabd's socket: %v\n%s", err, workers)
	}

	build := func(tag string) {
		t.Helper()
		ref := reg + "/demo:" + tag
		code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain", "--platform", "linux/amd64,linux/arm64",
			"--push", "-t", ref, "--insecure-registry", reg, "--build-arg", "BASE="+base, "--audit", hello)
		if code != 0 || !strings.Contains(stderr, "2 platforms audited: 2 clean") {
			t.Fatalf("mabd build --audit: exit %d\n%s", code, stderr)
		}
		var idx ocispecs.Index
		if err := json.Unmarshal(skopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref), &idx); err != nil {
			t.Fatal(err)
		}
		var ps []string
		for _, m := range idx.Manifests {
			ps = append(ps, platformOf(m.Platform))
		}
		sort.Strings(ps)
		if !slices.Equal(ps, []string{"linux/amd64", "linux/arm64"}) {
			t.Fatalf("%s has platforms %q", ref, ps)
		}
		layoutDir := filepath.Join(t.TempDir(), "layout")
		skopeo(t, "copy", "--all", "--src-tls-verify=false", "docker://"+ref, "oci:"+layoutDir+":"+tag)
		if arch := archFiles(t, layoutDir); arch["linux/amd64"] != "x86_64" || arch["linux/arm64"] != "aarch64" {
			t.Fatalf("/arch by platform: %q, want x86_64 and aarch64", arch)
		}
	}
	build("v1")

	// SIGKILL buildkitd: the daemon's supervisor restarts it within 5 s,
	// status counts the restart, and the next build succeeds.
	if err := syscall.Kill(bk.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.Daemon.BuildKit.Running && st.Daemon.BuildKit.Restarts == 1 && st.Daemon.BuildKit.PID != bk.PID {
			t.Logf("buildkitd restarted after %v", time.Since(start))
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("buildkitd not restarted within 5 s: %+v, %v", st.Daemon.BuildKit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	build("v2")

	// The article's mistake: an "arm64" image carrying a binary of the
	// build host. `mabd build --audit` catches it and exits 1.
	wrong := t.TempDir()
	copyExecutable(t, filepath.Join(wrong, "app"), registry.HostBusybox)
	if err := os.WriteFile(filepath.Join(wrong, "Dockerfile"), []byte("ARG BASE\nFROM $BASE\nCOPY app /usr/bin/app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := mabd(t, "build", "--addr", addr, "--progress", "plain", "--platform", "linux/arm64",
		"--push", "-t", reg+"/wrong:v1", "--insecure-registry", reg, "--build-arg", "BASE="+base, "--audit", wrong)
	if code != 1 || !strings.Contains(stderr, "linux/arm64 image contains x86_64 /usr/bin/app") {
		t.Fatalf("mabd build --audit of an arm64 image holding an amd64 binary: exit %d\n%s", code, stderr)
	}
}

// TestDaemonBuildsWithEmptyHostTable: with an empty table (a sandbox's
// private instance stands for the host's) and nothing registered there
// (architectures = []), the daemon's builder still builds linux/arm64 with
// a RUN step, through its own private table; the host's table is the same
// before and after.
func TestDaemonBuildsWithEmptyHostTable(t *testing.T) {
	hello := helloExample(t)
	bin := mabdBinary(t)
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")
	sandbox.Run(t, func(t *testing.T, mount string) {
		before := entryFiles(t, mount)
		dir := shortDir(t)
		bkSock := filepath.Join(dir, "bk.sock")
		config := fmt.Sprintf("architectures = []\n[verify]\ninterval = \"0\"\n[buildkit]\narchitectures = [\"arm64\"]\nbinary = %q\nroot = %q\n",
			buildertest.Bin(t, "buildkitd"), filepath.Join(buildertest.Dir(t), "root"))
		n := newNotifySocket(t, dir)
		cfg := filepath.Join(dir, "mabd.toml")
		if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startDaemonArgs(t, bin, dir, []string{"daemon", "--config", cfg, "--binfmt-mount", mount, "--socket", filepath.Join(dir, "mabd.sock"),
			"--state-dir", filepath.Join(dir, "state"), "--buildkit-socket", bkSock}, "NOTIFY_SOCKET="+n.path)
		ready := n.wait(t, "READY=1", 2*time.Minute)
		t.Logf("ready: %s", ready)
		ref := reg + "/empty-host:v1"
		code, _, stderr := runBin(t, bin, 3*time.Minute, "build", "--addr", "unix://"+bkSock, "--progress", "plain",
			"--platform", "linux/amd64,linux/arm64", "--push", "-t", ref, "--insecure-registry", reg, "--build-arg", "BASE="+base, hello)
		if code != 0 {
			t.Fatalf("build: exit %d\n%s", code, stderr)
		}
		layoutDir := filepath.Join(t.TempDir(), "layout")
		skopeo(t, "copy", "--all", "--src-tls-verify=false", "docker://"+ref, "oci:"+layoutDir+":v1")
		if arch := archFiles(t, layoutDir); arch["linux/amd64"] != "x86_64" || arch["linux/arm64"] != "aarch64" {
			t.Fatalf("/arch by platform: %q, want x86_64 and aarch64", arch)
		}
		code, out, _ := runBin(t, bin, time.Minute, "status", "--socket", filepath.Join(dir, "mabd.sock"))
		if code != 0 || !strings.Contains(out, "qemu-aarch64") || !strings.Contains(out, "private") {
			t.Errorf("mabd status: exit %d, does not show the builder's private table:\n%s", code, out)
		}
		stopDaemon(t, d, time.Minute)
		if after := entryFiles(t, mount); !maps.Equal(after, before) {
			t.Errorf("the host's table changed: %v, was %v", after, before)
		}
	})
}
