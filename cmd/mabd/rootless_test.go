package main

// Rootless mode: `mabd daemon` run by an ordinary user, created for the
// test with a subordinate id range and removed after it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
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

// testUser is an ordinary user made for a test.
type testUser struct {
	name     string
	uid, gid int
	home     string
	runtime  string // its XDG_RUNTIME_DIR
}

// newTestUser creates a user (useradd -m; extra are more useradd
// arguments) with a runtime directory of its own; the user, its files and
// processes are removed when the test ends.
func newTestUser(t *testing.T, extra ...string) *testUser {
	t.Helper()
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Fatalf("%v: install passwd", err)
	}
	// useradd gives a subordinate range only when /etc/subuid and
	// /etc/subgid exist: make them (empty) when they do not, and remove
	// them (and useradd's backups) again, so that a host that had none
	// gets none back.
	var absent []string
	for _, f := range []string{"/etc/subuid", "/etc/subgid", "/etc/subuid-", "/etc/subgid-"} {
		if _, err := os.Lstat(f); os.IsNotExist(err) {
			absent = append(absent, f)
			if !strings.HasSuffix(f, "-") {
				if err := os.WriteFile(f, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Cleanup(func() {
		for _, f := range absent {
			if b, err := os.ReadFile(f); err == nil && (strings.HasSuffix(f, "-") || len(bytes.TrimSpace(b)) == 0) {
				os.Remove(f)
			}
		}
	})
	var b [4]byte
	rand.Read(b[:])
	name := "mabdt" + hex.EncodeToString(b[:])
	args := append(append([]string{"-m", "-s", "/bin/sh"}, extra...), name)
	if out, err := exec.Command("useradd", args...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %v: %v\n%s", args, err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	tu := &testUser{name: name, home: u.HomeDir}
	tu.uid, _ = strconv.Atoi(u.Uid)
	tu.gid, _ = strconv.Atoi(u.Gid)
	t.Cleanup(func() {
		// Its processes first (none should be left: say so), then it.
		if pids := userProcesses(tu.uid); len(pids) > 0 {
			t.Errorf("processes of %s left: %v", name, pids)
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
			t.Errorf("userdel -r %s: %v\n%s", name, err, out)
		}
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
			if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(name+":")) {
				t.Errorf("%s still lists %s", f, name)
			}
		}
	})
	tu.runtime, err = os.MkdirTemp("", "mabd-rt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tu.runtime) })
	for _, d := range []string{tu.runtime} {
		if err := os.Chown(d, tu.uid, tu.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return tu
}

// userProcesses lists the processes whose real uid is uid.
func userProcesses(uid int) []int {
	var out []int
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		if real, _, ok := procUIDs(pid); ok && real == uid {
			out = append(out, pid)
		}
	}
	return out
}

// procUIDs reads the real and effective uid of a process, as the host
// sees them.
func procUIDs(pid int) (real, effective int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Uid:" {
			real, _ = strconv.Atoi(f[1])
			effective, _ = strconv.Atoi(f[2])
			return real, effective, true
		}
	}
	return 0, 0, false
}

// tree returns pid and its descendants.
func tree(pid int) []int {
	children := map[int][]int{}
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		p, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// command returns a command that runs as the user, with its environment.
func (u *testUser) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = u.home
	cmd.Env = append([]string{"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "XDG_RUNTIME_DIR=" + u.runtime}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	return cmd
}

// run runs mabd as the user and returns its exit status and output.
func (u *testUser) run(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := u.command(ctx, env, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v as %s: %v", bin, args, u.name, err)
	}
	t.Logf("as %s: mabd %s → %d\n%s%s", u.name, strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// writeConfig writes the user's ~/.config/mabd/mabd.toml.
func (u *testUser) writeConfig(t *testing.T, config string) {
	t.Helper()
	dir := filepath.Join(u.home, ".config", "mabd")
	for _, d := range []string{filepath.Join(u.home, ".config"), dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, u.uid, u.gid)
	}
	p := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(p, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, u.uid, u.gid)
}

// startRootless starts `mabd daemon` as the user and waits until its
// status answers with BuildKit running.
func (u *testUser) startRootless(t *testing.T, bin string) *runningDaemon {
	t.Helper()
	cmd := u.command(context.Background(), nil, bin, "daemon")
	d := startCommand(t, cmd, filepath.Join(u.runtime, "mabd", "mabd.sock"))
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
	for _, pid := range tree(d.cmd.Process.Pid) {
		if real, eff, ok := procUIDs(pid); ok && (real == 0 || eff == 0) {
			t.Errorf("process %d of the rootless daemon's tree runs as uid %d/%d on the host", pid, real, eff)
		}
	}
	if n := len(tree(d.cmd.Process.Pid)); n < 3 {
		t.Errorf("the daemon's tree has %d processes, want the daemon, the builder's agent and buildkitd", n)
	}
	code, out, _ := u.run(t, bin, nil, "status")
	if code != 0 || !strings.Contains(out, "qemu-aarch64") || !strings.Contains(out, "private") {
		t.Errorf("mabd status as the user: exit %d\n%s", code, out)
	}

	build := func(tag string) (string, string) {
		t.Helper()
		tarball := filepath.Join(u.home, tag+".tar")
		code, _, stderr := u.run(t, bin, nil, "build", "--addr", "unix://"+filepath.Join(u.runtime, "mabd", "buildkitd.sock"), "--progress", "plain",
			"--platform", "linux/amd64,linux/arm64", "--build-arg", "BASE="+base, "--output", "type=oci,dest="+tarball, hello)
		if code != 0 {
			t.Fatalf("build as %s: exit %d\n%s", u.name, code, stderr)
		}
		return tarball, stderr
	}
	tarball, _ := build("v1")
	fi, err := os.Stat(tarball)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(u.uid) {
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
	if got := entryFiles(t, binfmt.DefaultDir); !mapsEqual(got, hostTable) {
		t.Errorf("the host's table changed: %v, was %v", got, hostTable)
	}
}

// TestRootlessRefusals: each missing prerequisite of rootless mode is its
// own message and exit status 2, and leaves nothing behind.
func TestRootlessRefusals(t *testing.T) {
	bin := mabdBinary(t)
	noIDs := newTestUser(t, "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0")
	ok := newTestUser(t)
	untrusted := filepath.Join(ok.home, "qemu")
	if err := os.MkdirAll(untrusted, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, filepath.Join(untrusted, "qemu-aarch64-static"), "/usr/bin/qemu-aarch64-static")
	for _, p := range []string{untrusted, filepath.Join(untrusted, "qemu-aarch64-static")} {
		os.Chown(p, ok.uid, ok.gid)
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
				env = append(env, "HOME="+tt.user.home)
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
			if pids := userProcesses(tt.user.uid); len(pids) > 0 {
				t.Errorf("processes left: %v", pids)
			}
			if des, _ := os.ReadDir(filepath.Join(tt.user.runtime, "mabd")); len(des) > 0 {
				t.Errorf("left in the runtime directory: %v", des)
			}
		})
	}
}
