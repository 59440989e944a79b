package emulator_test

import (
	"context"
	"strings"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/testing/sandbox"
)

// TestBench measures aarch64 against the host in a private instance. It
// asserts no wall-clock values, only that both sides ran.
func TestBench(t *testing.T) {
	a := probeTestArch(t, "aarch64")
	sandbox.Run(t, func(t *testing.T, mount string) {
		m := binfmt.Mount{Dir: mount}
		opt := emulator.ProbeOptions{Mount: m}
		if _, _, err := emulator.Bench(context.Background(), a, opt, 50); err == nil || !strings.Contains(err.Error(), emulator.ReasonNoHandler) || !strings.Contains(err.Error(), "register mabd's handler for aarch64") {
			t.Errorf("Bench without a handler: %v; want an error saying %q and the fix", err, emulator.ReasonNoHandler)
		}
		if err := m.Register(a.Spec(probeTestEmulator(t, a), binfmt.FixBinary|binfmt.PreserveArgv0)); err != nil {
			t.Fatal(err)
		}
		native, emulated, err := emulator.Bench(context.Background(), a, opt, 0)
		if err != nil {
			t.Fatal(err)
		}
		slowdown := float64(emulated) / float64(native)
		t.Logf("aarch64: native %v, emulated %v, slowdown %.1fx (n=%d)", native, emulated, slowdown, emulator.DefaultBenchN)
		if native <= 0 || emulated <= 0 || !(slowdown > 0) {
			t.Fatalf("native %v, emulated %v, slowdown %v", native, emulated, slowdown)
		}
	})
}
