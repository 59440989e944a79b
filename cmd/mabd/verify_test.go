package main

import (
	"strings"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/host"
	"mabd/testing/fixtures"
	"mabd/testing/sandbox"
)

func verifyJSON(t *testing.T, args ...string) (int, host.Verification) {
	t.Helper()
	var v host.Verification
	code := mabdJSON(t, &v, append([]string{"verify"}, args...)...)
	return code, v
}

func TestVerifyAfterInstallAll(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		state := t.TempDir()
		if code, _, _ := mabd(t, "install", "all", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install all failed")
		}
		rootfs := []string{}
		for _, deb := range fixtures.DebianArches {
			rootfs = append(rootfs, "--rootfs", deb+"="+fixtures.Rootfs(t, deb))
		}
		code, v := verifyJSON(t, append(rootfs, "--binfmt-mount", mount, "--state-dir", state)...)
		if code != 0 {
			t.Fatalf("verify exited %d", code)
		}
		want := map[string]string{"aarch64": "aarch64", "arm": "armv7l", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
			"riscv64": "riscv64", "mips64el": "mips64", "mips64": "mips64", "mips": "mips", "mipsel": "mips", "loongarch64": "loongarch64"}
		got := map[string]host.VerifyResult{}
		for _, r := range v.Results {
			got[r.QEMUArch] = r
		}
		for arch, machine := range want {
			r, ok := got[arch]
			if !ok || r.State != "ok" || r.Machine != machine {
				t.Errorf("%s: %+v; want ok, machine %s", arch, r, machine)
			}
		}
		// i386 runs natively where the kernel runs it, else under QEMU.
		for arch, machine := range map[string]string{"x86_64": "x86_64", "i386": "i686"} {
			switch r := got[arch]; {
			case emulator.IsNative(arch) && r.State != "native":
				t.Errorf("%s: state %q, want native", arch, r.State)
			case !emulator.IsNative(arch) && (r.State != "ok" || r.Machine != machine):
				t.Errorf("%s: %+v; want ok (the kernel does not run it), machine %s", arch, r, machine)
			}
		}
		for _, deb := range fixtures.DebianArches {
			a := fixtures.Arches[deb]
			if r := got[a.QEMU]; r.Shell != a.UnameM+"\nok" {
				t.Errorf("%s foreign sh printed %q, want %q", deb, r.Shell, a.UnameM+"\nok")
			}
		}
		// status now shows the last verification.
		code, st := statusJSON(t, mount, "--state-dir", state)
		if code != 0 {
			t.Fatalf("status exited %d", code)
		}
		if h := handler(t, st, "aarch64"); h.Verified == nil || h.Verified.State != "ok" {
			t.Fatalf("status of aarch64 lacks the verification: %+v", h.Verified)
		}
	})
}

func TestVerifyBench(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		if code, _, _ := mabd(t, "install", "arm64", "riscv64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install failed")
		}
		code, v := verifyJSON(t, "--bench", "arm64", "riscv64", "--binfmt-mount", mount, "--state-dir", "-")
		if code != 0 || len(v.Results) != 2 {
			t.Fatalf("verify --bench: exit %d, %d results", code, len(v.Results))
		}
		for _, r := range v.Results {
			if r.Slowdown <= 0 {
				t.Errorf("%s: no slowdown figure", r.QEMUArch)
			}
		}
	})
}

func TestVerifyReportsFailures(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		m := binfmt.Mount{Dir: mount}
		a, _ := binfmt.ArchByName("riscv64")
		spec := a.Spec("/usr/bin/qemu-riscv64-static", binfmt.PreserveArgv0) // no F
		if err := m.Register(spec); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			args   []string
			reason string
		}{
			{[]string{"arm64"}, "no handler"},
			{[]string{"riscv64"}, "F"},
		}
		for _, tt := range tests {
			code, v := verifyJSON(t, append(tt.args, "--binfmt-mount", mount, "--state-dir", "-")...)
			if code != 1 || len(v.Results) != 1 || v.Results[0].State != "failed" {
				t.Fatalf("verify %v: exit %d, %+v; want 1 and failed", tt.args, code, v.Results)
			}
			if r := v.Results[0]; !strings.Contains(r.Reason, tt.reason) || (r.Fix == "" && r.Remedy == "") {
				t.Errorf("verify %v: reason %q fix %q remedy %q; want it to say %q and a fix", tt.args, r.Reason, r.Fix, r.Remedy, tt.reason)
			}
		}
		if code, _, errs := mabd(t, "verify", "--rootfs", "arm64", "--binfmt-mount", mount); code != 2 || !strings.Contains(errs, "ARCH=DIR") {
			t.Errorf("bad --rootfs: exit %d, %q", code, errs)
		}
		// Debian 12 has no cross binutils for xtensa: no probe.
		if code, _, errs := mabd(t, "verify", "xtensa", "--binfmt-mount", mount); code != 2 || !strings.Contains(errs, "no probe for xtensa") || !strings.Contains(errs, "sparc64") {
			t.Errorf("verify xtensa: exit %d, %q", code, errs)
		}
	})
}
