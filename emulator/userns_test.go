package emulator

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"mabd/binfmt"
	"mabd/testing/fixtures"
)

// init makes this test binary usable as the helper of Sandbox.Run, which
// the tests below call in-process: Run re-executes /proc/self/exe.
func init() { MaybeRunExecChild() }

func TestCheckKernelRelease(t *testing.T) {
	for _, tc := range []struct {
		release string
		old     bool
	}{
		{"6.7.0", false},
		{"6.7.0-1-amd64", false},
		{"6.18.44-fc-v657", false},
		{"7.0", false},
		{"6.6.30-generic", true},
		{"5.10.0-28-amd64", true},
		{"4.19.0", true},
		{"garbage", false},
		{"", false},
	} {
		err := checkKernelRelease(tc.release)
		var ke *KernelTooOldError
		if got := errors.As(err, &ke); got != tc.old {
			t.Errorf("checkKernelRelease(%q) = %v, want too old: %v", tc.release, err, tc.old)
		}
	}
	err := checkKernelRelease("6.1.0-18-amd64")
	want := "mabd exec needs Linux 6.7 or newer, where binfmt_misc is per user namespace; this kernel is 6.1.0-18-amd64"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestCheckUserNS(t *testing.T) {
	// The suite runs on Linux 6.7 or newer with user namespaces enabled.
	if err := CheckUserNS(); err != nil {
		t.Fatalf("CheckUserNS: %v", err)
	}
}

func wantSandboxError(t *testing.T, err error, code int, has string) {
	t.Helper()
	var se *SandboxError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *SandboxError", err, err)
	}
	if se.Code != code {
		t.Errorf("Code %d, want %d (%v)", se.Code, code, err)
	}
	if !strings.Contains(err.Error(), has) {
		t.Errorf("error %q does not contain %q", err, has)
	}
}

func TestNewSandbox(t *testing.T) {
	ctx := context.Background()
	qemu := fixtures.Arches["arm64"].QEMUStatic()

	sb, err := NewSandbox(ctx, "linux/arm64", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Native || sb.Arch.Name != "aarch64" || sb.Emulator == nil || sb.Emulator.Path != qemu || !sb.Emulator.Static {
		t.Fatalf("NewSandbox(linux/arm64) = %+v, emulator %+v", sb, sb.Emulator)
	}
	wantFlags := binfmt.FixBinary
	if PreservesArgv0(sb.Emulator.Version) {
		wantFlags |= binfmt.PreserveArgv0
	}
	if sb.Flags != wantFlags {
		t.Errorf("flags %s, want %s (emulator version %q)", sb.Flags, wantFlags, sb.Emulator.Version)
	}
	spec := sb.Spec()
	if spec.Name != "qemu-aarch64" || spec.Interpreter != qemu || spec.Flags != wantFlags || spec.Validate() != nil {
		t.Errorf("Spec() = %+v", spec)
	}

	sb, err = NewSandbox(ctx, "arm64", qemu, nil)
	if err != nil || sb.Emulator.Path != qemu {
		t.Errorf("NewSandbox(arm64, %s) = %+v, %v", qemu, sb, err)
	}

	if native := nativePlatform(); native != "" {
		sb, err = NewSandbox(ctx, native, "", nil)
		if err != nil || !sb.Native || sb.Emulator != nil || sb.Spec().Name != "" {
			t.Errorf("NewSandbox(%s) = %+v, %v; want a native sandbox", native, sb, err)
		}
	}

	_, err = NewSandbox(ctx, "linux/sparc", "", nil)
	wantSandboxError(t, err, ExitSetup, `unknown architecture "linux/sparc"`)

	_, err = NewSandbox(ctx, "linux/arm64", "/bin/ls", nil)
	wantSandboxError(t, err, ExitSetup, (&Emulator{Path: "/bin/ls"}).CheckFixBinary().Error())

	_, err = NewSandbox(ctx, "linux/arm64", "/etc/passwd", nil)
	wantSandboxError(t, err, ExitSetup, "/etc/passwd is not an executable file")

	_, err = NewSandbox(ctx, "linux/arm64", "", []string{t.TempDir()})
	wantSandboxError(t, err, ExitSetup, "qemu-aarch64-static not found")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("%v does not match ErrNotFound", err)
	}
}

// TestNewSandboxRefuses: an emulator of another architecture, given or
// found, and a file that is no ELF executable are refused with the
// reason; one whose --version cannot be read is used without P, with a
// warning.
func TestNewSandboxRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	armAsAarch64 := link("qemu-aarch64-static", fixtures.Arches["armhf"].QEMUStatic())
	busybox := link("qemu-riscv64-static", "/bin/busybox") // "qemu-riscv64-static: applet not found"
	script := filepath.Join(dir, "qemu-s390x-static")
	writeFile(t, script, []byte("#!/bin/sh\necho 'qemu-s390x version 9.9.9'\n"), 0o755)

	tests := []struct {
		name, platform, emulator string
		dirs                     []string
		says                     string
	}{
		{"given, wrong architecture", "linux/arm64", armAsAarch64, nil,
			armAsAarch64 + ` is QEMU's arm emulator (its --version says "qemu-arm"), not aarch64's: it cannot run aarch64 programs; replace it with qemu-aarch64-static`},
		{"found, wrong architecture", "linux/arm64", "", []string{dir}, armAsAarch64 + " is QEMU's arm emulator"},
		{"arm for 386", "linux/386", fixtures.Arches["armhf"].QEMUStatic(), nil, "not i386's"},
		{"given, a script", "linux/s390x", script, nil, script + " cannot be the s390x emulator: not an ELF executable"},
		{"found, a script", "linux/s390x", "", []string{dir}, script + " cannot be the s390x emulator: not an ELF executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, err := NewSandbox(ctx, tt.platform, tt.emulator, tt.dirs)
			if err == nil {
				t.Fatalf("NewSandbox accepted %+v", sb.Emulator)
			}
			wantSandboxError(t, err, ExitSetup, tt.says)
		})
	}

	sb, err := NewSandbox(ctx, "riscv64", busybox, nil)
	if err != nil {
		t.Fatalf("an emulator whose --version fails: %v, want it used with a warning", err)
	}
	if sb.Flags != binfmt.FixBinary || len(sb.Warnings) != 1 || !strings.Contains(sb.Warnings[0], busybox+" --version") {
		t.Errorf("flags %s, warnings %q; want F alone and a warning naming %s", sb.Flags, sb.Warnings, busybox)
	}
	if sb, err := NewSandbox(ctx, "arm64", "", nil); err != nil || len(sb.Warnings) != 0 || sb.Emulator.Target != "aarch64" {
		t.Errorf("the installed emulator: %+v, %v", sb, err)
	}
}

// nativePlatform returns an OCI platform this host runs natively.
func nativePlatform() string {
	switch runtime.GOARCH {
	case "amd64", "arm64", "ppc64le", "s390x", "riscv64":
		return "linux/" + runtime.GOARCH
	}
	return ""
}

func TestSandboxRun(t *testing.T) {
	bb := fixtures.Busybox(t, "arm64")
	sb, err := NewSandbox(context.Background(), "linux/arm64", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (int, string, string, error) {
		var out, errb bytes.Buffer
		code, err := sb.Run(SandboxCommand{Args: args, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
		t.Logf("%q → %d, %v\nstdout %q\nstderr %q", args, code, err, out.String(), errb.String())
		return code, out.String(), errb.String(), err
	}

	if code, out, _, err := run("", bb, "uname", "-m"); err != nil || code != 0 || out != "aarch64\n" {
		t.Errorf("uname -m: %d %q %v, want 0 \"aarch64\\n\"", code, out, err)
	}
	if code, _, _, err := run("", bb, "sh", "-c", "exit 7"); err != nil || code != 7 {
		t.Errorf("exit 7: %d %v", code, err)
	}
	if code, _, _, err := run("", bb, "sh", "-c", "kill -TERM $$"); err != nil || code != 128+15 {
		t.Errorf("kill -TERM: %d %v, want 143", code, err)
	}
	if code, out, _, err := run("x y\n", bb, "cat"); err != nil || code != 0 || out != "x y\n" {
		t.Errorf("cat: %d %q %v", code, out, err)
	}
	// The program sees its private instance where programs look for one
	// (TestExecKilled in cmd/mabd checks that the host's view is unchanged).
	if code, out, _, err := run("", bb, "sh", "-c", "ls /proc/sys/fs/binfmt_misc; grep -h interpreter /proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil || code != 0 ||
		out != "qemu-aarch64\nregister\nstatus\ninterpreter "+sb.Emulator.Path+"\n" {
		t.Errorf("the program's /proc/sys/fs/binfmt_misc: %d %q %v, want the private instance", code, out, err)
	}
	// The helper's marker does not reach the program.
	if code, out, _, err := run("", bb, "sh", "-c", "echo ${"+envExecChild+":-unset}"); err != nil || code != 0 || out != "unset\n" {
		t.Errorf("%s in the program's environment: %d %q %v", envExecChild, code, out, err)
	}

	code, _, _, err := run("", "no-such-command-mabd")
	wantSandboxError(t, err, ExitNotFound, "no-such-command-mabd: command not found in $PATH")
	if code != ExitNotFound {
		t.Errorf("code %d, want %d", code, ExitNotFound)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, _, err = run("", data)
	wantSandboxError(t, err, ExitCannotRun, "permission denied")
	if code != ExitCannotRun {
		t.Errorf("code %d, want %d", code, ExitCannotRun)
	}
	code, _, _, err = run("")
	wantSandboxError(t, err, ExitSetup, "no command given")
	if code != ExitSetup {
		t.Errorf("code %d, want %d", code, ExitSetup)
	}
}

// TestSandboxRunFailureInHelper: a failure inside the helper (here, an
// interpreter the kernel cannot open) comes back as the error of Run.
func TestSandboxRunFailureInHelper(t *testing.T) {
	bb := fixtures.Busybox(t, "arm64")
	arch, _ := binfmt.ArchByName("aarch64")
	missing := filepath.Join(t.TempDir(), "qemu-aarch64-static")
	sb := &Sandbox{Arch: arch, Emulator: &Emulator{Arch: "aarch64", Path: missing, Static: true}, Flags: binfmt.FixBinary}
	var out, errb bytes.Buffer
	code, err := sb.Run(SandboxCommand{Args: []string{bb, "true"}, Stdout: &out, Stderr: &errb})
	t.Logf("code %d, err %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	wantSandboxError(t, err, ExitSetup, "register qemu-aarch64 in the private binfmt_misc instance")
	if code != ExitSetup || !strings.Contains(err.Error(), missing) {
		t.Errorf("code %d, error %v; want %d naming %s", code, err, ExitSetup, missing)
	}
}

func TestSandboxLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "prog")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+".")
	if p, err := sandboxLookPath("prog"); err != nil || p != exe {
		t.Errorf("sandboxLookPath(prog) = %q, %v; want %q", p, err, exe)
	}
	t.Chdir(dir)
	if p, err := sandboxLookPath("./prog"); err != nil || p != exe {
		t.Errorf("sandboxLookPath(./prog) = %q, %v; want %q", p, err, exe)
	}
	_, err := sandboxLookPath("absent")
	wantSandboxError(t, err, ExitNotFound, "absent: command not found in $PATH")
	_, err = sandboxLookPath("./absent")
	wantSandboxError(t, err, ExitNotFound, "./absent: no such file or directory")
}

func TestMaybeRunExecChildReturns(t *testing.T) {
	if _, ok := os.LookupEnv(envExecChild); ok {
		t.Fatalf("%s is set in a test process", envExecChild)
	}
	MaybeRunExecChild() // must return: this is no helper
}

func TestCheckSysctls(t *testing.T) {
	write := func(t *testing.T, dir, file, v string) {
		t.Helper()
		p := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		euid  int
		want  string // "" means no error
	}{
		{"enabled", map[string]string{"user/max_user_namespaces": "96365", "user/max_mnt_namespaces": "96365", "kernel/unprivileged_userns_clone": "1"}, 1000, ""},
		{"no files", nil, 1000, ""},
		{"max_user_namespaces 0", map[string]string{"user/max_user_namespaces": "0"}, 1000,
			"user namespaces are disabled: %s/user/max_user_namespaces is 0; enable them (as root) with `sysctl -w user.max_user_namespaces=10000`"},
		{"max_mnt_namespaces 0", map[string]string{"user/max_user_namespaces": "10", "user/max_mnt_namespaces": "0"}, 0,
			"user namespaces are disabled: %s/user/max_mnt_namespaces is 0; enable them (as root) with `sysctl -w user.max_mnt_namespaces=10000`"},
		{"unprivileged_userns_clone 0", map[string]string{"kernel/unprivileged_userns_clone": "0"}, 1000,
			"unprivileged user namespaces are disabled: %s/kernel/unprivileged_userns_clone is 0; enable them (as root) with `sysctl -w kernel.unprivileged_userns_clone=1`, or run mabd exec as root"},
		{"unprivileged_userns_clone 0 as root", map[string]string{"kernel/unprivileged_userns_clone": "0"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for f, v := range tc.files {
				write(t, dir, f, v)
			}
			err := checkSysctls(dir, tc.euid)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || err.Error() != strings.ReplaceAll(tc.want, "%s", dir)):
				t.Errorf("error %v, want %q", err, strings.ReplaceAll(tc.want, "%s", dir))
			}
		})
	}
}

func TestSandboxNamespaceError(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		has   string
	}{
		{syscall.EPERM, "(EPERM): user namespaces are not allowed for this process: check sysctl kernel.unprivileged_userns_clone"},
		{syscall.EACCES, "kernel.apparmor_restrict_unprivileged_userns"},
		{syscall.ENOSPC, "(ENOSPC): a namespace limit is reached: raise `sysctl -w user.max_user_namespaces=10000`"},
		{syscall.EUSERS, "a namespace limit is reached"},
		{syscall.EINVAL, "CONFIG_USER_NS"},
	} {
		err := sandboxNamespaceError(&fs.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: tc.errno})
		if !strings.Contains(err.Error(), tc.has) || !errors.Is(err, tc.errno) {
			t.Errorf("%v: %v, want it to contain %q and wrap the errno", tc.errno, err, tc.has)
		}
	}
}

func TestSandboxStartCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&fs.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOENT}, ExitNotFound},
		{&fs.PathError{Op: "fork/exec", Path: "/x", Err: syscall.EACCES}, ExitCannotRun},
		{&fs.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOEXEC}, ExitCannotRun},
		{&fs.PathError{Op: "fork/exec", Path: "/x", Err: syscall.EPERM}, ExitSetup},
		{&fs.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOSPC}, ExitSetup},
		{errors.New("other"), ExitSetup},
	} {
		if got := sandboxStartCode(tc.err); got != tc.want {
			t.Errorf("sandboxStartCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
