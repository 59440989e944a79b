package main

// The daemon under a harness that plays systemd with the real protocols:
// a NOTIFY_SOCKET datagram socket the test reads, WATCHDOG_USEC, signals,
// and systemd-socket-activate. Each test runs in a private binfmt_misc
// instance, without BuildKit.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mabd/daemon/api"
	"mabd/emulator"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/host"
	"mabd/testing/logbuf"
	"mabd/testing/sandbox"
)

// notifySocket is the systemd side of sd_notify: it collects datagrams.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T, dir string) *notifySocket {
	t.Helper()
	p := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: p, conn: c, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return n
}

// wait returns the first datagram containing want, failing after timeout.
func (n *notifySocket) wait(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon within %v", want, timeout)
		}
	}
}

// shortDir returns a fresh directory with a short path, for unix sockets
// (whose paths are limited to 107 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "mabd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// runningDaemon is a `mabd daemon` process started by a test.
type runningDaemon struct {
	cmd    *exec.Cmd
	socket string
	log    *logbuf.Buffer
	done   chan error    // its exit, once (a test that takes it may put it back)
	exited chan struct{} // closed when it has exited
}

// startDaemon writes config to dir/mabd.toml and starts the daemon on the
// private mount with its control socket in dir, without BuildKit.
func startDaemon(t *testing.T, bin, dir, mount, config string, env ...string) *runningDaemon {
	t.Helper()
	cfg := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return startDaemonArgs(t, bin, dir, []string{"daemon", "--config", cfg, "--binfmt-mount", mount, "--socket", filepath.Join(dir, "mabd.sock"),
		"--state-dir", filepath.Join(dir, "state"), "--no-buildkit"}, env...)
}

// startDaemonArgs starts `mabd ARGS…` (a daemon whose control socket is
// dir/mabd.sock) with env added to the environment. It does not wait; the
// daemon is stopped (SIGTERM, SIGKILL after a minute) and its log shown
// when the test ends.
func startDaemonArgs(t *testing.T, bin, dir string, args []string, env ...string) *runningDaemon {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return startCommand(t, cmd, filepath.Join(dir, "mabd.sock"))
}

// startCommand starts a daemon's command, whose control socket is socket,
// as startDaemonArgs does.
func startCommand(t *testing.T, cmd *exec.Cmd, socket string) *runningDaemon {
	t.Helper()
	log := &logbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &runningDaemon{cmd: cmd, socket: socket, log: log, done: make(chan error, 1), exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		close(d.exited)
		d.done <- err
	}()
	t.Cleanup(func() { stopDaemon(t, d, time.Minute) })
	return d
}

// logSays waits until the daemon's log contains s (its output is copied
// from a pipe, a moment after the daemon writes it).
func (d *runningDaemon) logSays(s string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(d.log.String(), s) {
			return true
		}
	}
	return false
}

// startReadyDaemon starts the daemon with a notify socket in a fresh short
// directory and waits for READY=1.
func startReadyDaemon(t *testing.T, bin, mount, config string) (string, *notifySocket, *runningDaemon) {
	t.Helper()
	dir := shortDir(t)
	n := newNotifySocket(t, dir)
	d := startDaemon(t, bin, dir, mount, config, "NOTIFY_SOCKET="+n.path)
	n.wait(t, "READY=1", 60*time.Second)
	return dir, n, d
}

func (d *runningDaemon) client() *api.Client { return api.NewClient(d.socket) }

var daemonBin struct {
	once  sync.Once
	path  string
	built bool // this process built it (and removes it in TestMain)
}

// envTestBin passes the built binary to the sandboxed children of this
// test process, which run the same test functions again.
const envTestBin = "MABD_TEST_BIN"

// mabdBinary builds the mabd binary, and mabd-daemon and mabd-build
// beside it, once per test run.
func mabdBinary(t *testing.T) string {
	t.Helper()
	daemonBin.once.Do(func() {
		if p := os.Getenv(envTestBin); p != "" {
			if _, err := os.Stat(p); err == nil {
				daemonBin.path = p
				return
			}
		}
		dir, err := os.MkdirTemp("", "mabd-bin-")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o755)
		daemonBin.path = buildMabd(t, dir)
		// mabd runs them for daemon, and for build, manifest and image.
		goBuild(t, filepath.Join(dir, "mabd-daemon"), "../mabd-daemon")
		goBuild(t, filepath.Join(dir, "mabd-build"), "../mabd-build")
		daemonBin.built = true
		os.Setenv(envTestBin, daemonBin.path)
	})
	if daemonBin.path == "" {
		t.Fatal("building mabd failed earlier")
	}
	return daemonBin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if daemonBin.built {
		os.RemoveAll(filepath.Dir(daemonBin.path))
	}
	os.Exit(code)
}

const testConfig = `architectures = ["arm64", "riscv64", "s390x"]
reconcile_interval = "2s"
[verify]
interval = "0"
`

func TestDaemonLifecycleUnderSystemdProtocols(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir := shortDir(t)
		n := newNotifySocket(t, dir)
		d := startDaemon(t, bin, dir, mount, testConfig, "NOTIFY_SOCKET="+n.path, "WATCHDOG_USEC=1000000")
		ready := n.wait(t, "READY=1", 60*time.Second)
		// READY=1 comes only once the handlers exist and were verified.
		es, err := binfmt.Mount{Dir: mount}.Entries()
		if err != nil || len(es) != 3 {
			t.Fatalf("at READY=1 the instance holds %d entries (%v), want 3", len(es), err)
		}
		if want := fmt.Sprintf("STATUS=%d platforms ok, 0 failing", 3+len(emulator.Native())); !strings.Contains(ready, want) {
			t.Errorf("READY datagram %q lacks the summary %q (3 emulated + the native platforms)", ready, want)
		}
		n.wait(t, "WATCHDOG=1", 5*time.Second)
		n.wait(t, "WATCHDOG=1", 5*time.Second)

		st, err := d.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Source != "daemon" || !st.Healthy() || st.Daemon.PID != d.cmd.Process.Pid || st.Daemon.LastVerification == nil {
			t.Fatalf("status from the daemon: source %s health %s pid %d verification %v", st.Source, st.Health, st.Daemon.PID, st.Daemon.LastVerification != nil)
		}
		// mabd status asks the daemon and says so.
		code, out, _ := mabd(t, "status", "--socket", d.socket)
		if code != 0 || !strings.Contains(out, "from the mabd daemon at "+d.socket) {
			t.Fatalf("mabd status via the daemon: exit %d\n%s", code, out)
		}
		code, out, _ = mabd(t, "status", "--socket", d.socket, "--json")
		var js api.DaemonStatus
		if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || js.Source != "daemon" || !js.Healthy() || js.Daemon.PID != d.cmd.Process.Pid {
			t.Fatalf("mabd status --json via the daemon: exit %d, %v, source %q, health %q, pid %d\n%s", code, err, js.Source, js.Health, js.Daemon.PID, out)
		}
		// The daemon answers compact JSON; people get it indented.
		if !strings.HasPrefix(out, "{\n  \"") || !strings.HasSuffix(out, "}\n") {
			t.Fatalf("mabd status --json via the daemon is not indented:\n%.300s", out)
		}

		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		n.wait(t, "STOPPING=1", 10*time.Second)
		select {
		case err := <-d.done:
			if err != nil {
				t.Fatalf("daemon exited with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("daemon did not exit after SIGTERM")
		}
		if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
			t.Errorf("control socket left behind: %v", err)
		}
		// Handlers stay registered after stop: builds rely on them.
		if es, _ := (binfmt.Mount{Dir: mount}).Entries(); len(es) != 3 {
			t.Errorf("after stop %d entries, want 3 (unregister_on_stop is off)", len(es))
		}
	})
}

// restored waits until the three handlers are registered and enabled, and
// returns how long that took.
func restored(t *testing.T, m binfmt.Mount, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		es, _ := m.Entries()
		ok := len(es) == 3
		for _, e := range es {
			ok = ok && e.Enabled && e.Flags.Has(binfmt.FixBinary)
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("handlers not restored within %v: %v", limit, es)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDaemonSelfHeals(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		_, _, d := startReadyDaemon(t, bin, mount, testConfig)
		m := binfmt.Mount{Dir: mount}
		// The daemon repairs within its 2 s interval; the limit adds the
		// polling of this test and slack for a loaded machine. The measured
		// times are logged.
		const limit = 2500 * time.Millisecond
		for i := 0; i < 5; i++ {
			if err := m.RemoveAll(); err != nil {
				t.Fatal(err)
			}
			t.Logf("table wiped (%d): restored after %v", i+1, restored(t, m, limit))
		}
		if err := m.Remove("qemu-riscv64"); err != nil {
			t.Fatal(err)
		}
		t.Logf("one entry removed: restored after %v", restored(t, m, limit))
		if err := m.Disable("qemu-s390x"); err != nil {
			t.Fatal(err)
		}
		t.Logf("one entry disabled: restored after %v", restored(t, m, limit))
		// An entry of ours changed (F dropped) is put back.
		e, _ := m.Entry("qemu-aarch64")
		if err := m.Remove(e.Name); err != nil {
			t.Fatal(err)
		}
		e.Flags = binfmt.PreserveArgv0
		if err := m.Register(e.Spec); err != nil {
			t.Fatal(err)
		}
		t.Logf("one entry changed: restored after %v", restored(t, m, limit))

		st, err := d.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Daemon.Repairs < 3*5+3 {
			t.Errorf("status counts %d repairs, want at least %d", st.Daemon.Repairs, 3*5+3)
		}
		if !d.logSays("repaired handler", 5*time.Second) {
			t.Errorf("the log does not say what was repaired")
		}
		resp, err := d.client().Reconcile(context.Background())
		if err != nil || len(resp.Repairs) != 0 {
			t.Errorf("POST /v1/reconcile on a healthy table: %+v, %v", resp, err)
		}
		// The repairs are counted in the Prometheus metrics too, and a
		// verification on request (POST /v1/verify) shows every platform ok.
		if v, err := d.client().Verify(context.Background()); err != nil || !v.OK() {
			t.Fatalf("POST /v1/verify: %+v, %v", v, err)
		}
		out, err := exec.Command("curl", "-sS", "--unix-socket", d.socket, "http://mabd/metrics").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `mabd_repairs_total{action="registered"}`) || !strings.Contains(string(out), `mabd_platform_verified{platform="linux/arm64",qemu_arch="aarch64"} 1`) {
			var ours []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "mabd_") {
					ours = append(ours, l)
				}
			}
			t.Errorf("GET /metrics: %v\n%s", err, strings.Join(ours, "\n"))
		}
	})
}

// TestDaemonRemounts: binfmt_misc unmounted under the daemon (which
// destroys the instance's entries) is mounted again and the handlers
// restored; while it cannot be mounted (a file appeared on the mount
// point) the daemon says so once, not at every pass, and hides nothing.
func TestDaemonRemounts(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		_, _, d := startReadyDaemon(t, bin, mount, "architectures = [\"arm64\", \"riscv64\"]\nreconcile_interval = \"200ms\"\n[verify]\ninterval = \"0\"\n")
		m := binfmt.Mount{Dir: mount}
		// This is the sandbox's private instance; never do this to the host's.
		if err := syscall.Unmount(mount, 0); err != nil {
			t.Fatal(err)
		}
		stray := filepath.Join(mount, "stray")
		if err := os.WriteFile(stray, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // ten passes
		if ok, _ := binfmt.Mounted(mount); ok {
			t.Fatal("the daemon mounted binfmt_misc over a directory holding a file")
		}
		if n := strings.Count(d.log.String(), "holds files"); n != 1 {
			t.Errorf("the refusal to mount was logged %d times in ten passes, want once", n)
		}
		if err := os.Remove(stray); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for es, _ := m.Entries(); len(es) != 2; es, _ = m.Entries() {
			if time.Now().After(deadline) {
				t.Fatalf("handlers not restored after the remount: %v", es)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !d.logSays(`"action":"mounted"`, 5*time.Second) {
			t.Errorf("the log does not say binfmt_misc was mounted again")
		}
	})
}

// TestDaemonLeavesBinfmtUnmounted: a daemon with no handlers to keep
// (architectures = []) does not mount binfmt_misc where it is not
// mounted, and is healthy: what it is asked for needs no handler.
func TestDaemonLeavesBinfmtUnmounted(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		// This is the sandbox's private instance; never do this to the host's.
		if err := syscall.Unmount(mount, 0); err != nil {
			t.Fatal(err)
		}
		_, _, d := startReadyDaemon(t, bin, mount, "architectures = []\nreconcile_interval = \"200ms\"\n[verify]\ninterval = \"0\"\n")
		time.Sleep(time.Second) // five passes
		if ok, _ := binfmt.Mounted(mount); ok {
			t.Error("a daemon with no handlers to keep mounted binfmt_misc")
		}
		if code, out, _ := runBin(t, bin, time.Minute, "status", "--socket", d.socket); code != 0 {
			t.Errorf("mabd status through the daemon: exit %d, want 0 (healthy):\n%s", code, out)
		}
	})
}

// TestDaemonConflictPolicies: with an entry of another tool that serves
// its architecture (Debian's aarch64) and a defective one (Debian's mips,
// whose mask refuses ABI version 2 and above), "repair" (the default)
// keeps the first and replaces the second, "keep" keeps both and reports
// the second as a conflict, "replace" replaces both.
func TestDaemonConflictPolicies(t *testing.T) {
	bin := mabdBinary(t)
	for _, policy := range []string{"repair", "keep", "replace"} {
		t.Run(policy, func(t *testing.T) {
			sandbox.Run(t, func(t *testing.T, mount string) {
				_, _, d := startReadyDaemon(t, bin, mount, fmt.Sprintf("conflict = %q\narchitectures = [\"arm64\", \"mips\"]\nreconcile_interval = \"1s\"\n[verify]\ninterval = \"0\"\n", policy))
				m := binfmt.Mount{Dir: mount}
				debArm, debMips := debianLine(t, "aarch64"), debianLine(t, "mips")
				for _, s := range []binfmt.Spec{debArm, debMips} {
					if err := m.Remove(s.Name); err != nil {
						t.Fatal(err)
					}
					if err := m.Register(s); err != nil {
						t.Fatal(err)
					}
				}
				var st *api.DaemonStatus
				deadline := time.Now().Add(20 * time.Second)
				for {
					var err error
					if st, err = d.client().Status(context.Background()); err != nil {
						t.Fatal(err)
					}
					h := handler(t, st.Status, "mips")
					settled := h.Verified != nil && !h.Verified.Stale
					if settled || time.Now().After(deadline) {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				arm, _ := m.Entry("qemu-aarch64")
				mips, _ := m.Entry("qemu-mips")
				kept := func(e binfmt.Entry, s binfmt.Spec) bool { return e.Spec.Equal(s) }
				switch policy {
				case "repair":
					if !kept(arm, debArm) || kept(mips, debMips) || !st.Healthy() || len(st.Daemon.Served) != 1 {
						t.Fatalf("repair: aarch64 kept %v, mips kept %v, health %s, served %v", kept(arm, debArm), kept(mips, debMips), st.Health, st.Daemon.Served)
					}
					if h := handler(t, st.Status, "aarch64"); h.State != host.StateOK || !strings.HasPrefix(h.Owner, "systemd-binfmt") {
						t.Fatalf("repair: aarch64 %s owned by %q", h.State, h.Owner)
					}
				case "keep":
					if !kept(arm, debArm) || !kept(mips, debMips) || st.Healthy() || len(st.Daemon.Conflicts) != 1 || !strings.Contains(st.Daemon.Conflicts[0], host.DefectNarrowMask) {
						t.Fatalf("keep: aarch64 kept %v, mips kept %v, health %s, conflicts %v", kept(arm, debArm), kept(mips, debMips), st.Health, st.Daemon.Conflicts)
					}
					if h := handler(t, st.Status, "mips"); h.State != host.StateConflict {
						t.Fatalf("keep: mips is %s", h.State)
					}
				case "replace":
					if kept(arm, debArm) || kept(mips, debMips) || !st.Healthy() || st.Daemon.Repairs < 2 {
						t.Fatalf("replace: aarch64 kept %v, mips kept %v, health %s, repairs %d", kept(arm, debArm), kept(mips, debMips), st.Health, st.Daemon.Repairs)
					}
				}
			})
		})
	}
}

func TestDaemonConfigErrors(t *testing.T) {
	bin := mabdBinary(t)
	dir := t.TempDir()
	tests := []struct {
		name, config string
		says         []string
	}{
		{"typo", "architecturs = [\"arm64\"]\n", []string{":1", "architecturs"}},
		{"wrong type", "reconcile_interval = \"2s\"\npersist = \"yes\"\n", []string{":2", "persist"}},
		{"bad value", "\n\nconflict = \"fight\"\n", []string{":3", "conflict"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tt.name+".toml")
			if err := os.WriteFile(cfg, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"daemon", "--check-config", "--config", cfg}, {"daemon", "--config", cfg, "--binfmt-mount", t.TempDir(), "--socket", filepath.Join(t.TempDir(), "s")}} {
				out, err := exec.Command(bin, args...).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Fatalf("mabd %v: %v, want exit 2\n%s", args, err, out)
				}
				for _, s := range tt.says {
					if !strings.Contains(string(out), s) {
						t.Errorf("mabd %v does not say %q:\n%s", args, s, out)
					}
				}
			}
		})
	}
	out, err := exec.Command(bin, "daemon", "--check-config", "--config", filepath.Join(dir, "missing.toml")).CombinedOutput()
	if err == nil {
		t.Errorf("a missing explicit config was accepted: %s", out)
	}
}

func TestDaemonReloadKeepsOldConfigWhenBroken(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir, n, d := startReadyDaemon(t, bin, mount, testConfig)
		cfg := filepath.Join(dir, "mabd.toml")
		// A broken config: the old one keeps running, the log says why.
		if err := os.WriteFile(cfg, []byte("architectures = 3\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		n.wait(t, "RELOADING=1", 10*time.Second)
		n.wait(t, "READY=1", 10*time.Second)
		if !d.logSays("keeping the running configuration", 5*time.Second) {
			t.Errorf("the log does not say the broken config was refused")
		}
		// A good one: only the difference is applied.
		if err := os.WriteFile(cfg, []byte("architectures = [\"arm64\", \"riscv64\", \"ppc64le\"]\n[verify]\ninterval = \"0\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before, _ := binfmt.Mount{Dir: mount}.Entry("qemu-aarch64")
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		n.wait(t, "RELOADING=1", 10*time.Second)
		n.wait(t, "READY=1", 30*time.Second)
		es, _ := binfmt.Mount{Dir: mount}.Entries()
		var names []string
		for _, e := range es {
			names = append(names, e.Name)
		}
		if strings.Join(names, ",") != "qemu-aarch64,qemu-ppc64le,qemu-riscv64" {
			t.Fatalf("after reload: %v", names)
		}
		after, _ := binfmt.Mount{Dir: mount}.Entry("qemu-aarch64")
		if !after.Spec.Equal(before.Spec) {
			t.Errorf("an unchanged handler was touched")
		}
	})
}

func TestDaemonSocketActivation(t *testing.T) {
	bin := mabdBinary(t)
	act, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate not found: install systemd (make deps)")
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir := shortDir(t)
		cfg := filepath.Join(dir, "mabd.toml")
		if err := os.WriteFile(cfg, []byte(testConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "activated.sock")
		cmd := exec.Command(act, "-l", sock, bin, "daemon", "--config", cfg, "--binfmt-mount", mount, "--state-dir", filepath.Join(dir, "state"), "--no-buildkit", "--socket", filepath.Join(dir, "unused.sock"))
		log := &logbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			t.Logf("log:\n%s", log.String())
		}()
		// The first request reaches the daemon while it starts: it is
		// held until the daemon is ready, and answered as a ready daemon
		// answers (not 503). Until systemd-socket-activate listens (the
		// socket's file appears at bind, a moment before) a connection
		// is refused and nothing is sent: try again.
		var st *api.DaemonStatus
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st, err = api.NewClient(sock).Status(context.Background())
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || st.Source != "daemon" || st.Daemon.LastVerification == nil {
			t.Fatalf("the first GET /v1/status on the activated socket: %v, source %q, last verification %v; want the status of a verified daemon", err, st.Source, st.Daemon.LastVerification)
		}
		if code := healthz(t, sock); code != http.StatusOK {
			t.Fatalf("GET /healthz on the activated socket answered %d, want 200", code)
		}
		if _, err := os.Stat(filepath.Join(dir, "unused.sock")); !os.IsNotExist(err) {
			t.Errorf("the daemon opened its own socket although systemd passed one")
		}
	})
}

func TestDaemonServesManyClientsAndRefusesGarbage(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		_, _, d := startReadyDaemon(t, bin, mount, testConfig)
		// Garbage, an oversized header and a slow client: 4xx or closed,
		// and the daemon keeps serving.
		for _, raw := range []string{"GARBAGE\r\n\r\n", "GET /v1/status HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 1<<20) + "\r\n\r\n", "POST /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"} {
			c, err := net.Dial("unix", d.socket)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write([]byte(raw))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line != "" && !strings.Contains(line, " 4") {
				t.Errorf("request %.30q got %q, want a 4xx or a closed connection", raw, line)
			}
		}
		slow, err := net.Dial("unix", d.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		_, _ = slow.Write([]byte("GET /v1/sta"))

		// 200 concurrent clients for 10 s: no errors.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var requests, failures int
		var firstErr error
		for i := 0; i < 200; i++ {
			wg.Go(func() {
				c := api.NewClient(d.socket)
				for ctx.Err() == nil {
					rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
					_, err := c.Status(rctx)
					rcancel()
					mu.Lock()
					requests++
					if err != nil {
						failures++
						if firstErr == nil {
							firstErr = err
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		t.Logf("%d status requests from 200 clients in 10 s", requests)
		if failures > 0 {
			t.Fatalf("%d of %d requests failed; first: %v", failures, requests, firstErr)
		}
	})
}
