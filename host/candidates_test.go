package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/host"
)

// candidatesFile reads what the state directory remembers of the
// candidates.
func candidatesFile(t *testing.T, dir string) (trials map[string]host.Trial, choices map[string]host.Choice) {
	t.Helper()
	var st struct {
		Trials  map[string]host.Trial  `json:"trials"`
		Choices map[string]host.Choice `json:"choices"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "candidates.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Trials, st.Choices
}

// TestPlanChoosesByProof: with Debian 12's QEMU 7.2 and Debian 13's QEMU
// 10 as candidates for i386 (asked for explicitly, with EmulateNative: the
// kernel may run i386 itself), each is tried in a private instance; 7.2
// crashes in the workload probe and 10 passes, so 10 is planned, with
// why. The trials are remembered: a second plan tries nothing.
func TestPlanChoosesByProof(t *testing.T) {
	old, newer := emulatortest.First(t, "i386"), emulatortest.Second(t, "i386")
	state := t.TempDir()
	h := host.Host{EmulatorDirs: []string{emulatortest.FirstDir, emulatortest.SecondDir}, StateDir: state}
	specs, res, err := h.Plan(context.Background(), host.InstallOptions{Arches: []string{"i386"}, EmulateNative: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Interpreter != newer || specs[0].Name != "qemu-i386" || specs[0].Flags != binfmt.FixBinary|binfmt.PreserveArgv0 {
		t.Fatalf("planned %+v, want qemu-i386 with %s and PF", specs, newer)
	}
	if len(res.Choices) != 1 {
		t.Fatalf("choices %+v, want one", res.Choices)
	}
	ch := res.Choices[0]
	t.Logf("%s", ch.Reason)
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(newer) + ` 10\.0\.\d+: passed the workload probe \(bench [0-9.]+x\); ` +
		regexp.QuoteMeta(old) + ` 7\.2\.\d+: crashed \((SIG[A-Z]+|its Go runtime: "(fatal|SIG)[^"]*")\) in the workload probe$`)
	if !want.MatchString(ch.Reason) || ch.Candidates != 2 || ch.Path != newer {
		t.Errorf("choice %+v, want the reason to match %s", ch, want)
	}
	trials, choices := candidatesFile(t, state)
	if choices["i386"].Path != newer {
		t.Errorf("remembered choice %+v", choices["i386"])
	}
	crashed := trials[old]
	if crashed.Workload == nil || !strings.HasPrefix(crashed.Workload.Reason, emulator.ReasonCrashed) || crashed.Version != emulatortest.Version(t, old) {
		t.Errorf("the trial of %s: %+v, want the workload probe to have crashed", old, crashed)
	} else {
		t.Logf("%s: %s", old, crashed.Workload.Reason)
	}
	if passed := trials[newer]; !passed.Passed() || passed.Slowdown <= 1 || passed.Workload.Duration <= 0 {
		t.Errorf("the trial of %s: %+v, want passed and benched", newer, passed)
	}

	// Remembered: a second plan tries nothing (the trials are the same).
	if _, res, err := h.Plan(context.Background(), host.InstallOptions{Arches: []string{"i386"}, EmulateNative: true}); err != nil || res.Choices[0].Path != newer {
		t.Fatalf("second plan: %v, %+v", err, res)
	}
	again, _ := candidatesFile(t, state)
	if !again[old].At.Equal(trials[old].At) || !again[newer].At.Equal(trials[newer].At) {
		t.Errorf("the second plan tried the candidates again")
	}
	// Retry tries them again.
	if _, _, err := h.Plan(context.Background(), host.InstallOptions{Arches: []string{"i386"}, EmulateNative: true, Retry: []string{"i386"}}); err != nil {
		t.Fatal(err)
	}
	if retried, _ := candidatesFile(t, state); retried[newer].At.Equal(trials[newer].At) {
		t.Errorf("Retry did not try %s again", newer)
	}

	// Without EmulateNative, i386 is skipped where the kernel runs it,
	// and planned like any foreign architecture where it does not.
	specs, res, err = h.Plan(context.Background(), host.InstallOptions{Arches: []string{"i386"}})
	if emulator.IsNative("i386") {
		if err != nil || len(specs) != 0 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Reason, "native") {
			t.Errorf("i386 without EmulateNative, the kernel running it: %v, %+v, %+v", err, specs, res)
		}
	} else if err != nil || len(specs) != 1 || specs[0].Interpreter != newer || len(res.Skipped) != 0 {
		t.Errorf("i386 without EmulateNative, the kernel not running it: %v, %+v, %+v; want %s planned", err, specs, res, newer)
	}
	// Pinned, the crashing one is taken.
	specs, res, err = h.Plan(context.Background(), host.InstallOptions{Arches: []string{"i386"}, EmulateNative: true, Emulators: map[string]string{"386": old}})
	if err != nil || len(specs) != 1 || specs[0].Interpreter != old || len(res.Choices) != 1 ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(old)+` 7\.2\.\d+: pinned; `+regexp.QuoteMeta(newer)+` 10\.0\.\d+: not taken \(another is pinned\)$`).MatchString(res.Choices[0].Reason) {
		t.Errorf("pinned: %v, %+v, %+v", err, specs, res)
	}
}

// TestPlanBadCandidates: an emulator directory that does not exist, a
// pin to a missing file or an unknown architecture, and an untrusted
// candidate: each says what is wrong, and nothing is planned from it.
func TestPlanBadCandidates(t *testing.T) {
	good := emulatortest.Dir(t)
	emulatortest.Copy(t, emulatortest.First(t, "riscv64"), good, "qemu-riscv64-static")
	open, untrusted := emulatortest.Untrusted(t, emulatortest.First(t, "riscv64"), "qemu-riscv64")
	missing := filepath.Join(good, "qemu-riscv64-10")
	for _, tc := range []struct {
		name string
		dirs []string
		pins map[string]string
		says string
	}{
		{"directory missing", []string{good, "/nonexistent/qemu"}, nil, "emulator directory /nonexistent/qemu: no such file or directory"},
		{"pin missing", []string{good}, map[string]string{"riscv64": missing}, "the emulator pinned for riscv64, " + missing + ", does not exist: install it there or remove the pin"},
		{"pin to an unknown architecture", []string{good}, map[string]string{"vax": missing}, `emulator pinned for "vax": unknown architecture "vax"`},
		{"pin untrusted", []string{good}, map[string]string{"riscv64": untrusted}, untrusted + " is writable by everyone (mode 0777)"},
		{"only candidate untrusted", []string{open}, nil, untrusted + " is writable by everyone (mode 0777)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := host.Host{EmulatorDirs: tc.dirs, StateDir: t.TempDir()}
			specs, _, err := h.Plan(context.Background(), host.InstallOptions{Arches: []string{"riscv64"}, Emulators: tc.pins})
			var ie *host.InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.says) || specs != nil {
				t.Errorf("Plan: %v, %v; want an InputError saying %q", specs, err, tc.says)
			}
		})
	}
	// Beside a trusted one, the untrusted candidate is refused with why
	// and the trusted one planned.
	h := host.Host{EmulatorDirs: []string{open, good}, StateDir: t.TempDir()}
	specs, res, err := h.Plan(context.Background(), host.InstallOptions{Arches: []string{"riscv64"}})
	if err != nil || len(specs) != 1 || specs[0].Interpreter != filepath.Join(good, "qemu-riscv64-static") {
		t.Fatalf("Plan: %v, %+v", err, specs)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "qemu-riscv64: candidate "+untrusted+" refused: "+untrusted+" is writable by everyone") ||
		len(res.Choices) != 1 || !strings.Contains(res.Choices[0].Reason, "the only usable candidate; "+untrusted+": refused: ") {
		t.Errorf("warnings %q, choices %+v", res.Warnings, res.Choices)
	}
}

// TestPlanNeverEmulatesTheHost: --emulate-native takes i386 on an amd64
// host, never the host's own architecture.
func TestPlanNeverEmulatesTheHost(t *testing.T) {
	own := binfmt.Native("")[0]
	h := host.Host{EmulatorDirs: []string{emulatortest.FirstDir}, StateDir: t.TempDir()}
	specs, res, err := h.Plan(context.Background(), host.InstallOptions{Arches: []string{own}, EmulateNative: true})
	if err != nil || len(specs) != 0 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Reason, "the host's own architecture: never emulated") {
		t.Errorf("Plan(%s, EmulateNative): %v, %+v, %+v", own, err, specs, res)
	}
}
