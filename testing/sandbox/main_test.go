package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"mabd/internal/userns"
)

// TestMain checks, in the top-level test process only, that the tests leave
// the host's binfmt_misc mounts as they found them and no sandbox mount
// point behind. The tests run with a temporary directory of their own
// (TMPDIR, which their children inherit): under `go test ./...` other
// packages' sandboxes come and go in /tmp meanwhile, and a directory one
// of them removed while these tests ran was once taken for a change.
func TestMain(m *testing.M) {
	if childTest != "" {
		os.Exit(m.Run())
	}
	tmp, err := os.MkdirTemp("", "mabd-sandbox-test-")
	if err == nil {
		// Like /tmp: TestUnprivileged's child runs as nobody.
		err = os.Chmod(tmp, 0o1777)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	mounts := hostBinfmtMounts()
	code := m.Run()
	if after := hostBinfmtMounts(); !slices.Equal(mounts, after) {
		fmt.Fprintf(os.Stderr, "FAIL: binfmt_misc mounts of the host changed:\nbefore: %q\nafter:  %q\n", mounts, after)
		code = 1
	}
	if left := leftoverDirs(); len(left) > 0 {
		// Kept for a look: a mount point is never removed recursively.
		fmt.Fprintf(os.Stderr, "FAIL: sandbox directories left: %q\n", left)
		code = 1
	} else if err := os.RemoveAll(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	os.Exit(code)
}

// hostBinfmtMounts returns the binfmt_misc lines of /proc/self/mountinfo.
func hostBinfmtMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "binfmt") {
			lines = append(lines, line)
		}
	}
	return lines
}

// leftoverDirs lists the sandbox mount points in os.TempDir().
func leftoverDirs() []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "mabd-binfmt-*"))
	return dirs
}

func TestRunPattern(t *testing.T) {
	for name, want := range map[string]string{
		"TestX":                     "^TestX$",
		"TestX/with_space":          "^TestX$/^with_space$",
		"TestX/a.b*(c)|[d]/e#01":    `^TestX$/^a\.b\*\(c\)\|\[d\]$/^e#01$`,
		"TestX/outer/inner_(x)_y+?": `^TestX$/^outer$/^inner_\(x\)_y\+\?$`,
	} {
		if got := runPattern(name); got != want {
			t.Errorf("runPattern(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestRefusesForgedChild starts the test binary as if it were a sandboxed
// child, with a forged MABD_SANDBOX_CHILD, but not through userns.Start: it
// must refuse to run the body, whether it is in the parent's user
// namespace or has no private instance.
func TestRefusesForgedChild(t *testing.T) {
	own, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ userNS, says string }{
		{own, "refusing to run the body: this process is in the parent's user namespace"},
		{"user:[1]", "refusing to run the body: no private binfmt_misc instance on "},
	} {
		tmp := t.TempDir()
		spec, err := json.Marshal(childSpec{
			Dir:    filepath.Join(tmp, "mnt"),
			Report: filepath.Join(tmp, "report"),
			UserNS: tc.userNS,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(tmp, "mnt"), 0o700); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOutcome$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "SBTEST_HELPER=pass", envTest+"=TestHelperOutcome", envChild+"="+string(spec))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.says) || strings.Contains(string(out), "body passed") {
			t.Errorf("forged child in %s: %v, want it to refuse\n%s", tc.userNS, err, out)
		}
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&userns.KernelTooOldError{Release: "6.1.0"}, "binfmt_misc is per user namespace only since Linux 6.7; this kernel is 6.1.0; run these tests on Linux 6.7 or newer"},
		{&userns.UnavailableError{Reason: userns.Disabled, Sysctl: userns.SysctlMaxPIDNamespaces, Allow: "10000", Err: errors.New("/proc/sys/user/max_pid_namespaces is 0")},
			"user namespaces are disabled: /proc/sys/user/max_pid_namespaces is 0; enable them with `sysctl -w user.max_pid_namespaces=10000`"},
		{&userns.UnavailableError{Reason: userns.Disabled, Sysctl: userns.SysctlUnprivilegedClone, Allow: "1", Err: errors.New("/proc/sys/kernel/unprivileged_userns_clone is 0")},
			"; enable them with `sysctl -w kernel.unprivileged_userns_clone=1`, or run the tests as root"},
		{&userns.UnavailableError{Reason: userns.NoFilesystem, Err: errors.New("binfmt_misc is not listed in /proc/filesystems")},
			"this kernel has no binfmt_misc file system: binfmt_misc is not listed in /proc/filesystems; load it with `modprobe binfmt_misc`"},
		{userns.NamespaceError(scriptSpec, &os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: syscall.EPERM}),
			"create user, mount and PID namespaces: fork/exec /bin/sh: operation not permitted (EPERM): user namespaces are not allowed for this process; check sysctl kernel.unprivileged_userns_clone (or run as root)"},
		{userns.NamespaceError(scriptSpec, &os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: syscall.ENOSPC}),
			"(ENOSPC): a namespace limit is reached; raise sysctl user.max_user_namespaces"},
		{errors.New("other"), "other"},
	} {
		got := explain(tc.err)
		if !strings.Contains(got.Error(), tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("explain(%v) = %q, want it to say %q and wrap the error", tc.err, got, tc.want)
		}
	}
}
