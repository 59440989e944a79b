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
)

// TestMain checks, in the top-level test process only, that the tests leave
// the host's binfmt_misc mounts and os.TempDir() as they found them.
func TestMain(m *testing.M) {
	if childTest != "" {
		os.Exit(m.Run())
	}
	mounts, dirs := hostBinfmtMounts(), leftoverDirs()
	code := m.Run()
	if after := hostBinfmtMounts(); !slices.Equal(mounts, after) {
		fmt.Fprintf(os.Stderr, "FAIL: binfmt_misc mounts of the host changed:\nbefore: %q\nafter:  %q\n", mounts, after)
		code = 1
	}
	if after := leftoverDirs(); !slices.Equal(dirs, after) {
		fmt.Fprintf(os.Stderr, "FAIL: sandbox directories left in %s:\nbefore: %q\nafter:  %q\n", os.TempDir(), dirs, after)
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

func TestKernelVersion(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.7.0-1-amd64", 6, 7, true},
		{"6.18.44-fc-v657", 6, 18, true},
		{"5.15.0-91-generic", 5, 15, true},
		{"6.6", 6, 6, true},
		{"6.10rc1", 6, 10, true},
		{"garbage", 0, 0, false},
	} {
		major, minor, ok := kernelVersion(tc.release)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("kernelVersion(%q) = %d, %d, %v, want %d, %d, %v", tc.release, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

// TestRefusesInitialUserNS starts the test binary as if it were a
// sandboxed child, with a forged MABD_SANDBOX_CHILD, in a new mount
// namespace but in the initial user namespace: it must refuse to mount
// binfmt_misc (which would be the host's instance there).
func TestRefusesInitialUserNS(t *testing.T) {
	if os.Getuid() != 0 {
		t.Log("not root: cannot start a process in a new mount namespace without a new user namespace")
		return
	}
	if initial, err := initialUserNS(); err != nil || !initial {
		t.Logf("not in the initial user namespace (%v): nothing to check", err)
		return
	}
	tmp := t.TempDir()
	spec, err := json.Marshal(childSpec{
		Dir:    filepath.Join(tmp, "mnt"),
		Report: filepath.Join(tmp, "report"),
		UserNS: "user:[1]", // forged: differs from every real namespace
		MntNS:  "mnt:[1]",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "mnt"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOutcome$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SBTEST_HELPER=pass", envTest+"=TestHelperOutcome", envChild+"="+string(spec))
	// A new mount namespace, so that even a failing check could not leave
	// a mount behind on the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to mount binfmt_misc: this process is in the initial user namespace") {
		t.Errorf("forged child: %v, want it to refuse\n%s", err, out)
	}
}

func TestNamespaceError(t *testing.T) {
	for errno, want := range map[syscall.Errno]string{
		syscall.EPERM:  "(EPERM): user namespaces are not allowed",
		syscall.ENOSPC: "(ENOSPC): a namespace limit is reached",
	} {
		err := namespaceError(&os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: errno})
		if !errors.Is(err, errno) || !strings.Contains(err.Error(), want) {
			t.Errorf("namespaceError(%v) = %v, want it to wrap the errno and say %q", errno, err, want)
		}
	}
}
