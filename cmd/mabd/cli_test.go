package main

// Integration tests of the CLI. Each runs in a private binfmt_misc instance
// (testing/sandbox), with the real kernel, the real qemu-*-static and
// Debian's foreign busybox (make deps); none touches the host's table.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/host"
	"mabd/internal/buildcli"
	"mabd/internal/cli"
	"mabd/internal/daemoncli"
	"mabd/testing/fixtures"
	"mabd/testing/sandbox"

	"github.com/spf13/cobra"
)

// mabd runs the CLI in-process and returns its exit status and output.
// The commands that keep state (install, verify, status) get
// the test's own --state-dir unless args name one: a test leaves nothing
// in the host's /var/lib/mabd.
func mabd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if len(args) > 0 && slices.Contains([]string{"install", "verify", "status"}, args[0]) && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--state-dir") }) {
		args = append(slices.Clone(args), "--state-dir", testStateDir(t))
	}
	var out, errb bytes.Buffer
	code := cli.Run(testRoot(), "mabd", args, &out, &errb)
	t.Logf("mabd %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

var stateDirs sync.Map // *testing.T → its state directory

// testStateDir is the state directory of test t, the same for all its
// commands.
func testStateDir(t *testing.T) string {
	if d, ok := stateDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	stateDirs.Store(t, d)
	t.Cleanup(func() { stateDirs.Delete(t) })
	return d
}

// testRoot is mabd's command tree with the commands of mabd-build and
// mabd-daemon in place of those that run them, so that the tests run all
// of them in this process.
func testRoot() *cobra.Command {
	root := newRoot()
	for _, d := range cli.Delegated {
		if c, _, err := root.Find([]string{d.Name}); err == nil && c != root {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(buildcli.Commands()...)
	root.AddCommand(daemoncli.Command())
	return root
}

func entries(t *testing.T, mount string) []binfmt.Entry {
	t.Helper()
	es, err := binfmt.Mount{Dir: mount}.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func sameEntries(a, b []binfmt.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Spec.Equal(b[i].Spec) || a[i].Enabled != b[i].Enabled {
			return false
		}
	}
	return true
}

// mabdJSON runs a command with --json and decodes its output into v.
func mabdJSON(t *testing.T, v any, args ...string) int {
	t.Helper()
	code, out, _ := mabd(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("mabd %v --json: %v\n%s", args, err, out)
	}
	return code
}

func statusJSON(t *testing.T, mount string, args ...string) (int, host.Status) {
	t.Helper()
	var st host.Status
	code := mabdJSON(t, &st, append([]string{"status", "--binfmt-mount", mount}, args...)...)
	return code, st
}

func TestInstallAllThenStatusAndForeignShell(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		if code, _, _ := mabd(t, "install", "all", "--binfmt-mount", mount); code != 0 {
			t.Fatalf("install all exited %d", code)
		}
		code, st := statusJSON(t, mount)
		if code != 0 || st.Health != "healthy" || !st.Enabled {
			t.Fatalf("status exit %d, health %s, enabled %v", code, st.Health, st.Enabled)
		}
		for _, h := range st.Handlers {
			_, err := os.Stat("/usr/bin/" + h.Name + "-static")
			switch {
			case emulator.IsNative(h.QEMUArch):
				if h.State != host.StateNative {
					t.Errorf("%s: state %s, want native", h.Name, h.State)
				}
			case err == nil && h.State != host.StateOK:
				t.Errorf("%s: emulator installed but state %s (%s)", h.Name, h.State, h.Detail)
			case err == nil && h.Flags != "PF":
				t.Errorf("%s: flags %q, want PF (QEMU 7.2 honours P)", h.Name, h.Flags)
			}
		}
		for _, p := range []string{"linux/arm64", "linux/arm/v7", "linux/riscv64", "linux/s390x", "linux/amd64"} {
			if !strings.Contains(strings.Join(st.Supported, " "), p) {
				t.Errorf("supported %v lacks %s", st.Supported, p)
			}
		}

		// Every entry has Debian's magic and mask (but the mips ABI byte).
		for _, e := range entries(t, mount) {
			conf := "/usr/lib/binfmt.d/" + e.Name + ".conf"
			specs, err := binfmt.ReadConf(conf)
			if os.IsNotExist(err) {
				continue // Debian ships none for this one on amd64
			}
			if err != nil || len(specs) != 1 {
				t.Fatalf("%s: %v", conf, err)
			}
			deb := specs[0]
			if strings.HasPrefix(e.Name, "qemu-mips") {
				deb.Mask[8] = 0
			}
			if !bytes.Equal(e.Magic, deb.Magic) || !bytes.Equal(e.Mask, deb.Mask) {
				t.Errorf("%s: registered magic/mask differ from %s", e.Name, conf)
			}
		}

		// A real foreign shell, in a chroot holding nothing but busybox.
		rootfs := fixtures.Rootfs(t, "arm64")
		out, err := exec.Command("chroot", rootfs, "/bin/sh", "-c", "uname -m").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "aarch64" {
			t.Fatalf("arm64 sh -c 'uname -m' = %q, %v; want aarch64", out, err)
		}

		// Idempotent: a second run changes nothing and says so.
		before := entries(t, mount)
		code, stdout, _ := mabd(t, "install", "all", "--binfmt-mount", mount)
		if code != 0 || !strings.Contains(stdout, "nothing to do") {
			t.Fatalf("second install all: exit %d, %q", code, stdout)
		}
		if !sameEntries(before, entries(t, mount)) {
			t.Fatal("second install all changed the entries")
		}
	})
}

func handler(t *testing.T, st host.Status, arch string) host.HandlerStatus {
	t.Helper()
	for _, h := range st.Handlers {
		if h.QEMUArch == arch {
			return h
		}
	}
	t.Fatalf("no handler for %s in status", arch)
	return host.HandlerStatus{}
}

// TestPreserveArgv0 proves that QEMU honours P: a foreign busybox exec'd
// with argv[0] "custom" sees "custom" (and says it has no such applet);
// with F alone it sees its own path instead.
func TestPreserveArgv0(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		bb := fixtures.Busybox(t, "arm64")
		argv0 := func() string {
			cmd := &exec.Cmd{Path: bb, Args: []string{"custom", "--help"}}
			out, _ := cmd.CombinedOutput()
			return string(out)
		}
		if code, _, _ := mabd(t, "install", "arm64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install failed")
		}
		if out := argv0(); !strings.Contains(out, "custom: applet not found") {
			t.Fatalf("with P the program did not see argv[0] custom: %q", out)
		}
		if code, _, _ := mabd(t, "install", "--replace", "--flags", "F", "arm64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install --flags F failed")
		}
		if out := argv0(); strings.Contains(out, "custom") {
			t.Fatalf("without P the program still saw argv[0] custom: %q", out)
		}
	})
}

func TestBadInputChangesNothing(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		if code, _, _ := mabd(t, "install", "riscv64", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install riscv64 failed")
		}
		empty := t.TempDir()
		dynamic := t.TempDir()
		if err := os.Symlink("/bin/ls", filepath.Join(dynamic, "qemu-aarch64")); err != nil {
			t.Fatal(err)
		}
		before := entries(t, mount)
		tests := []struct {
			name string
			args []string
			code int
			says []string
		}{
			{"unknown arch", []string{"install", "arm64", "vax"}, 2, []string{`unknown architecture "vax"`, "linux/arm64"}},
			{"name with colon", []string{"install", "a:b"}, 2, []string{"unknown architecture"}},
			{"name with slash", []string{"install", "linux/arm64/x/y"}, 2, []string{"unknown architecture"}},
			{"bad flags", []string{"install", "--flags", "FZ", "arm64"}, 2, []string{"unknown flag 'Z'"}},
			{"missing emulator", []string{"install", "arm64", "--emulator-dir", empty}, 2, []string{"qemu-aarch64-static not found in " + empty, "install qemu-user-static"}},
			{"dynamic emulator with F", []string{"install", "arm64", "--emulator-dir", dynamic}, 2, []string{"dynamically linked", "static"}},
			{"no arch", []string{"install"}, 2, []string{"requires at least 1 arg"}},
			{"status of unknown arch", []string{"status", "vax"}, 2, []string{"unknown architecture"}},
			{"uninstall unknown arch", []string{"uninstall", "vax"}, 2, []string{"unknown architecture"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, out, errs := mabd(t, append(tt.args, "--binfmt-mount", mount)...)
				if code != tt.code {
					t.Errorf("exit %d, want %d", code, tt.code)
				}
				for _, s := range tt.says {
					if !strings.Contains(out+errs, s) {
						t.Errorf("output does not say %q:\n%s%s", s, out, errs)
					}
				}
				if !sameEntries(before, entries(t, mount)) {
					t.Errorf("entries changed")
				}
			})
		}
		// A directory that is not binfmt_misc: status says so and how to fix it.
		code, out, _ := mabd(t, "status", "--binfmt-mount", empty)
		if code != 1 || !strings.Contains(out, "not mounted") || !strings.Contains(out, "mount -t binfmt_misc") {
			t.Errorf("status of an unmounted dir: exit %d, %q", code, out)
		}
		// An unreadable one: could not check.
		if code, _, errs := mabd(t, "status", "--binfmt-mount", "/proc/1/root/nonexistent/\x00"); code != 2 || errs == "" {
			t.Errorf("status of an unreadable mount: exit %d, %q; want 2 and an error", code, errs)
		}
	})
}

// TestStatusFlagsUntrustedInterpreter: an emulator that became writable
// by everyone after it was registered is a conflict in status.
func TestStatusFlagsUntrustedInterpreter(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir := shortDir(t) // an interpreter path has at most 127 bytes
		copyExecutable(t, filepath.Join(dir, "qemu-riscv64-static"), "/usr/bin/qemu-riscv64-static")
		if code, _, _ := mabd(t, "install", "riscv64", "--emulator-dir", dir, "--binfmt-mount", mount); code != 0 {
			t.Fatal("install from a trusted copy failed")
		}
		if err := os.Chmod(filepath.Join(dir, "qemu-riscv64-static"), 0o777); err != nil {
			t.Fatal(err)
		}
		code, st := statusJSON(t, mount, "--emulator-dir", dir, "riscv64")
		h := handler(t, st, "riscv64")
		if code != 1 || h.State != host.StateConflict || !strings.Contains(h.Detail, "writable by everyone") {
			t.Fatalf("status: exit %d, %s: %s", code, h.State, h.Detail)
		}
	})
}

func TestFlagCWarns(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		code, _, errs := mabd(t, "install", "--flags", "FC", "s390x", "--binfmt-mount", mount)
		if code != 0 || !strings.Contains(errs, "warning: flag C") {
			t.Fatalf("install --flags FC: exit %d, stderr %q; want 0 and a warning", code, errs)
		}
		e, err := binfmt.Mount{Dir: mount}.Entry("qemu-s390x")
		if err != nil || e.Flags.String() != "OCF" {
			t.Fatalf("entry %+v, %v; want flags OCF", e, err)
		}
	})
}

// TestPersistAcceptedBySystemdBinfmt checks that the files --persist
// writes are read by the real systemd-binfmt, which registers the same
// entries, and that uninstall removes them.
func TestPersistAcceptedBySystemdBinfmt(t *testing.T) {
	const systemdBinfmt = "/lib/systemd/systemd-binfmt"
	if _, err := os.Stat(systemdBinfmt); err != nil {
		t.Fatalf("%s missing: install systemd (make deps)", systemdBinfmt)
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		dir := t.TempDir()
		if code, _, _ := mabd(t, "install", "--persist", "--persist-dir", dir, "arm64", "riscv64", "linux/arm/v7", "--binfmt-mount", mount); code != 0 {
			t.Fatal("install --persist failed")
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
		if len(files) != 3 {
			t.Fatalf("persisted %v, want 3 files", files)
		}
		want := entries(t, mount)
		if code, _, _ := mabd(t, "uninstall", "all", "--persist-dir", t.TempDir(), "--binfmt-mount", mount); code != 0 {
			t.Fatal("uninstall failed")
		}
		if got := entries(t, mount); len(got) != 0 {
			t.Fatalf("entries left after uninstall: %v", got)
		}
		// systemd-binfmt writes to /proc/sys/fs/binfmt_misc: mount this
		// namespace's instance there (the same instance; the mount is
		// private to the sandbox).
		if err := exec.Command("mount", "-t", "binfmt_misc", "binfmt_misc", binfmt.DefaultDir).Run(); err != nil {
			t.Fatalf("mount binfmt_misc on %s in the sandbox: %v", binfmt.DefaultDir, err)
		}
		out, err := exec.Command(systemdBinfmt, files...).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-binfmt %v: %v\n%s", files, err, out)
		}
		if got := entries(t, mount); !sameEntries(want, got) {
			t.Fatalf("systemd-binfmt registered\n%v\nwant\n%v", got, want)
		}
		if code, out, _ := mabd(t, "uninstall", "all", "--persist-dir", dir, "--binfmt-mount", mount); code != 0 || !strings.Contains(out, "removed "+dir) {
			t.Fatalf("uninstall: exit %d %q", code, out)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("files left: %v", left)
		}
	})
}

func TestVersion(t *testing.T) {
	code, out, _ := mabd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "mabd ") {
		t.Fatalf("version: %d %q", code, out)
	}
}
