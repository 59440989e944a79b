package emulator_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/testing/sandbox"
)

// TestWorkloadNative runs the host's own workload probe, natively: it
// must print WorkloadOutput (the constant is what the program prints).
func TestWorkloadNative(t *testing.T) {
	_, sums := readTestManifest(t)
	bin := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(bin, readTestProbe(t, runtime.GOARCH, sums), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "workload").Output()
	if err != nil {
		t.Fatalf("%s workload: %v", bin, err)
	}
	if string(out) != emulator.WorkloadOutput {
		t.Fatalf("the native workload printed\n%s\nwant emulator.WorkloadOutput\n%s", out, emulator.WorkloadOutput)
	}
}

// TestWorkload runs the workload probe through real and fake emulators in
// a private instance each: QEMU 7.2's qemu-i386 kills the Go program and
// QEMU 10's runs it; a wrong result, a Go runtime's fatal error and a
// hang are each classified.
func TestWorkload(t *testing.T) {
	i386, aarch64, x86 := probeTestArch(t, "i386"), probeTestArch(t, "aarch64"), probeTestArch(t, "x86_64")
	pf := binfmt.FixBinary | binfmt.PreserveArgv0
	crashed := regexp.MustCompile(`^emulator crashed: (killed by SIG[A-Z]+ |exit status \d+ after a fatal error of the probe's Go runtime)`)
	for _, tc := range []struct {
		name     string
		arch     binfmt.Arch
		emulator func(t *testing.T) string // "" registers nothing
		timeout  time.Duration
		state    string
		reason   *regexp.Regexp
	}{
		{"aarch64 QEMU 7.2", aarch64, func(t *testing.T) string { return emulatortest.First(t, "aarch64") }, 0, emulator.StateOK, nil},
		{"aarch64 QEMU 10", aarch64, func(t *testing.T) string { return emulatortest.Second(t, "aarch64") }, 0, emulator.StateOK, nil},
		{"i386 QEMU 7.2 crashes", i386, func(t *testing.T) string { return emulatortest.First(t, "i386") }, 0, emulator.StateFailed, crashed},
		{"i386 QEMU 10", i386, func(t *testing.T) string { return emulatortest.Second(t, "i386") }, 0, emulator.StateOK, nil},
		{"native", x86, nil, 0, emulator.StateNative, nil},
		{"wrong output", aarch64, func(t *testing.T) string { return buildFakeEmulator(t, "fake-wrong") }, 0, emulator.StateFailed,
			regexp.MustCompile(`^wrong output: "sort: 2097152 ints 0000000000000000" where every correct run prints "sort: 2097152 ints 17fafc93bea8fd9d" \(entry qemu-aarch64, interpreter .*fake-wrong`)},
		{"Go runtime fatal error", aarch64, func(t *testing.T) string { return buildFakeEmulator(t, "fake-gofatal") }, 0, emulator.StateFailed,
			regexp.MustCompile(`^emulator crashed: exit status 2 after a fatal error of the probe's Go runtime \(entry qemu-aarch64, .*\): "fatal: bad g in signal handler"$`)},
		{"Go signal", aarch64, func(t *testing.T) string { return buildFakeEmulator(t, "fake-gosignal") }, 0, emulator.StateFailed,
			regexp.MustCompile(`^emulator crashed: exit status 2 after a fatal error of the probe's Go runtime \(entry qemu-aarch64, .*\): "SIGSEGV: segmentation violation"$`)},
		{"hangs", aarch64, func(t *testing.T) string { return buildFakeEmulator(t, "fake-hang") }, time.Second, emulator.StateFailed,
			regexp.MustCompile(`^timed out: the probe did not finish within 1s`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sandbox.Run(t, func(t *testing.T, mount string) {
				m := binfmt.Mount{Dir: mount}
				if tc.emulator != nil {
					if err := m.Register(tc.arch.Spec(tc.emulator(t), pf)); err != nil {
						t.Fatal(err)
					}
				}
				r := emulator.Workload(context.Background(), tc.arch, emulator.ProbeOptions{Mount: m, WorkloadTimeout: tc.timeout})
				b, _ := json.Marshal(r)
				t.Logf("%s", b)
				if r.State != tc.state || r.Machine != "" {
					t.Fatalf("state %q, machine %q; want %q and no machine", r.State, r.Machine, tc.state)
				}
				if tc.reason != nil && !tc.reason.MatchString(r.Reason) {
					t.Errorf("reason %q, want it to match %s", r.Reason, tc.reason)
				}
				if tc.state == emulator.StateFailed && !strings.Contains(r.Fix, "upgrade qemu-user-static") && tc.name != "hangs" {
					t.Errorf("fix %q does not say to upgrade", r.Fix)
				}
			})
		})
	}
}
