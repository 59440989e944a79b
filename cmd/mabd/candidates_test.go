package main

// Issue "Emulators chosen by proof": several QEMU builds per
// architecture, proved by workload probes; the one that works wins.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/host"
	"mabd/internal/cli"
	"mabd/testing/sandbox"
)

// candidate returns the candidate of st at path.
func candidate(t *testing.T, st host.Status, path string) host.CandidateStatus {
	t.Helper()
	for _, c := range st.Candidates {
		if c.Path == path {
			return c
		}
	}
	t.Fatalf("status lists no candidate %s: %+v", path, st.Candidates)
	return host.CandidateStatus{}
}

// TestCandidatesI386: with QEMU 7.2 (Debian 12) and QEMU 10 (Debian 13)
// as candidates for i386 — asked for explicitly, with --emulate-native,
// since i386 is native on amd64 — install tries both in private
// instances of their own: 7.2 crashes in the workload probe, 10 passes
// and is registered. Status lists both, with their versions, where they
// came from, their last results and why; verify --deep passes through the
// one registered.
func TestCandidatesI386(t *testing.T) {
	old, newer := emulatortest.First(t, "i386"), emulatortest.Second(t, "i386")
	sandbox.Run(t, func(t *testing.T, mount string) {
		state := t.TempDir()
		dirs := []string{"--emulator-dir", emulatortest.FirstDir, "--emulator-dir", emulatortest.SecondDir, "--state-dir", state}
		code, out, _ := mabd(t, append([]string{"install", "i386", "--emulate-native", "--binfmt-mount", mount}, dirs...)...)
		chose := regexp.MustCompile(`qemu-i386: chose ` + regexp.QuoteMeta(newer) + ` 10\.0\.\d+: passed the workload probe \(bench [0-9.]+x\); ` +
			regexp.QuoteMeta(old) + ` 7\.2\.\d+: crashed \((SIG[A-Z]+|its Go runtime: "(fatal|SIG)[^"]*")\) in the workload probe\n`)
		if code != 0 || !chose.MatchString(out) {
			t.Fatalf("install: exit %d, want 0 and a line matching %s", code, chose)
		}
		e, err := binfmt.Mount{Dir: mount}.Entry("qemu-i386")
		if err != nil || e.Interpreter != newer || !e.Flags.Has(binfmt.FixBinary) {
			t.Fatalf("qemu-i386 is %+v (%v), want %s with F", e, err, newer)
		}

		_, st := statusJSON(t, mount, append([]string{"--all", "i386"}, dirs...)...)
		crashed, passed := candidate(t, st, old), candidate(t, st, newer)
		if crashed.Version != emulatortest.Version(t, old) || crashed.Source != emulatortest.FirstDir || crashed.Registered || crashed.Last == nil || crashed.Last.Workload == nil {
			t.Fatalf("status of %s: %+v", old, crashed)
		}
		signal := regexp.MustCompile(`^emulator crashed: (killed by SIG[A-Z]+ \(|exit status \d+ after a fatal error of the probe's Go runtime .*: "(fatal|SIG))`)
		if w := crashed.Last.Workload; w.State != emulator.StateFailed || !signal.MatchString(w.Reason) || !strings.Contains(crashed.Result, "crashed") {
			t.Errorf("the workload probe of %s: %s %q (%s), want crashed with the signal", old, w.State, w.Reason, crashed.Result)
		} else {
			t.Logf("%s: %s", old, w.Reason)
		}
		if passed.Version != emulatortest.Version(t, newer) || passed.Source != emulatortest.SecondDir || !passed.Registered || passed.Last == nil || !passed.Last.Passed() ||
			!strings.HasPrefix(passed.Result, "passed the workload probe") {
			t.Errorf("status of %s: %+v", newer, passed)
		}
		if h := handler(t, st, "i386"); h.Choice == nil || h.Choice.Path != newer || !strings.Contains(h.Choice.Reason, old) {
			t.Errorf("status of qemu-i386: choice %+v", h.Choice)
		}
		_, text, _ := mabd(t, append([]string{"status", "--all", "i386", "--binfmt-mount", mount}, dirs...)...)
		for _, s := range []string{newer + " (registered)", old, emulatortest.SecondDir, "passed the workload probe", "crashed (", "i386: chose " + newer} {
			if !strings.Contains(text, s) {
				t.Errorf("status --all does not say %q", s)
			}
		}

		var v host.Verification
		if code := mabdJSON(t, &v, "verify", "--deep", "i386", "--binfmt-mount", mount, "--state-dir", "-"); code != 0 || len(v.Results) != 1 ||
			v.Results[0].Workload == nil || v.Results[0].Workload.State != emulator.StateOK || v.Results[0].Machine != "i686" {
			t.Errorf("verify --deep i386: exit %d, %+v", code, v.Results)
		}
	})
}

// TestCandidatesBadInput: an emulator directory that does not exist, a
// pin to a missing path and an untrusted candidate are each a clear
// error, and nothing is registered from them.
func TestCandidatesBadInput(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		good := emulatortest.Dir(t)
		emulatortest.Copy(t, emulatortest.First(t, "riscv64"), good, "qemu-riscv64-static")
		open, untrusted := emulatortest.Untrusted(t, emulatortest.First(t, "riscv64"), "qemu-riscv64")
		missing := filepath.Join(good, "qemu-riscv64-10")
		state := []string{"--state-dir", t.TempDir(), "--binfmt-mount", mount}
		for _, tc := range []struct {
			name string
			args []string
			says string
		}{
			{"directory missing", []string{"--emulator-dir", good, "--emulator-dir", "/nonexistent/qemu"}, "emulator directory /nonexistent/qemu: no such file or directory"},
			{"pin missing", []string{"--emulator-dir", good, "--emulator", "riscv64=" + missing}, "the emulator pinned for riscv64, " + missing + ", does not exist: install it there or remove the pin"},
			{"pin not ARCH=PATH", []string{"--emulator-dir", good, "--emulator", missing}, "give ARCH=PATH"},
			{"untrusted", []string{"--emulator-dir", open}, untrusted + " is writable by everyone (mode 0777): anyone could replace the emulator that runs every riscv64 program"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, errs := mabd(t, append(append([]string{"install", "riscv64"}, tc.args...), state...)...)
				if code != cli.ExitError || !strings.Contains(errs, tc.says) {
					t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tc.says)
				}
				if es := entries(t, mount); len(es) != 0 {
					t.Errorf("registered %+v", es)
				}
			})
		}
		// Beside a trusted one, the untrusted candidate is refused with
		// why, and the trusted one registered.
		code, out, errs := mabd(t, append([]string{"install", "riscv64", "--emulator-dir", open, "--emulator-dir", good}, state...)...)
		if code != 0 || !strings.Contains(errs, "warning: qemu-riscv64: candidate "+untrusted+" refused: "+untrusted+" is writable by everyone") ||
			!strings.Contains(out, "qemu-riscv64: chose "+filepath.Join(good, "qemu-riscv64-static")+" 7.2.22: the only usable candidate; "+untrusted+": refused: ") {
			t.Errorf("install beside a trusted one: exit %d", code)
		}
		if es := entries(t, mount); len(es) != 1 || es[0].Interpreter != filepath.Join(good, "qemu-riscv64-static") {
			t.Errorf("registered %+v", es)
		}
		_, st := statusJSON(t, mount, "--all", "riscv64", "--emulator-dir", open, "--emulator-dir", good, "--state-dir", state[1])
		if c := candidate(t, st, untrusted); !strings.Contains(c.Refused, "writable by everyone") || c.Registered || c.Last != nil {
			t.Errorf("status of the untrusted candidate: %+v", c)
		}
	})
}

// TestDaemonSwitchesEmulator: a daemon with QEMU 7.2 and QEMU 10 as
// candidates for riscv64 registers one of them, chosen by proof. When
// that one is replaced by an emulator that crashes (renamed over it, as
// an upgrade does), the daemon switches to the other candidate within
// one verify interval (plus the trial of the replacement), says so, and
// counts it.
func TestDaemonSwitchesEmulator(t *testing.T) {
	bin := mabdBinary(t)
	old, newer := emulatortest.First(t, "riscv64"), emulatortest.Second(t, "riscv64")
	sandbox.Run(t, func(t *testing.T, mount string) {
		a, b := emulatortest.Dir(t), emulatortest.Dir(t)
		pathA := emulatortest.Copy(t, old, a, "qemu-riscv64-static")
		pathB := emulatortest.Copy(t, newer, b, "qemu-riscv64")
		config := fmt.Sprintf("architectures = [\"riscv64\"]\nemulator_dirs = [%q, %q]\nreconcile_interval = \"1s\"\n[verify]\ninterval = \"2s\"\n", a, b)
		_, _, d := startReadyDaemon(t, bin, mount, config)
		e, err := binfmt.Mount{Dir: mount}.Entry("qemu-riscv64")
		if err != nil {
			t.Fatal(err)
		}
		chosen, other := e.Interpreter, pathB
		switch chosen {
		case pathA:
		case pathB:
			other = pathA
		default:
			t.Fatalf("qemu-riscv64 runs %s, want %s or %s", chosen, pathA, pathB)
		}
		if !d.logSays(`"msg":"emulator chosen","handler":"qemu-riscv64","emulator":"`+chosen+`"`, 5*time.Second) {
			t.Errorf("the log does not say which emulator was chosen and why")
		}

		// An upgrade that breaks it: renamed over the chosen one.
		crasher := emulatortest.Crasher(t, filepath.Dir(chosen), ".qemu-riscv64.new", "riscv64")
		if err := os.Rename(crasher, chosen); err != nil {
			t.Fatal(err)
		}
		replaced := time.Now()
		if !d.logSays(`"msg":"switched emulator","handler":"qemu-riscv64","from":"`+chosen+`","to":"`+other+`","because":"`+chosen+` changed since it was chosen"`, 2*time.Minute) {
			t.Fatalf("the daemon did not say it switched from %s to %s", chosen, other)
		}
		t.Logf("switched %v after the replacement (verify interval 2s, the replacement's trial included)", time.Since(replaced).Round(100*time.Millisecond))
		if !d.logSays(`crashed (SIGSEGV)`, time.Second) {
			t.Errorf("the log does not say the replacement crashed")
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if e, err := (binfmt.Mount{Dir: mount}).Entry("qemu-riscv64"); err == nil && e.Interpreter == other {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("qemu-riscv64 does not run %s", other)
			}
		}
		st, err := d.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Daemon.Switches != 1 || !st.Healthy() {
			t.Errorf("status: %d switches, health %s %v; want 1 and healthy", st.Daemon.Switches, st.Health, st.Problems)
		}
		if c := candidate(t, st.Status, chosen); c.Registered || !strings.Contains(c.Result, "crashed (SIGSEGV)") {
			t.Errorf("status of the replaced candidate: %+v", c)
		}
		if c := candidate(t, st.Status, other); !c.Registered || !strings.HasPrefix(c.Result, "passed the workload probe") {
			t.Errorf("status of the other candidate: %+v", c)
		}
		if m := httpGet(t, d.socket, "/metrics"); !strings.Contains(m, `mabd_emulator_switches_total{qemu_arch="riscv64"} 1`) {
			t.Errorf("metrics do not count the switch:\n%s", grepLines(m, "mabd_"))
		}
	})
}

// TestDaemonPinMissing: a daemon whose configuration pins a missing
// emulator does not start (exit 2), says which and what to do, and
// registers nothing.
func TestDaemonPinMissing(t *testing.T) {
	bin := mabdBinary(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir := shortDir(t)
		d := startDaemon(t, bin, dir, mount, "architectures = [\"riscv64\", \"arm64\"]\n[emulators]\nriscv64 = \"/nonexistent/qemu-riscv64\"\n")
		select {
		case err := <-d.done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("the daemon ended with %v, want exit status 2", err)
			}
			d.done <- err
		case <-time.After(time.Minute):
			t.Fatal("the daemon started with a pin to a missing emulator")
		}
		if !d.logSays("the emulator pinned for riscv64, /nonexistent/qemu-riscv64, does not exist: install it there or remove the pin", time.Second) {
			t.Errorf("the daemon does not say what is wrong:\n%s", d.log.String())
		}
		if es := entries(t, mount); len(es) != 0 {
			t.Errorf("registered %+v", es)
		}
	})
}
