package main

// Security checks: who may talk to the daemon's and BuildKit's sockets,
// the C flag only when configured, emulators nobody but root can replace,
// and no command ever unmounts binfmt_misc.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mabd/daemon/api"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/builder/buildertest"
	"mabd/internal/cli"
	"mabd/testing/fixtures"
	"mabd/testing/logbuf"
	"mabd/testing/sandbox"
)

// curlAs runs `curl -sv --unix-socket socket http://mabd/v1/status` as
// uid:gid with no supplementary groups, and returns curl's exit status and
// output (curl -v says "Permission denied" when connect(2) is refused).
func curlAs(t *testing.T, uid, gid uint32, socket string) (int, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("switching to another uid needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sSv", "--max-time", "20", "--unix-socket", socket, "http://mabd/v1/status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("curl as %d:%d: %v", uid, gid, err)
	}
	code := cmd.ProcessState.ExitCode()
	t.Logf("curl --unix-socket %s as uid %d gid %d → %d\n%s", socket, uid, gid, code, out)
	return code, string(out)
}

// refused checks that uid:gid cannot connect to socket.
func refused(t *testing.T, uid, gid uint32, socket string) {
	t.Helper()
	code, out := curlAs(t, uid, gid, socket)
	if code != 7 || !strings.Contains(out, "Permission denied") {
		t.Errorf("uid %d gid %d connecting to %s: curl exit %d, want 7 and \"Permission denied\":\n%s", uid, gid, socket, code, out)
	}
}

// socketMode stats a socket and returns its permission bits and group.
func socketMode(t *testing.T, p string) (os.FileMode, uint32) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s is %v, not a socket", p, fi.Mode())
	}
	return fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid
}

// TestSecuritySocketsNotWorldAccessible: the daemon's control socket and
// BuildKit's socket have no permission bits for others, and a user outside
// their group (uid 65534) is refused by both, although it can reach their
// directory.
func TestSecuritySocketsNotWorldAccessible(t *testing.T) {
	bin := mabdBinary(t)
	d, bkSock := startBuildKitDaemon(t, bin, filepath.Join(buildertest.Dir(t), "root"), "")
	for _, s := range []string{d.socket, bkSock} {
		mode, gid := socketMode(t, s)
		t.Logf("%s: mode %04o, group %d", s, mode, gid)
		if mode&0o007 != 0 {
			t.Errorf("%s has mode %04o: others may connect", s, mode)
		}
		if gid != 0 {
			t.Errorf("%s has group %d, want root's (no group configured)", s, gid)
		}
		refused(t, 65534, 65534, s)
		// Root can.
		c, err := net.DialTimeout("unix", s, 5*time.Second)
		if err != nil {
			t.Errorf("root cannot connect to %s: %v", s, err)
		} else {
			c.Close()
		}
	}
}

// TestSecurityControlSocketGroup: a user outside the configured group
// (uid 65534) cannot connect to the control socket; with
// [control] group = "nogroup" (gid 65534) that user can, and others still
// cannot.
//
// The first half runs the daemon in a private binfmt_misc instance
// (sandbox.Command, started from this process so that curl can run as uid
// 65534 in the host's user namespace). The second half needs the socket
// chowned to gid 65534, which a sandbox's user namespace (only root
// mapped) cannot do: it runs the daemon beside the host's table, with
// architectures = [] so that it registers nothing there.
func TestSecurityControlSocketGroup(t *testing.T) {
	bin := mabdBinary(t)
	const config = `architectures = ["arm64"]
[verify]
interval = "0"
`
	t.Run("NoGroupRefused", func(t *testing.T) {
		dir := shortDir(t)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "mabd.toml")
		if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "mabd.sock")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := sandbox.Command(ctx, bin, "daemon", "--config", cfg, "--binfmt-mount", sandbox.Placeholder, "--socket", sock, "--state-dir", filepath.Join(dir, "state"), "--no-buildkit")
		log := &logbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel() // kills the sandbox, daemon included
			_ = cmd.Wait()
			t.Logf("daemon log:\n%s", log.String())
		})
		c := api.NewClient(sock)
		for deadline := time.Now().Add(time.Minute); !c.Answers(context.Background(), time.Second); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the sandboxed daemon does not answer on %s", sock)
			}
		}
		st, err := c.Status(ctx)
		if err != nil || st.Source != "daemon" || !strings.HasPrefix(st.Mount, os.TempDir()) {
			t.Fatalf("the daemon on %s: %+v, %v; want the sandboxed daemon on a private instance", sock, st, err)
		}
		mode, gid := socketMode(t, sock)
		if mode != 0o660 || gid != 0 {
			t.Errorf("control socket mode %04o group %d, want 0660 and root's group", mode, gid)
		}
		refused(t, 65534, 65534, sock)
	})

	t.Run("GroupAllowed", func(t *testing.T) {
		// Nothing is registered in the host's table: architectures = [].
		dir, _, d := startReadyDaemon(t, bin, binfmt.DefaultDir, "architectures = []\n[verify]\ninterval = \"0\"\n[control]\ngroup = \"nogroup\"\n")
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mode, gid := socketMode(t, d.socket)
		if mode != 0o660 || gid != 65534 {
			t.Fatalf("control socket mode %04o group %d, want 0660 and nogroup (65534)", mode, gid)
		}
		code, out := curlAs(t, 65534, 65534, d.socket)
		if code != 0 || !strings.Contains(out, `"source":"daemon"`) {
			t.Errorf("uid 65534 in group nogroup: curl exit %d, want 0 and the daemon's status:\n%s", code, out)
		}
		// Group membership is what lets it in: another user is still refused.
		refused(t, 65533, 65533, d.socket)
	})
}

// TestSecurityFlagCOnlyWhenConfigured: `mabd install all` and a daemon
// with the default flags register no entry with C (nor O, which C
// implies); a daemon configured with flags = "FC" sets it and logs a
// warning. (The CLI's warning for --flags FC is TestFlagCWarns.)
func TestSecurityFlagCOnlyWhenConfigured(t *testing.T) {
	bin := mabdBinary(t)
	noC := func(t *testing.T, mount string) int {
		t.Helper()
		es := entries(t, mount)
		for _, e := range es {
			raw, err := os.ReadFile(filepath.Join(mount, e.Name))
			if err != nil {
				t.Fatal(err)
			}
			if e.Flags.Has(binfmt.Credentials) || e.Flags.Has(binfmt.OpenBinary) || !bytes.Contains(raw, []byte("\nflags: PF\n")) {
				t.Errorf("%s has flags %q:\n%s", e.Name, e.Flags.String(), raw)
			}
		}
		return len(es)
	}
	t.Run("InstallAll", func(t *testing.T) {
		sandbox.Run(t, func(t *testing.T, mount string) {
			if code, _, errs := mabd(t, "install", "all", "--binfmt-mount", mount); code != 0 || strings.Contains(errs, "flag C") {
				t.Fatalf("install all: exit %d, stderr %q", code, errs)
			}
			if n := noC(t, mount); n < 5 {
				t.Fatalf("install all registered only %d handlers", n)
			}
		})
	})
	t.Run("Daemon", func(t *testing.T) {
		sandbox.Run(t, func(t *testing.T, mount string) {
			_, _, d := startReadyDaemon(t, bin, mount, testConfig)
			if n := noC(t, mount); n != 3 {
				t.Fatalf("the daemon registered %d handlers, want 3", n)
			}
			if strings.Contains(d.log.String(), "flag C") {
				t.Errorf("a daemon without C configured warns about it:\n%s", d.log.String())
			}
			stopDaemon(t, d, 15*time.Second)

			_, _, d = startReadyDaemon(t, bin, mount, "flags = \"FC\"\n"+testConfig)
			if !d.logSays(`"level":"warn"`, 5*time.Second) || !d.logSays("flag C: setuid and setgid programs will run the emulator with their privileges", 5*time.Second) {
				t.Errorf("flags = \"FC\": the daemon's log has no warning about C:\n%s", d.log.String())
			}
			for _, e := range entries(t, mount) {
				if e.Flags.String() != "OCF" {
					t.Errorf("with flags = \"FC\" %s has flags %q, want OCF", e.Name, e.Flags.String())
				}
			}
		})
	})
}

// TestSecurityRefusesUntrustedEmulator: an emulator that someone but root
// could replace (world-writable, or in a world-writable directory without
// the sticky bit) is refused by install (exit 2, nothing registered), by
// install all (refused, exit 1), by the daemon and by mabd exec, with
// what is wrong and the fix; once fixed it is accepted.
func TestSecurityRefusesUntrustedEmulator(t *testing.T) {
	const src = "/usr/bin/qemu-aarch64-static"
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("%v: install qemu-user-static (make deps)", err)
	}
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		// Short directories (interpreters are at most 127 bytes), root's,
		// mode 0700, in the sticky /tmp.
		wwFile := shortDir(t)
		emu := filepath.Join(wwFile, "qemu-aarch64-static")
		copyExecutable(t, emu, src)
		if err := os.Chmod(emu, 0o777); err != nil {
			t.Fatal(err)
		}
		wwDir := shortDir(t)
		copyExecutable(t, filepath.Join(wwDir, "qemu-aarch64-static"), src)
		if err := os.Chmod(wwDir, 0o777); err != nil {
			t.Fatal(err)
		}
		fileMsg := emu + " is writable by everyone (mode 0777): anyone could replace the emulator that runs every arm64 program; chmod o-w it or install qemu-user-static"
		dirMsg := "directory " + wwDir + " is writable by everyone (mode 0777) without the sticky bit: anyone could replace " + filepath.Join(wwDir, "qemu-aarch64-static")
		none := func(t *testing.T) {
			t.Helper()
			if es := entries(t, mount); len(es) != 0 {
				t.Errorf("registered: %v", es)
			}
		}
		for _, tt := range []struct {
			name string
			args []string
			code int
			says string
		}{
			{"world-writable file", []string{"install", "arm64", "--emulator-dir", wwFile}, cli.ExitError, fileMsg},
			{"world-writable directory", []string{"install", "arm64", "--emulator-dir", wwDir}, cli.ExitError, dirMsg},
			{"all", []string{"install", "all", "--emulator-dir", wwFile}, cli.ExitDegraded, "qemu-aarch64: refused: " + fileMsg},
			{"exec --emulator", []string{"exec", "--platform", "linux/arm64", "--emulator", emu, "--", "/bin/true"}, exitExecSetup, "mabd exec: " + fileMsg},
			{"exec --emulator-dir", []string{"exec", "--platform", "linux/arm64", "--emulator-dir", wwDir, "--", "/bin/true"}, exitExecSetup, "mabd exec: " + dirMsg},
		} {
			t.Run(tt.name, func(t *testing.T) {
				args := tt.args
				if args[0] == "install" {
					args = append(args, "--binfmt-mount", mount)
				}
				code, out, errs := mabd(t, args...)
				if code != tt.code || !strings.Contains(out+errs, tt.says) {
					t.Errorf("exit %d, want %d, and output that says %q:\n%s%s", code, tt.code, tt.says, out, errs)
				}
				none(t)
			})
		}

		// The daemon: an architecture named explicitly is an error at
		// start (exit 2); with "all" it is refused and noted in status.
		t.Run("daemon", func(t *testing.T) {
			dir := shortDir(t)
			cfg := filepath.Join(dir, "mabd.toml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("architectures = [\"arm64\"]\nemulator_dirs = [%q]\n", wwFile)), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errs := runBin(t, bin, time.Minute, "daemon", "--config", cfg, "--binfmt-mount", mount, "--socket", filepath.Join(dir, "s"), "--state-dir", filepath.Join(dir, "state"), "--no-buildkit")
			if code != cli.ExitError || !strings.Contains(errs, fileMsg) {
				t.Errorf("daemon with an untrusted emulator: exit %d, want %d and %q:\n%s", code, cli.ExitError, fileMsg, errs)
			}
			none(t)

			_, _, d := startReadyDaemon(t, bin, mount, fmt.Sprintf("architectures = \"all\"\nemulator_dirs = [%q]\n[verify]\ninterval = \"0\"\n", wwFile))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := d.client().Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(st.Daemon.Notes, "\n"), "qemu-aarch64: refused: "+fileMsg) {
				t.Errorf("daemon with architectures = \"all\": notes %q lack the refusal", st.Daemon.Notes)
			}
			none(t)
		})

		// Fixed as the message says: accepted.
		if err := os.Chmod(emu, 0o755); err != nil {
			t.Fatal(err)
		}
		if code, _, _ := mabd(t, "install", "arm64", "--emulator-dir", wwFile, "--binfmt-mount", mount); code != 0 {
			t.Fatalf("install after chmod o-w: exit %d", code)
		}
		if e, err := (binfmt.Mount{Dir: mount}).Entry("qemu-aarch64"); err != nil || e.Interpreter != emu {
			t.Fatalf("after the fix: %+v, %v", e, err)
		}
	})
}

// binfmtMounts returns the mount points of binfmt_misc in this process's
// mount namespace.
func binfmtMounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "binfmt_misc" {
			out = append(out, f[4])
		}
	}
	return out
}

// TestSecurityNothingUnmountsBinfmtMisc runs every subcommand (good and bad
// arguments, and a daemon that unregisters its handlers on stop) in a
// private instance and checks after each that no binfmt_misc mount is
// gone.
func TestSecurityNothingUnmountsBinfmtMisc(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		before := binfmtMounts(t)
		t.Logf("binfmt_misc mounts: %q", before)
		if !containsStr(before, mount) {
			t.Fatalf("the private instance %s is not in /proc/self/mountinfo: %q", mount, before)
		}
		check := func(what string) {
			t.Helper()
			now := binfmtMounts(t)
			for _, m := range before {
				if !containsStr(now, m) {
					t.Errorf("after %s binfmt_misc is no longer mounted on %s (mounts %q)", what, m, now)
				}
			}
			if len(now) < len(before) {
				t.Errorf("after %s %d binfmt_misc mounts, before %d", what, len(now), len(before))
			}
			before = now
		}
		tmp := t.TempDir()
		persist := filepath.Join(tmp, "binfmt.d")
		state := filepath.Join(tmp, "state")
		cfg := filepath.Join(tmp, "mabd.toml")
		if err := os.WriteFile(cfg, []byte(testConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		bb := fixtures.Busybox(t, "arm64")
		m := []string{"--binfmt-mount", mount}
		// code is the exit status wanted; -1: any failure (bad arguments
		// of commands this test is not about).
		for _, c := range []struct {
			code int
			args []string
		}{
			{0, []string{"version"}},
			{0, []string{"install", "arm64", "riscv64"}},
			{0, []string{"install", "all"}},
			{0, []string{"install", "--replace", "--flags", "F", "s390x"}},
			{0, []string{"install", "--persist", "--persist-dir", persist, "arm64"}},
			{2, []string{"install", "vax"}},
			{2, []string{"install", "--flags", "Z", "arm64"}},
			{0, []string{"status"}},
			{0, []string{"status", "--json", "--all"}},
			{2, []string{"status", "arm64", "vax"}},
			{0, []string{"verify", "--state-dir", state, "arm64", "s390x"}},
			{2, []string{"verify", "--state-dir", state, "vax"}},
			{0, []string{"exec", "--platform", "linux/arm64", "--", bb, "uname", "-m"}},
			{exitExecSetup, []string{"exec", "--platform", "linux/sparc", "--", bb, "true"}},
			{0, []string{"daemon", "--check-config", "--config", cfg}},
			{2, []string{"daemon", "--check-config", "--config", filepath.Join(tmp, "missing.toml")}},
			{2, []string{"build"}},
			{2, []string{"build", "--addr", "unix://" + filepath.Join(tmp, "none.sock"), tmp}},
			{-1, []string{"manifest", "inspect"}},
			{-1, []string{"manifest", "create"}},
			{-1, []string{"image", "audit"}},
			{0, []string{"uninstall", "riscv64"}},
			{0, []string{"uninstall", "--persist-dir", persist, "all"}},
			{0, []string{"uninstall", "--force", "all"}},
			{2, []string{"no-such-command"}},
		} {
			args := c.args
			if args[0] == "install" || args[0] == "uninstall" || args[0] == "status" || args[0] == "verify" {
				args = append(args, m...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			done := make(chan int, 1)
			go func() {
				code, _, _ := mabd(t, args...)
				done <- code
			}()
			select {
			case code := <-done:
				if c.code >= 0 && code != c.code || c.code < 0 && code == 0 {
					t.Errorf("mabd %v: exit %d, want %d", args, code, c.code)
				}
			case <-ctx.Done():
				t.Fatalf("mabd %v did not finish within 2 minutes", args)
			}
			cancel()
			check("mabd " + strings.Join(args, " "))
		}

		// The daemon, which unregisters its handlers when it stops.
		_, _, d := startReadyDaemon(t, bin, mount, "unregister_on_stop = true\n"+testConfig)
		check("mabd daemon start")
		stopDaemon(t, d, 15*time.Second)
		if es := entries(t, mount); len(es) != 0 {
			t.Errorf("unregister_on_stop left %d entries", len(es))
		}
		check("mabd daemon stop with unregister_on_stop")

		// A directory where binfmt_misc is not mounted: install mounts it
		// (this user namespace's instance again) and nothing unmounts it.
		// Not t.TempDir(), whose cleanup cannot remove a mount point: the
		// parent removes this sandbox's TMPDIR once the namespace, and with
		// it the mount, is gone.
		fresh, err := os.MkdirTemp("", "unmounted-")
		if err != nil {
			t.Fatal(err)
		}
		if code, out, _ := mabd(t, "install", "arm64", "--binfmt-mount", fresh); code != 0 || !strings.Contains(out, "mounted binfmt_misc") {
			t.Errorf("install on an unmounted directory: exit %d, %q", code, out)
		}
		check("mabd install on an unmounted directory")
		if !containsStr(before, fresh) {
			t.Errorf("binfmt_misc is not mounted on %s after install mounted it: %q", fresh, before)
		}
		for _, args := range [][]string{{"uninstall", "all"}, {"status"}} {
			mabd(t, append(args, "--binfmt-mount", fresh)...)
			check("mabd " + args[0] + " on the directory install mounted")
		}
	})
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
