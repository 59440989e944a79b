package emulator_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/testing/sandbox"
)

// kernelRunsPlain runs the unchanged tiny probe of arch in the calling
// process's binfmt_misc instance, an empty one: whether it runs is the
// kernel's own answer, which KernelRuns must give too.
func kernelRunsPlain(t *testing.T, arch string) bool {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join("probes", arch+".elf"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p).Output()
	if errors.Is(err, syscall.ENOEXEC) {
		return false
	}
	if err != nil {
		t.Fatalf("run %s's probe with no handler: %v", arch, err)
	}
	t.Logf("%s's probe with no handler printed %q", arch, out)
	return true
}

// TestKernelRuns: the host's own architecture runs; i386 runs exactly
// when its unchanged probe runs with no handler (the kernel decides:
// on this project's machines both answers occur); a handler that selects
// i386's programs in the usual way does not change the answer, one that
// selects every ABI version makes it undetermined; an architecture the
// kernel has no loader for does not run.
func TestKernelRuns(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Fatalf("this test knows amd64 hosts only, not %s", runtime.GOARCH)
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		ctx := context.Background()
		arch := func(name string) binfmt.Arch {
			a, ok := binfmt.ArchByName(name)
			if !ok {
				t.Fatalf("%s is not in the table", name)
			}
			return a
		}
		if ok, err := emulator.KernelRuns(ctx, arch("x86_64")); !ok || err != nil {
			t.Errorf("KernelRuns(x86_64) = %v, %v; want true", ok, err)
		}
		if ok, err := emulator.KernelRuns(ctx, arch("aarch64")); ok || err != nil {
			t.Errorf("KernelRuns(aarch64) with no handler = %v, %v; want false", ok, err)
		}
		i386 := arch("i386")
		want := kernelRunsPlain(t, "i386")
		got, err := emulator.KernelRuns(ctx, i386)
		if got != want || err != nil {
			t.Fatalf("KernelRuns(i386) = %v, %v; the kernel alone runs its probe: %v", got, err, want)
		}
		if want != slices.Contains(emulator.Native(), "i386") {
			t.Errorf("Native() = %v, but the kernel runs i386: %v", emulator.Native(), want)
		}

		m := binfmt.Mount{Dir: mount}
		qemu := emulatortest.First(t, "i386")
		if err := m.Register(i386.Spec(qemu, binfmt.FixBinary)); err != nil {
			t.Fatal(err)
		}
		if got, err := emulator.KernelRuns(ctx, i386); got != want || err != nil {
			t.Errorf("KernelRuns(i386) with qemu-i386 registered = %v, %v; want %v", got, err, want)
		}
		// An entry that selects every ELF program for the 386, whatever
		// its ABI version: QEMU runs the probe and says i686.
		loose := i386.Spec(qemu, binfmt.FixBinary)
		loose.Name = "any-i386"
		loose.Mask = slices.Clone(loose.Mask)
		loose.Mask[8] = 0
		if err := m.Register(loose); err != nil {
			t.Fatal(err)
		}
		if err := m.Remove(i386.HandlerName()); err != nil {
			t.Fatal(err)
		}
		if _, err := emulator.KernelRuns(ctx, i386); !errors.Is(err, emulator.ErrUndetermined) {
			t.Errorf("KernelRuns(i386) under an entry for every ABI version: %v, want ErrUndetermined", err)
		}
	})
}
