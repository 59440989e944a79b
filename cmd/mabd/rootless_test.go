package main

// Rootless mode: `mabd daemon` run by an ordinary user, created for the
// test with a subordinate id range and removed after it.

import (
	"bytes"
	"context"
	"fmt"
	"mabd/testing/procs"
	"mabd/testing/testuser"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/builder/buildertest"
	"mabd/internal/cli"
	"mabd/testing/registry"
)

// testUser is an ordinary user of a test (package testuser).
type testUser struct{ *testuser.User }

// newTestUser creates a user (useradd -m; extra are more useradd
// arguments) with a runtime directory of its own; the user, its files and
// processes are removed when the test ends, and what was left is an error.
func newTestUser(t *testing.T, extra ...string) *testUser {
	t.Helper()
	u, err := testuser.New(extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range u.Remove() {
			t.Error(p)
		}
	})
	return &testUser{u}
}

// run runs mabd as the user and returns its exit status and output.
func (u *testUser) run(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := u.Command(ctx, env, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v as %s: %v", bin, args, u.Name, err)
	}
	t.Logf("as %s: mabd %s → %d\n%s%s", u.Name, strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// writeConfig writes the user's ~/.config/mabd/mabd.toml.
func (u *testUser) writeConfig(t *testing.T, config string) {
	t.Helper()
	if err := u.WriteConfig(config); err != nil {
		t.Fatal(err)
	}
}

// startRootless starts `mabd daemon` as the user and waits until its
// status answers with BuildKit running.
func (u *testUser) startRootless(t *testing.T, bin string) *runningDaemon {
	t.Helper()
	cmd := u.Command(context.Background(), nil, bin, "daemon")
	d := startCommand(t, cmd, filepath.Join(u.Runtime, "mabd", "mabd.sock"))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := d.client().Status(context.Background())
		if err == nil && st.Daemon.BuildKit != nil && st.Daemon.BuildKit.Running {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("the rootless daemon exited:\n%s", d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rootless daemon is not ready after 2 minutes: %v\n%s", err, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRootless: an ordinary user with a subordinate id range runs the
// daemon, which builds a two-platform image with a RUN step per platform
// through its private table, into an OCI tarball the user owns; the image
// passes the audit; no process of the daemon's tree is root on the host;
// the host's table is unchanged; the build cache survives a restart.
func TestRootless(t *testing.T) {
	bin := mabdBinary(t)
	hello := helloExample(t)
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")
	hostTable := entryFiles(t, binfmt.DefaultDir)
	u := newTestUser(t)
	u.writeConfig(t, fmt.Sprintf("[verify]\ninterval = \"0\"\n[buildkit]\narchitectures = [\"arm64\"]\nbinary = %q\n", buildertest.Bin(t, "buildkitd")))

	d := u.startRootless(t, bin)
	for _, pid := range procs.Tree(d.cmd.Process.Pid) {
		if real, eff, ok := procs.UIDs(pid); ok && (real == 0 || eff == 0) {
			t.Errorf("process %d of the rootless daemon's tree runs as uid %d/%d on the host", pid, real, eff)
		}
	}
	if n := len(procs.Tree(d.cmd.Process.Pid)); n < 3 {
		t.Errorf("the daemon's tree has %d processes, want the daemon, the builder's agent and buildkitd", n)
	}
	code, out, _ := u.run(t, bin, nil, "status")
	if code != 0 || !strings.Contains(out, "qemu-aarch64") || !strings.Contains(out, "private") {
		t.Errorf("mabd status as the user: exit %d\n%s", code, out)
	}

	build := func(tag string) (string, string) {
		t.Helper()
		tarball := filepath.Join(u.Home, tag+".tar")
		code, _, stderr := u.run(t, bin, nil, "build", "--addr", "unix://"+filepath.Join(u.Runtime, "mabd", "buildkitd.sock"), "--progress", "plain",
			"--platform", "linux/amd64,linux/arm64", "--build-arg", "BASE="+base, "--output", "type=oci,dest="+tarball, hello)
		if code != 0 {
			t.Fatalf("build as %s: exit %d\n%s", u.Name, code, stderr)
		}
		return tarball, stderr
	}
	tarball, _ := build("v1")
	fi, err := os.Stat(tarball)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(u.UID) {
		t.Fatalf("the OCI tarball %s: %v, owner %v; want the user's", tarball, err, fi.Sys())
	}
	if ps := ociTarball(t, tarball); len(ps) != 2 {
		t.Errorf("the tarball holds platforms %q", ps)
	}
	if code, _, _ := mabd(t, "image", "audit", "oci-archive:"+tarball); code != 0 {
		t.Errorf("mabd image audit of the rootless build: exit %d", code)
	}

	stopDaemon(t, d, time.Minute)
	d = u.startRootless(t, bin)
	_, progress := build("v2")
	if !strings.Contains(progress, "CACHED") {
		t.Errorf("the second build after a restart used no cache:\n%s", progress)
	}
	stopDaemon(t, d, time.Minute)
	if got := entryFiles(t, binfmt.DefaultDir); !maps.Equal(got, hostTable) {
		t.Errorf("the host's table changed: %v, was %v", got, hostTable)
	}
}

// TestRootlessRefusals: each missing prerequisite of rootless mode is its
// own message and exit status 2, and leaves nothing behind.
func TestRootlessRefusals(t *testing.T) {
	bin := mabdBinary(t)
	noIDs := newTestUser(t, "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0")
	ok := newTestUser(t)
	untrusted := filepath.Join(ok.Home, "qemu")
	if err := os.MkdirAll(untrusted, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, filepath.Join(untrusted, "qemu-aarch64-static"), "/usr/bin/qemu-aarch64-static")
	for _, p := range []string{untrusted, filepath.Join(untrusted, "qemu-aarch64-static")} {
		os.Chown(p, ok.UID, ok.GID)
	}
	tests := []struct {
		name   string
		user   *testUser
		config string
		env    []string
		says   []string
	}{
		{"no subordinate ids", noIDs, "", nil, []string{"no subordinate id range in /etc/subuid", "usermod --add-subuids"}},
		{"no newuidmap", ok, "", []string{"PATH=/nonexistent"}, []string{"newuidmap", "apt-get install uidmap"}},
		{"an emulator the user owns", ok, fmt.Sprintf("[buildkit]\narchitectures = [\"arm64\"]\nbinary = %q\n[verify]\ninterval = \"0\"\n", buildertest.Bin(t, "buildkitd")) + "", nil, []string{"owned by uid", "root"}},
		{"no runtime directory", ok, "", []string{"XDG_RUNTIME_DIR="}, []string{"XDG_RUNTIME_DIR is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := tt.config
			if tt.name == "an emulator the user owns" {
				config = "emulator_dirs = [" + strconv.Quote(untrusted) + "]\n" + config
			}
			tt.user.writeConfig(t, config)
			env := tt.env
			if tt.name == "no runtime directory" {
				env = append(env, "HOME="+tt.user.Home)
			}
			code, _, stderr := tt.user.run(t, bin, env, "daemon")
			if code != cli.ExitError {
				t.Errorf("exit %d, want %d", code, cli.ExitError)
			}
			for _, s := range tt.says {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not say %q:\n%s", s, stderr)
				}
			}
			if pids := procs.OfUser(tt.user.UID); len(pids) > 0 {
				t.Errorf("processes left: %v", pids)
			}
			if des, _ := os.ReadDir(filepath.Join(tt.user.Runtime, "mabd")); len(des) > 0 {
				t.Errorf("left in the runtime directory: %v", des)
			}
		})
	}
}
