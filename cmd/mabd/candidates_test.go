package main

// Issue "Emulators chosen by proof": several QEMU builds per
// architecture, proved by workload probes; the one that works wins.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/host"
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
			regexp.QuoteMeta(old) + ` 7\.2\.\d+: crashed \((SIG[A-Z]+|its Go runtime: "fatal[^"]*")\) in the workload probe\n`)
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
		signal := regexp.MustCompile(`^emulator crashed: (killed by SIG[A-Z]+ \(|exit status \d+ after a fatal error of the probe's Go runtime .*: "fatal)`)
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
		good, open := emulatortest.Dir(t), emulatortest.Dir(t)
		emulatortest.Copy(t, emulatortest.First(t, "riscv64"), good, "qemu-riscv64-static")
		untrusted := emulatortest.Copy(t, emulatortest.First(t, "riscv64"), open, "qemu-riscv64")
		if err := os.Chmod(untrusted, 0o777); err != nil {
			t.Fatal(err)
		}
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
				if code != exitError || !strings.Contains(errs, tc.says) {
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
