package main

// Fault injection against the real daemon: buildkitd killed again and
// again, the daemon itself killed and restarted, BuildKit's disk full, an
// emulator deleted while registered. Each case is bounded by deadlines and
// checks the outcome: what was restored, what the error says, exit
// statuses.
//
// The BuildKit cases run `mabd daemon` like TestDaemonRunsBuildKitEndToEnd:
// it registers nothing in the host's table (architectures = []) and its
// builder emulates arm64 in a private binfmt_misc table of its own. The
// others run in private binfmt_misc instances.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mabd/daemon/api"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/builder/buildertest"
	"mabd/emulator"
	"mabd/host"
	"mabd/internal/cli"
	"mabd/testing/registry"
	"mabd/testing/sandbox"
)

// launchBuildKitDaemon starts `mabd daemon` with BuildKit: nothing in the
// host's table (architectures = []), arm64 emulated in the builder's
// private table ([buildkit] architectures = ["arm64"]), BuildKit's state
// in bkRoot, extra appended to the [buildkit] table, the control socket
// and BuildKit's in a fresh short directory of mode 0755. It does not wait;
// the daemon is stopped (SIGTERM, SIGKILL after a minute) when the test
// ends.
func launchBuildKitDaemon(t *testing.T, bin, bkRoot, extra string) (d *runningDaemon, n *notifySocket, bkSock string) {
	t.Helper()
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bkSock = filepath.Join(dir, "bk.sock")
	config := fmt.Sprintf(`architectures = []
[verify]
interval = "0"
[buildkit]
enabled = true
architectures = ["arm64"]
binary = %q
root = %q
%s`, buildertest.Bin(t, "buildkitd"), bkRoot, extra)
	cfg := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	n = newNotifySocket(t, dir)
	d = startDaemonArgs(t, bin, dir, []string{"daemon", "--config", cfg, "--socket", filepath.Join(dir, "mabd.sock"),
		"--state-dir", filepath.Join(dir, "state"), "--buildkit-socket", bkSock}, "NOTIFY_SOCKET="+n.path)
	return d, n, bkSock
}

// stopDaemon stops d with SIGTERM (SIGKILL after timeout) unless it has
// exited, and logs its output.
func stopDaemon(t *testing.T, d *runningDaemon, timeout time.Duration) {
	t.Helper()
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(timeout):
			t.Errorf("the daemon did not stop within %v of SIGTERM; killing it", timeout)
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	t.Logf("daemon log:\n%s", d.log.String())
}

// startBuildKitDaemon is launchBuildKitDaemon that waits for READY=1
// (BuildKit answers by then) for at most two minutes.
func startBuildKitDaemon(t *testing.T, bin, bkRoot, extra string) (*runningDaemon, string) {
	t.Helper()
	d, n, bkSock := launchBuildKitDaemon(t, bin, bkRoot, extra)
	n.wait(t, "READY=1", 2*time.Minute)
	return d, bkSock
}

// buildKitStatus returns the daemon's view of its buildkitd.
func buildKitStatus(t *testing.T, c *api.Client) builder.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	if st.Daemon.BuildKit == nil {
		t.Fatal("GET /v1/status shows no BuildKit")
	}
	return *st.Daemon.BuildKit
}

// waitBuildKit polls the daemon's status until ok(BuildKit's status) or
// the timeout, and returns the last status and how long it took.
func waitBuildKit(t *testing.T, c *api.Client, timeout time.Duration, ok func(builder.Status) bool) (builder.Status, time.Duration) {
	t.Helper()
	start := time.Now()
	var last builder.Status
	var lastErr error
	for time.Since(start) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx)
		cancel()
		lastErr = err
		if err == nil && st.Daemon.BuildKit != nil {
			last = *st.Daemon.BuildKit
			if ok(last) {
				return last, time.Since(start)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("BuildKit not as expected within %v: %+v (last error %v)", timeout, last, lastErr)
	return last, 0
}

// runBin runs the mabd binary with a deadline and returns its exit status
// and output (a build's progress goes to stderr).
func runBin(t *testing.T, bin string, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("mabd %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("mabd %s did not finish within %v\n%s", strings.Join(args, " "), timeout, errb.String())
	}
	code := cmd.ProcessState.ExitCode()
	t.Logf("mabd %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// buildContext writes a build context: a Dockerfile and files.
func buildContext(t *testing.T, dockerfile string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// processIs reports whether pid is alive and its command line contains
// name (a pid reused by another program does not count).
func processIs(pid int, name string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && (st[i+2] == 'Z' || st[i+2] == 'X') {
			return false
		}
	}
	return bytes.Contains(b, []byte(name))
}

// TestFaultBuildKitKilledFiveTimes: buildkitd killed with SIGKILL five
// times in a row under `mabd daemon` is restarted every time (new PID,
// Restarts counts it, running again after the supervisor's growing
// backoff), and a build afterwards succeeds.
func TestFaultBuildKitKilledFiveTimes(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("%v: install runc (make deps)", err)
	}
	bin := mabdBinary(t)
	d, bkSock := startBuildKitDaemon(t, bin, filepath.Join(buildertest.Dir(t), "root"), "")
	c := d.client()
	st := buildKitStatus(t, c)
	if !st.Running || st.PID == 0 || st.Restarts != 0 {
		t.Fatalf("at READY=1 BuildKit is %+v", st)
	}
	// The supervisor waits 250 ms before the first restart, twice as long
	// before each further one (up to 10 s): 4 s before the fifth.
	for i := 1; i <= 5; i++ {
		old := st.PID
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		var took time.Duration
		st, took = waitBuildKit(t, c, 30*time.Second, func(s builder.Status) bool {
			return s.Running && s.Restarts == i && s.PID != 0 && s.PID != old
		})
		t.Logf("SIGKILL %d: buildkitd %d replaced by %d, running again after %v (restarts %d)", i, old, st.PID, took, st.Restarts)
		if processIs(old, "buildkitd") {
			t.Errorf("the killed buildkitd %d is still there", old)
		}
		if !processIs(st.PID, "buildkitd") {
			t.Errorf("status says buildkitd is %d, which is not a running buildkitd", st.PID)
		}
	}
	if !strings.Contains(st.LastError, "signal: killed") {
		t.Errorf("status does not say why buildkitd last exited: %q", st.LastError)
	}

	// A build afterwards succeeds: FROM scratch, COPY a file, exported to
	// a local directory.
	ctxDir := buildContext(t, "FROM scratch\nCOPY hello.txt /hello.txt\n", map[string]string{"hello.txt": "hello after five kills\n"})
	out := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	code, _, stderr := runBin(t, bin, 2*time.Minute, "build", "--addr", "unix://"+bkSock, "--progress", "plain",
		"--platform", "linux/amd64", "--output", "type=local,dest="+out, ctxDir)
	if code != 0 {
		t.Fatalf("build after five kills: exit %d\n%s", code, stderr)
	}
	t.Logf("build after five kills took %v", time.Since(start))
	if b, err := os.ReadFile(filepath.Join(out, "hello.txt")); err != nil || string(b) != "hello after five kills\n" {
		t.Fatalf("built hello.txt: %q, %v", b, err)
	}
	// The daemon itself never went down.
	select {
	case err := <-d.done:
		t.Fatalf("the daemon exited: %v", err)
	default:
	}
	if final := buildKitStatus(t, c); final.Restarts != 5 || !final.Running {
		t.Errorf("after the build BuildKit is %+v, want running with 5 restarts", final)
	}
}

// entryFiles returns the raw text of every entry of the instance.
func entryFiles(t *testing.T, mount string) map[string]string {
	t.Helper()
	des, err := os.ReadDir(mount)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, de := range des {
		if de.Name() == "register" || de.Name() == "status" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(mount, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = string(b)
	}
	return out
}

// mountsUnder returns the lines of /proc/self/mountinfo whose mount point
// is one of dirs or below one.
func mountsUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, d := range dirs {
			if f[4] == d || strings.HasPrefix(f[4], strings.TrimSuffix(d, "/")+"/") {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// TestFaultDaemonKilledAndRestarted: `mabd daemon` killed with SIGKILL
// leaves its handlers and a stale control socket; a new daemon started
// with the same configuration, socket and state adopts the entries
// unchanged (no repair, nothing registered, no duplicate), is not blocked
// by the stale socket, and no mount is left behind.
func TestFaultDaemonKilledAndRestarted(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir := shortDir(t)
		watched := []string{dir, mount, os.TempDir()}
		mountsBefore := mountsUnder(t, watched...)
		t.Logf("%d mounts under %v before the daemon starts", len(mountsBefore), watched)
		n := newNotifySocket(t, dir)
		d1 := startDaemon(t, bin, dir, mount, testConfig, "NOTIFY_SOCKET="+n.path)
		n.wait(t, "READY=1", 60*time.Second)
		if !d1.logSays("handler registered", 5*time.Second) {
			t.Fatal("the first daemon did not register its handlers")
		}
		before := entryFiles(t, mount)
		if len(before) != 3 {
			t.Fatalf("the first daemon registered %d entries, want 3: %v", len(before), before)
		}

		_ = d1.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-d1.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the daemon did not die of SIGKILL within 10 s")
		}
		killed := time.Now()
		fi, err := os.Lstat(d1.socket)
		if err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("the killed daemon left no stale socket at %s (%v, %v): this test would prove nothing", d1.socket, fi, err)
		}
		if c, err := net.DialTimeout("unix", d1.socket, time.Second); err == nil {
			c.Close()
			t.Fatal("the killed daemon's socket still accepts connections")
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial the stale socket: %v, want connection refused", err)
		}
		if got := entryFiles(t, mount); !maps.Equal(got, before) {
			t.Fatalf("killing the daemon changed the entries: %v", got)
		}

		// The same configuration, socket and state directory.
		n2 := newNotifySocket(t, shortDir(t))
		d2 := startDaemon(t, bin, dir, mount, testConfig, "NOTIFY_SOCKET="+n2.path)
		n2.wait(t, "READY=1", 60*time.Second)
		t.Logf("restarted daemon ready %v after the SIGKILL", time.Since(killed))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := d2.client().Status(ctx)
		if err != nil {
			t.Fatalf("the restarted daemon does not answer on %s: %v", d2.socket, err)
		}
		if st.Daemon.PID != d2.cmd.Process.Pid || st.Source != "daemon" {
			t.Fatalf("%s is answered by pid %d (source %s), want the new daemon %d", d2.socket, st.Daemon.PID, st.Source, d2.cmd.Process.Pid)
		}
		if st.Daemon.Repairs != 0 || !st.Healthy() || len(st.Daemon.Failures) != 0 {
			t.Errorf("restarted daemon: %d repairs, health %s, failures %v; want 0, healthy, none", st.Daemon.Repairs, st.Health, st.Daemon.Failures)
		}
		// Let a reconcile pass run (2 s interval): still nothing to do.
		time.Sleep(2500 * time.Millisecond)
		for _, s := range []string{"handler registered", "handler replaced", "handler enabled", "repaired handler", "reconcile failed"} {
			if strings.Contains(d2.log.String(), s) {
				t.Errorf("the restarted daemon's log says %q: it should have adopted the entries", s)
			}
		}
		if got := entryFiles(t, mount); !maps.Equal(got, before) {
			t.Errorf("after the restart the entries are\n%v\nwant, byte for byte,\n%v", got, before)
		}
		if es := entries(t, mount); len(es) != 3 {
			t.Errorf("%d entries after the restart, want 3", len(es))
		}
		if after := mountsUnder(t, watched...); !slices.Equal(after, mountsBefore) {
			t.Errorf("mounts under %v while the restarted daemon runs:\n%s\nbefore:\n%s", watched, strings.Join(after, "\n"), strings.Join(mountsBefore, "\n"))
		}

		_ = d2.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d2.done:
			if err != nil {
				t.Errorf("the restarted daemon exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the restarted daemon did not stop within 15 s of SIGTERM")
		}
		if _, err := os.Lstat(d2.socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the control socket is left after a clean stop: %v", err)
		}
		if after := mountsUnder(t, watched...); !slices.Equal(after, mountsBefore) {
			t.Errorf("mounts left under %v:\n%s", watched, strings.Join(after, "\n"))
		}
	})
}

// smallFS mounts a tmpfs of size bytes on a new directory and unmounts it
// when the test ends; register it before anything that must stop first
// (cleanups run last-registered first).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mabd-full-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		os.Remove(dir)
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// Whatever BuildKit mounted below must be gone (the supervisor
		// unmounts it at stop); then the tmpfs itself.
		if ms, err := builder.MountsUnder(dir); err != nil {
			t.Error(err)
		} else {
			for _, m := range ms {
				if m.Point != dir {
					t.Errorf("left mounted under the tmpfs: %s (%s)", m.Point, m.FSType)
				}
			}
		}
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount the tmpfs on %s: %v; detaching it", dir, err)
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount -l %s: %v", dir, err)
				return
			}
		}
		os.RemoveAll(dir)
	})
	return dir
}

// fill allocates a file in dir that leaves about free bytes free (0: as
// much as fits), and returns its path and the bytes free afterwards.
func fill(t *testing.T, dir string, free int64) (string, int64) {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	if n := avail - free; n > 0 {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
			t.Fatalf("fallocate %d bytes in %s: %v", n, dir, err)
		}
	}
	if free == 0 {
		// Take the last pages too, a page at a time.
		for {
			fi, err := f.Stat()
			if err != nil || unix.Fallocate(int(f.Fd()), 0, fi.Size(), 4096) != nil {
				break
			}
		}
	}
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return p, int64(st.Bavail) * st.Bsize
}

// TestFaultBuildKitDiskFull: BuildKit's state directory on a 64 MB tmpfs.
//
// Nearly full (16 MB left), buildkitd starts; a RUN step writing 200 MB
// fails with "No space left on device" in the step's output and mabd build
// exits 1; the daemon stays up and BuildKit keeps running; once space is
// freed, the next build succeeds without any restart.
//
// Completely full, buildkitd cannot start (the supervisor cannot even
// write its configuration there): the daemon does not report READY=1 and
// exits with an error that names BuildKit and "no space left on device",
// so systemd (Restart=on-failure) shows the reason and retries, rather
// than a daemon that says it is ready without a builder.
func TestFaultBuildKitDiskFull(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("%v: install runc (make deps)", err)
	}
	bin := mabdBinary(t)

	t.Run("NearlyFull", func(t *testing.T) {
		reg := registry.Start(t)
		base := registry.PushBusyboxBase(t, reg, "busybox", "amd64")
		root := smallFS(t, "64m")
		filler, free := fill(t, root, 16<<20)
		t.Logf("tmpfs %s: %d MB free", root, free>>20)
		d, bkSock := startBuildKitDaemon(t, bin, filepath.Join(root, "buildkit"), "")
		c := d.client()
		if st := buildKitStatus(t, c); !st.Running {
			t.Fatalf("BuildKit on a nearly full disk: %+v", st)
		}

		big := buildContext(t, "ARG BASE=busybox\nFROM $BASE\nRUN dd if=/dev/zero of=/big bs=1M count=200\n", nil)
		start := time.Now()
		code, _, stderr := runBin(t, bin, 3*time.Minute, "build", "--addr", "unix://"+bkSock, "--progress", "plain",
			"--platform", "linux/amd64", "--build-arg", "BASE="+base, big)
		t.Logf("the build failed after %v", time.Since(start))
		if code != cli.ExitDegraded {
			t.Errorf("a build that fills the disk: exit %d, want %d (the step failed)", code, cli.ExitDegraded)
		}
		if !strings.Contains(strings.ToLower(stderr), "no space left on device") {
			t.Errorf("the build's output does not say the disk is full:\n%s", stderr)
		}
		if !strings.Contains(stderr, "RUN dd if=/dev/zero of=/big bs=1M count=200") {
			t.Errorf("the build's output does not name the failing step:\n%s", stderr)
		}

		// The daemon is up, answers, and BuildKit runs (restarted or not).
		select {
		case err := <-d.done:
			t.Fatalf("the daemon exited: %v", err)
		default:
		}
		st, _ := waitBuildKit(t, c, 30*time.Second, func(s builder.Status) bool { return s.Running })
		t.Logf("after the full disk BuildKit is running, %d restarts", st.Restarts)
		if !c.Answers(context.Background(), 5*time.Second) {
			t.Error("GET /healthz does not answer")
		}

		// Space freed: the next build works.
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		small := buildContext(t, "ARG BASE=busybox\nFROM $BASE\nRUN echo ok > /ok\n", nil)
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr = runBin(t, bin, 2*time.Minute, "build", "--addr", "unix://"+bkSock, "--progress", "plain",
			"--platform", "linux/amd64", "--build-arg", "BASE="+base, "--output", "type=local,dest="+out, small)
		if code != 0 {
			t.Fatalf("a build after freeing space: exit %d\n%s", code, stderr)
		}
		if b, err := os.ReadFile(filepath.Join(out, "ok")); err != nil || string(b) != "ok\n" {
			t.Errorf("built /ok: %q, %v", b, err)
		}
		if after := buildKitStatus(t, c); after.Restarts != st.Restarts || !after.Running {
			t.Errorf("BuildKit after the second build: %+v (restarts were %d)", after, st.Restarts)
		}
	})

	t.Run("Full", func(t *testing.T) {
		root := smallFS(t, "64m")
		bkRoot := filepath.Join(root, "buildkit")
		if err := os.Mkdir(bkRoot, 0o700); err != nil {
			t.Fatal(err)
		}
		_, free := fill(t, root, 0)
		t.Logf("tmpfs %s: %d bytes free", root, free)
		d, n, _ := launchBuildKitDaemon(t, bin, bkRoot, "")
		start := time.Now()
		select {
		case err := <-d.done:
			d.done <- err
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("the daemon exited with %v, want a failure", err)
			}
			t.Logf("the daemon exited after %v: %v", time.Since(start), err)
		case <-time.After(2 * time.Minute):
			t.Fatal("the daemon neither failed nor came up within 2 minutes on a full disk")
		}
		log := d.log.String()
		if !strings.Contains(log, "start BuildKit") || !strings.Contains(strings.ToLower(log), "no space left on device") {
			t.Errorf("the daemon's error does not say that BuildKit could not start on a full disk:\n%s", log)
		}
	drain:
		for {
			select {
			case m, ok := <-n.msgs:
				if !ok {
					break drain
				}
				if strings.Contains(m, "READY=1") {
					t.Errorf("the daemon sent READY=1 without a builder: %q", m)
				}
			default:
				break drain
			}
		}
	})
}

// TestFaultEmulatorDeletedWhileRegistered: the emulator file of a
// registered handler is deleted. With F the kernel holds the file it
// opened at registration, so programs still run (verify passes) and status
// says the file is gone and how to fix it; without F every program fails,
// and verify says "interpreter missing" with the fix.
func TestFaultEmulatorDeletedWhileRegistered(t *testing.T) {
	const src = "/usr/bin/qemu-riscv64-static"
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("%v: install qemu-user-static (make deps)", err)
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		// binfmt_misc keeps interpreters of at most 127 bytes: a short
		// directory (root's, mode 0700, in the sticky /tmp).
		emuDir := shortDir(t)
		state := t.TempDir()
		emu := filepath.Join(emuDir, "qemu-riscv64-static")
		install := func(args ...string) {
			t.Helper()
			copyExecutable(t, emu, src)
			args = append([]string{"install", "--binfmt-mount", mount, "--emulator-dir", emuDir}, args...)
			if code, _, _ := mabd(t, append(args, "riscv64")...); code != 0 {
				t.Fatalf("mabd %v riscv64: exit %d", args, code)
			}
			e, err := binfmt.Mount{Dir: mount}.Entry("qemu-riscv64")
			if err != nil || e.Interpreter != emu {
				t.Fatalf("entry %+v, %v; want interpreter %s", e, err, emu)
			}
			if err := os.Remove(emu); err != nil {
				t.Fatal(err)
			}
		}
		hostArgs := []string{"--binfmt-mount", mount, "--emulator-dir", emuDir, "--state-dir", state}
		verify := func() (int, host.VerifyResult) {
			t.Helper()
			var v host.Verification
			code := mabdJSON(t, &v, append(append([]string{"verify"}, hostArgs...), "--timeout", "20s", "riscv64")...)
			for _, r := range v.Results {
				if r.QEMUArch == "riscv64" {
					return code, r
				}
			}
			t.Fatalf("verify riscv64 has no riscv64 result: %+v", v.Results)
			return 0, host.VerifyResult{}
		}
		status := func(want ...string) host.HandlerStatus {
			t.Helper()
			code, out, _ := mabd(t, append(append([]string{"status"}, hostArgs...), "riscv64")...)
			if code != cli.ExitDegraded {
				t.Errorf("status: exit %d, want %d", code, cli.ExitDegraded)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("status does not say %q:\n%s", w, out)
				}
			}
			_, st := statusJSON(t, mount, "--emulator-dir", emuDir, "--state-dir", state, "riscv64")
			h := handler(t, st, "riscv64")
			if h.State != host.StateNoEmulator || !h.Registered {
				t.Errorf("status --json: riscv64 is %s (registered %v), want %s", h.State, h.Registered, host.StateNoEmulator)
			}
			return h
		}

		// With F (the default flags, PF).
		install()
		status("interpreter "+emu+" was deleted", "the kernel still holds the file it opened (F)", "install qemu-user-static, then `mabd install --replace riscv64`")
		code, r := verify()
		t.Logf("verify with F after the deletion: exit %d, %s %s %s", code, r.State, r.Machine, r.Reason)
		if code != 0 || r.State != emulator.StateOK || r.Machine != "riscv64" {
			t.Errorf("verify with F: exit %d, %+v; want 0 and ok: the kernel still holds the deleted file", code, r)
		}
		// Verification passing does not hide the deleted file.
		if h := status("was deleted"); h.Verified == nil || h.Verified.State != emulator.StateOK {
			t.Errorf("status after verify: verified %+v, want ok next to the deleted interpreter", h.Verified)
		}

		// Without F: the kernel opens the interpreter at every exec.
		install("--replace", "--flags", "P")
		if e, _ := (binfmt.Mount{Dir: mount}).Entry("qemu-riscv64"); e.Flags.Has(binfmt.FixBinary) {
			t.Fatalf("--flags P registered %q", e.Flags.String())
		}
		status("interpreter "+emu+" does not exist, so every riscv64 program fails", "mabd install --replace riscv64")
		code, r = verify()
		if code != cli.ExitDegraded || r.State != emulator.StateFailed || !strings.HasPrefix(r.Reason, emulator.ReasonInterpreterMissing) {
			t.Errorf("verify without F: exit %d, %+v; want %d, failed, %q", code, r, cli.ExitDegraded, emulator.ReasonInterpreterMissing)
		}
		if !strings.Contains(r.Reason, emu) || !strings.Contains(r.Fix, "install qemu-user-static") || r.Remedy != emulator.RemedyReplace {
			t.Errorf("verify without F: reason %q, fix %q, remedy %q; want the file named and the fix", r.Reason, r.Fix, r.Remedy)
		}
	})
}

// TestFaultDaemonWithBuilderKilled: the daemon killed with SIGKILL takes
// its private builder with it — the namespace's agent and buildkitd die,
// no mount is left under BuildKit's root, the host's table is as it was —
// and a daemon started again on the same root and sockets builds.
func TestFaultDaemonWithBuilderKilled(t *testing.T) {
	bin := mabdBinary(t)
	hostTable := entryFiles(t, binfmt.DefaultDir)
	bkRoot := filepath.Join(buildertest.Dir(t), "root")
	d, bkSock := startBuildKitDaemon(t, bin, bkRoot, "")
	st := buildKitStatus(t, d.client())
	if st.Emulation != builder.EmulationPrivate || st.AgentPID == 0 || !processIs(st.PID, "buildkitd") {
		t.Fatalf("at READY=1 the builder is %+v", st)
	}
	userNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	if self, _ := os.Readlink("/proc/self/ns/user"); self == userNS {
		t.Fatalf("buildkitd runs in this test's user namespace %s, not a private one", userNS)
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range []int{st.PID, st.AgentPID} {
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("process %d of the builder outlived the daemon's SIGKILL by 10 s", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if ms := mountsUnder(t, bkRoot); len(ms) > 0 {
		t.Errorf("mounts left under %s:\n%s", bkRoot, strings.Join(ms, "\n"))
	}
	if got := entryFiles(t, binfmt.DefaultDir); !maps.Equal(got, hostTable) {
		t.Errorf("the host's table changed: %v, was %v", got, hostTable)
	}

	d2, bkSock2 := startBuildKitDaemon(t, bin, bkRoot, "")
	if bkSock2 != bkSock {
		t.Logf("new BuildKit socket %s", bkSock2)
	}
	ctxDir := buildContext(t, "FROM scratch\nCOPY hello.txt /hello.txt\n", map[string]string{"hello.txt": "hello again\n"})
	out := filepath.Join(t.TempDir(), "out")
	if code, _, stderr := runBin(t, bin, 2*time.Minute, "build", "--addr", "unix://"+bkSock2, "--progress", "plain", "--output", "type=local,dest="+out, ctxDir); code != 0 {
		t.Fatalf("build on the restarted daemon: exit %d\n%s", code, stderr)
	}
	stopDaemon(t, d2, time.Minute)
}
