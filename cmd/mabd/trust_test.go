package main

// The defects of issue "Trustworthy on a real build host": other tools'
// entries, health that means it, no hidden directories, no silent partial
// work, bounded and sanitised input.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"mabd/daemon/api"
	"mabd/emulator"
	"mabd/host"
	"mabd/internal/cli"
	"mabd/testing/sandbox"
)

// debianLine returns the register line of Debian's binfmt.d file for arch
// (qemu-user-static's /usr/lib/binfmt.d/qemu-ARCH.conf).
func debianLine(t *testing.T, arch string) binfmt.Spec {
	t.Helper()
	specs, err := binfmt.ReadConf("/usr/lib/binfmt.d/qemu-" + arch + ".conf")
	if err != nil || len(specs) != 1 {
		t.Fatalf("Debian's qemu-%s.conf: %v (%d lines): install qemu-user-static (make deps)", arch, err, len(specs))
	}
	return specs[0]
}

// TestOtherToolsEntries: an entry of another tool that runs every program
// of its architecture in containers too is as good as mabd's (ok, its owner
// named); a defective one is a conflict with the reason and the fix.
func TestOtherToolsEntries(t *testing.T) {
	noF := func(s binfmt.Spec) binfmt.Spec { s.Flags = binfmt.PreserveArgv0; return s }
	tests := []struct {
		name     string
		arch     string
		entry    func(t *testing.T) binfmt.Spec
		state    string
		owner    string
		says     []string
		exit     int
		installs string // what install (without --replace) says
	}{
		{"Debian's aarch64", "aarch64", func(t *testing.T) binfmt.Spec { return debianLine(t, "aarch64") },
			host.StateOK, "systemd-binfmt (/usr/lib/binfmt.d/qemu-aarch64.conf)", []string{"served by systemd-binfmt", "in containers too"}, 0, "served by systemd-binfmt"},
		{"Debian's mips mask", "mips", func(t *testing.T) binfmt.Spec { return debianLine(t, "mips") },
			host.StateConflict, "systemd-binfmt (/usr/lib/binfmt.d/qemu-mips.conf)", []string{host.DefectNarrowMask, "byte 8 (EI_ABIVERSION)", "ABI version 2 and above", "mabd install --replace mips", `conflict = "repair"`}, 1, "conflict: "},
		{"no F", "aarch64", func(t *testing.T) binfmt.Spec { return noF(debianLine(t, "aarch64")) },
			host.StateConflict, "another tool", []string{host.DefectNoFixBinary, "containers"}, 1, "conflict: "},
		{"another architecture's emulator", "s390x", func(t *testing.T) binfmt.Spec {
			a, _ := binfmt.ArchByName("s390x")
			return a.Spec("/usr/bin/qemu-riscv64-static", binfmt.FixBinary|binfmt.PreserveArgv0)
		}, host.StateOK, "another tool", nil, 0, "served by another tool"}, // until verified: see TestHealthMeansIt
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sandbox.Run(t, func(t *testing.T, mount string) {
				m := binfmt.Mount{Dir: mount}
				e := tt.entry(t)
				if err := m.Register(e); err != nil {
					t.Fatal(err)
				}
				code, st := statusJSON(t, mount, tt.arch)
				h := handler(t, st, tt.arch)
				if code != tt.exit || h.State != tt.state || h.Owner != tt.owner {
					t.Errorf("status: exit %d, %s, owner %q; want %d, %s, %q (%s)", code, h.State, h.Owner, tt.exit, tt.state, tt.owner, h.Detail)
				}
				for _, s := range tt.says {
					if !strings.Contains(h.Detail, s) {
						t.Errorf("status detail does not say %q: %s", s, h.Detail)
					}
				}
				code, out, _ := mabd(t, "install", tt.arch, "--binfmt-mount", mount)
				if code != tt.exit || !strings.Contains(out, tt.installs) {
					t.Errorf("install: exit %d, %q; want %d and %q", code, out, tt.exit, tt.installs)
				}
				if got, _ := m.Entry(e.Name); !got.Spec.Equal(e) {
					t.Fatalf("install without --replace changed the entry: %v", got.Spec)
				}
				if code, _, _ := mabd(t, "uninstall", tt.arch, "--binfmt-mount", mount, "--persist-dir", t.TempDir()); code != 1 {
					t.Errorf("uninstall of another tool's entry without --force: exit %d, want 1", code)
				}
				if code, _, _ := mabd(t, "install", "--replace", tt.arch, "--binfmt-mount", mount); code != 0 {
					t.Fatalf("install --replace: exit %d", code)
				}
				if code, st := statusJSON(t, mount, tt.arch); code != 0 || handler(t, st, tt.arch).Owner != "mabd" {
					t.Errorf("status after --replace: exit %d, owner %q", code, handler(t, st, tt.arch).Owner)
				}
			})
		})
	}
}

// crashingEmulator builds a static program that answers --version like
// QEMU's emulator for arch and dies of SIGKILL on anything else: an
// emulator that installs fine and fails every program.
func crashingEmulator(t *testing.T, dir, arch string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "main.go")
	prog := fmt.Sprintf(`package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("qemu-%s version 7.2.22 (mabd test)")
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
`, arch)
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "qemu-"+arch+"-static")
	build := exec.Command(goTool(t), "build", "-o", out, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the crashing emulator: %v\n%s", err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHealthMeansIt: a platform whose last verification failed is not
// supported and makes the host degraded — in status, in the daemon's
// /healthz, /v1/status, STATUS= and metrics — and a verification of an
// entry that was replaced since counts no more.
func TestHealthMeansIt(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		emuDir := shortDir(t)
		crashingEmulator(t, emuDir, "aarch64")
		state := t.TempDir()
		args := []string{"--binfmt-mount", mount, "--emulator-dir", emuDir, "--state-dir", state}

		// The CLI.
		if code, _, _ := mabd(t, append([]string{"install", "arm64"}, args[:4]...)...); code != 0 {
			t.Fatal("install arm64 from the crashing emulator failed")
		}
		code, v := verifyJSON(t, append([]string{"arm64"}, args...)...)
		if code != cli.ExitDegraded || len(v.Failed()) != 1 || !strings.HasPrefix(v.Failed()[0].Reason, emulator.ReasonCrashed) {
			t.Fatalf("verify: exit %d, %+v; want 1 and emulator crashed", code, v.Results)
		}
		code, st := statusJSON(t, mount, args[2:]...)
		h := handler(t, st, "aarch64")
		if code != cli.ExitDegraded || h.State != host.StateFailing || strings.Contains(strings.Join(st.Supported, " "), "linux/arm64") {
			t.Fatalf("status after a failed verify: exit %d, %s, supported %v; want 1, failing, no linux/arm64", code, h.State, st.Supported)
		}
		// A handler replaced since: the failure is stale and counts no more.
		if code, _, _ := mabd(t, "install", "--replace", "arm64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install --replace arm64 failed")
		}
		code, st = statusJSON(t, mount, args[2:]...)
		if h := handler(t, st, "aarch64"); code != 0 || h.State != host.StateOK || h.Verified == nil || !h.Verified.Stale {
			t.Fatalf("status after the entry was replaced: exit %d, %s, verified %+v; want 0, ok, stale", code, h.State, h.Verified)
		}

		// The daemon.
		if err := (binfmt.Mount{Dir: mount}).RemoveAll(); err != nil {
			t.Fatal(err)
		}
		// emulator = "first": registered unproved, the crashing one is
		// what the daemon keeps (with "auto" it would choose /usr/bin's).
		config := fmt.Sprintf("architectures = [\"arm64\", \"riscv64\"]\nemulator_dirs = [%q, \"/usr/bin\"]\nemulator = \"first\"\n[verify]\ninterval = \"0\"\n", emuDir)
		_, _, d := startReadyDaemon(t, bin, mount, config)
		ds, err := d.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ds.Healthy() || strings.Contains(strings.Join(ds.Supported, " "), "linux/arm64") || handler(t, ds.Status, "aarch64").State != host.StateFailing {
			t.Errorf("/v1/status: health %s, supported %v, aarch64 %s; want degraded, no linux/arm64, failing", ds.Health, ds.Supported, handler(t, ds.Status, "aarch64").State)
		}
		if code := healthz(t, d.socket); code != http.StatusServiceUnavailable {
			t.Errorf("/healthz answered %d, want 503", code)
		}
		// riscv64 and the natives work.
		if !d.logSays(fmt.Sprintf("degraded: %d platforms ok, 1 failing: linux/arm64 (emulator crashed)", 1+len(emulator.Native())), 5*time.Second) {
			t.Errorf("the daemon's STATUS= does not name the failing platform")
		}
		if code, _, _ := runBin(t, bin, time.Minute, "status", "--socket", d.socket); code != cli.ExitDegraded {
			t.Errorf("mabd status through the daemon: exit %d, want 1", code)
		}
		// --json prints the daemon's answer as it came; the exit status
		// still says degraded.
		code, out, _ := runBin(t, bin, time.Minute, "status", "--socket", d.socket, "--json")
		var js api.DaemonStatus
		if err := json.Unmarshal([]byte(out), &js); code != cli.ExitDegraded || err != nil || js.Source != "daemon" || js.Healthy() || handler(t, js.Status, "aarch64").State != host.StateFailing {
			t.Errorf("mabd status --json through the daemon: exit %d, %v, source %q, health %q; want 1 and the daemon's degraded status\n%s", code, err, js.Source, js.Health, out)
		}
		metrics := httpGet(t, d.socket, "/metrics")
		if !strings.Contains(metrics, "mabd_healthy 0") || !strings.Contains(metrics, `mabd_platform_verified{platform="linux/arm64",qemu_arch="aarch64"} 0`) {
			t.Errorf("metrics do not say degraded:\n%s", grepLines(metrics, "mabd_"))
		}
	})
}

// healthz returns the status code of GET /healthz on the control socket.
func healthz(t *testing.T, socket string) int {
	t.Helper()
	resp, err := unixClient(socket).Get("http://mabd/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// httpGet returns the body of GET path on the control socket.
func httpGet(t *testing.T, socket, path string) string {
	t.Helper()
	resp, err := unixClient(socket).Get("http://mabd" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return string(b)
}

func unixClient(socket string) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
}

// grepLines keeps the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestNeverHideADirectory: binfmt_misc is mounted only on an empty
// directory (or where it is), and an empty --binfmt-mount is refused
// rather than taken for the host's table.
func TestNeverHideADirectory(t *testing.T) {
	bin := mabdBinary(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"install", "arm64", "--binfmt-mount", full},
		{"install", "arm64", "--binfmt-mount", ""},
		{"uninstall", "arm64", "--binfmt-mount", ""},
		{"status", "--binfmt-mount", ""},
		{"verify", "--binfmt-mount", ""},
		{"daemon", "--check-config", "--binfmt-mount", ""},
		{"daemon", "--check-config", "--binfmt-mount", full},
		{"daemon", "--check-config", "--binfmt-mount", "/etc"},
	} {
		code, out, errs := runBin(t, bin, time.Minute, args...)
		if code != cli.ExitError || !strings.Contains(out+errs, "binfmt") {
			t.Errorf("mabd %q: exit %d, %q; want 2 and a clear error", args, code, out+errs)
		}
	}
	if b, err := os.ReadFile(filepath.Join(full, "precious")); err != nil || string(b) != "x" {
		t.Fatalf("the directory's file: %q, %v", b, err)
	}
	if ok, _ := binfmt.Mounted(full); ok {
		t.Fatal("binfmt_misc was mounted over the directory")
	}
}

// TestNoSilentPartialWork: files mabd did not write are never overwritten
// nor removed; uninstall goes on past failures and its exit status tells
// partly done (1) from nothing changed (2); concurrent uninstalls do not
// fail each other.
func TestNoSilentPartialWork(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		persist := t.TempDir()
		args := []string{"--binfmt-mount", mount, "--persist-dir", persist}
		admin := filepath.Join(persist, "qemu-aarch64.conf")
		adminText := "# the administrator's own\n" + debianLine(t, "aarch64").Line() + "\n"
		if err := os.WriteFile(admin, []byte(adminText), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, _ := mabd(t, append([]string{"install", "--persist", "arm64", "riscv64"}, args...)...)
		if code != cli.ExitDegraded || !strings.Contains(out, "qemu-aarch64: not persisted") || !strings.Contains(out, "not written by mabd") {
			t.Errorf("install --persist over an administrator's file: exit %d, %q", code, out)
		}
		code, out, _ = mabd(t, append([]string{"uninstall", "all"}, args...)...)
		if code != 0 || !strings.Contains(out, "qemu-riscv64: removed") || !strings.Contains(out, admin+": kept") {
			t.Errorf("uninstall all: exit %d, %q", code, out)
		}
		if b, _ := os.ReadFile(admin); string(b) != adminText {
			t.Fatalf("the administrator's file changed: %q", b)
		}

		// A file mabd wrote that cannot be removed: the handlers still go.
		if code, _, _ := mabd(t, append([]string{"install", "--persist", "riscv64", "s390x"}, args...)...); code != 0 {
			t.Fatal("install --persist riscv64 s390x failed")
		}
		if err := syscall.Mount(persist, persist, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		ro := persist
		t.Cleanup(func() {
			if err := syscall.Unmount(ro, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", ro, err)
			}
		})
		if err := syscall.Mount("", persist, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatal(err)
		}
		code, out, errs := mabd(t, append([]string{"uninstall", "riscv64", "s390x"}, args...)...)
		if code != cli.ExitDegraded || !strings.Contains(out, "partly done: 2 removed, 2 failed") || strings.Count(errs, "failed:") != 2 {
			t.Errorf("uninstall with read-only files: exit %d, %q %q; want 1, partly done", code, out, errs)
		}
		code, out, _ = mabd(t, append([]string{"uninstall", "riscv64", "s390x"}, args...)...)
		if code != cli.ExitError || !strings.Contains(out, "nothing changed") {
			t.Errorf("uninstall again: exit %d, %q; want 2, nothing changed", code, out)
		}

		// Concurrent uninstalls: an entry another one removed is no error.
		persist = t.TempDir()
		for round := 0; round < 5; round++ {
			if code, _, _ := mabd(t, "install", "all", "--binfmt-mount", mount); code != 0 {
				t.Fatal("install all failed")
			}
			var wg sync.WaitGroup
			codes := make([]int, 3)
			for i := range codes {
				wg.Go(func() {
					codes[i], _, _ = mabd(t, "uninstall", "all", "--binfmt-mount", mount, "--persist-dir", persist)
				})
			}
			wg.Wait()
			for _, c := range codes {
				if c != 0 {
					t.Fatalf("round %d: concurrent uninstall all exited %v", round, codes)
				}
			}
		}
	})
}

// TestVerifySavesSafely: a state directory that cannot be written still
// gets the results printed, with a warning; concurrent verifies do not
// trip over each other's temporary files; without root, verify could not
// check (2), said once.
func TestVerifySavesSafely(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		if code, _, _ := mabd(t, "install", "riscv64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install riscv64 failed")
		}
		notDir := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(notDir, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := mabd(t, "verify", "riscv64", "--binfmt-mount", mount, "--state-dir", notDir)
		if code != 0 || !strings.Contains(out, "1 verified, 0 failed") || !strings.Contains(errs, "not saved") {
			t.Errorf("verify with an unwritable state dir: exit %d, %q %q; want 0, the results and a warning", code, out, errs)
		}
		state := t.TempDir()
		var wg sync.WaitGroup
		codes := make([]int, 24)
		for i := range codes {
			wg.Go(func() {
				codes[i], _, _ = runBin(t, bin, 2*time.Minute, "verify", "riscv64", "--binfmt-mount", mount, "--state-dir", state)
			})
		}
		wg.Wait()
		for i, c := range codes {
			if c != 0 {
				t.Errorf("concurrent verify %d exited %d", i, c)
			}
		}
		des, _ := os.ReadDir(state)
		if len(des) != 1 || des[0].Name() != "verify.json" {
			t.Errorf("state dir after concurrent verifies: %v; want only verify.json", des)
		}
		for _, timeout := range []string{"0", "-1s"} {
			if code, _, errs := mabd(t, "verify", "--timeout", timeout, "--binfmt-mount", mount, "--state-dir", "-"); code != cli.ExitError || !strings.Contains(errs, "above 0") {
				t.Errorf("verify --timeout %s: exit %d, %q", timeout, code, errs)
			}
		}
	})
	// Not root: nothing can be checked.
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	r := runExec(t, bin, "/", nobody, nil, nil, "verify", "--state-dir", "-")
	if r.code != cli.ExitError || strings.Count(r.stderr+r.stdout, "needs root") != 1 {
		t.Errorf("verify as nobody: exit %d, %q %q; want 2 and the reason once", r.code, r.stdout, r.stderr)
	}
}

// TestBadEmulatorDirs: a directory that does not exist is an error, not
// "nothing to do".
func TestBadEmulatorDirs(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		for _, args := range [][]string{
			{"install", "--emulator-dir", "/typo", "all"},
			{"install", "--emulator-dir", "/etc/passwd", "arm64"},
		} {
			code, _, errs := mabd(t, append(args, "--binfmt-mount", mount)...)
			if code != cli.ExitError || !strings.Contains(errs, "emulator directory") {
				t.Errorf("mabd %q: exit %d, %q; want 2 naming the directory", args, code, errs)
			}
		}
		if es := entries(t, mount); len(es) != 0 {
			t.Errorf("entries registered: %v", es)
		}
	})
}

// TestStateFilesShownSafely: what mabd reads back from its state directory
// reaches the terminal with its control characters escaped.
func TestStateFilesShownSafely(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		if code, _, _ := mabd(t, "install", "riscv64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install riscv64 failed")
		}
		state := t.TempDir()
		v := host.Verification{At: time.Now(), Mount: mount, Results: []host.VerifyResult{{
			Platform: "linux/riscv64", QEMUArch: "riscv64", State: emulator.StateFailed,
			Reason: "evil\x1b]0;owned\x07\x1b[2J\nqemu-fake: ok", Fix: "\x1b[31mrm -rf /",
		}}}
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(state, "verify.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, out, _ := mabd(t, "status", "--binfmt-mount", mount, "--state-dir", state)
		if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `evil\x1b]0;owned\x07`) || strings.Contains(out, "\nqemu-fake") {
			t.Errorf("status printed control characters from the state file raw:\n%q", out)
		}
	})
}
