package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	availOnce sync.Once
	availErr  error

	toolsOnce sync.Once
	toolsVal  tools
	toolsErr  error
)

// Available returns nil when private binfmt_misc instances work on this
// machine, and otherwise an error that names the reason and how to fix it:
// a kernel older than 6.7 (binfmt_misc is not per user namespace there),
// user namespaces disabled by sysctl or refused by the kernel (the errno is
// reported), the binfmt_misc file system missing (modprobe binfmt_misc), or
// a missing tool (sh, mount, unshare, mkdir, rmdir, readlink). Besides these
// checks it starts one sandbox that mounts a private instance and reads its
// status. The result is computed once and cached.
func Available() error {
	availOnce.Do(func() { availErr = available() })
	return availErr
}

// Require fails the test (t.Fatalf, never t.Skip) with the reason when
// private binfmt_misc instances are not available here (see [Available]).
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("sandbox: private binfmt_misc instances are not available: %v", err)
	}
}

func available() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	if major, minor, ok := kernelVersion(release); ok && (major < 6 || major == 6 && minor < 7) {
		return fmt.Errorf("binfmt_misc is not per user namespace before Linux 6.7: this kernel is %s; run these tests on Linux 6.7 or newer", release)
	}

	if err := checkFilesystem(); err != nil {
		return err
	}

	for _, s := range []struct{ path, name string }{
		{"/proc/sys/user/max_user_namespaces", "user.max_user_namespaces"},
		{"/proc/sys/user/max_mnt_namespaces", "user.max_mnt_namespaces"},
		{"/proc/sys/user/max_pid_namespaces", "user.max_pid_namespaces"},
	} {
		if n, ok := readInt(s.path); ok && n == 0 {
			return fmt.Errorf("namespaces are disabled: %s is 0; enable them with `sysctl -w %s=10000`", s.path, s.name)
		}
	}
	const unprivClone = "/proc/sys/kernel/unprivileged_userns_clone"
	if n, ok := readInt(unprivClone); ok && n == 0 && os.Geteuid() != 0 {
		return fmt.Errorf("unprivileged user namespaces are disabled: %s is 0; enable them with `sysctl -w kernel.unprivileged_userns_clone=1`, or run the tests as root", unprivClone)
	}

	if _, err := findTools(); err != nil {
		return err
	}
	return probe()
}

// kernelVersion parses the major and minor number of a kernel release such
// as "6.7.0-1-amd64".
func kernelVersion(release string) (major, minor int, ok bool) {
	fields := strings.SplitN(release, ".", 3)
	if len(fields) < 2 {
		return 0, 0, false
	}
	num := func(s string) (int, bool) {
		end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			s = s[:end]
		}
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	major, ok1 := num(fields[0])
	minor, ok2 := num(fields[1])
	return major, minor, ok1 && ok2
}

// checkFilesystem returns an error unless /proc/filesystems lists
// binfmt_misc.
func checkFilesystem() error {
	const path = "/proc/filesystems"
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == "binfmt_misc" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return fmt.Errorf("the binfmt_misc file system is not available (it is not listed in %s): load it with `modprobe binfmt_misc`", path)
}

// readInt reads a sysctl file holding one integer.
func readInt(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// tools are the absolute paths of the programs the sandbox wrapper runs.
type tools struct {
	unshare, mount, mkdir, rmdir, readlink string
}

// findTools locates the programs the wrapper needs, once.
func findTools() (tools, error) {
	toolsOnce.Do(func() {
		if _, err := os.Stat("/bin/sh"); err != nil {
			toolsErr = fmt.Errorf("the sandbox needs /bin/sh: %w", err)
			return
		}
		for _, tl := range []struct {
			dst       *string
			name, pkg string
		}{
			{&toolsVal.unshare, "unshare", "util-linux"},
			{&toolsVal.mount, "mount", "mount"},
			{&toolsVal.mkdir, "mkdir", "coreutils"},
			{&toolsVal.rmdir, "rmdir", "coreutils"},
			{&toolsVal.readlink, "readlink", "coreutils"},
		} {
			path, err := lookTool(tl.name)
			if err != nil {
				toolsErr = fmt.Errorf("the sandbox needs %s: %w; install the %s package", tl.name, err, tl.pkg)
				return
			}
			*tl.dst = path
		}
	})
	return toolsVal, toolsErr
}

// lookTool finds an executable in $PATH or in the usual system directories
// and returns its absolute path.
func lookTool(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(path); err == nil {
			return abs, nil
		}
	}
	dirs := []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}
	for _, dir := range dirs {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH or in %s", name, strings.Join(dirs, ", "))
}

// probe starts one sandbox and checks that it gets an enabled private
// instance.
func probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, err := sandboxCmd(ctx, []string{"/bin/sh", "-c", `cat "$BINFMT/status"`}, false, false)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return namespaceError(err)
	}
	err = cmd.Wait()
	output := strings.TrimSpace(out.String())
	if err != nil {
		hint := ""
		if strings.Contains(output, "ermission denied") || strings.Contains(output, "not permitted") {
			hint = "; the user namespace has no right to mount: on Ubuntu, AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=0, or run as root); in a container, its seccomp or AppArmor profile may forbid mount"
		}
		return fmt.Errorf("mounting a private binfmt_misc instance in a user namespace failed: %v: %s%s", err, output, hint)
	}
	if output != "enabled" {
		return fmt.Errorf("a private binfmt_misc instance reports status %q, want \"enabled\"", output)
	}
	return nil
}

// namespaceError explains an error from starting a process in new
// namespaces.
func namespaceError(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("start a process in new user, mount and PID namespaces: %w", err)
	}
	var fix string
	switch errno {
	case syscall.EPERM, syscall.EACCES:
		fix = "user namespaces are not allowed for this process: check sysctl kernel.unprivileged_userns_clone (or run as root), AppArmor's kernel.apparmor_restrict_unprivileged_userns, and the seccomp profile of the container the tests run in"
	case syscall.ENOSPC, syscall.EUSERS:
		fix = "a namespace limit is reached: raise sysctl user.max_user_namespaces, user.max_mnt_namespaces or user.max_pid_namespaces"
	case syscall.EINVAL:
		fix = "the kernel does not support user or PID namespaces (CONFIG_USER_NS, CONFIG_PID_NS)"
	default:
		fix = "the kernel refused to create the namespaces"
	}
	return fmt.Errorf("start a process in new user, mount and PID namespaces: %w (%s): %s", err, errnoName(errno), fix)
}

// errnoName returns the symbolic name of errno, such as "EPERM".
func errnoName(errno syscall.Errno) string {
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return "errno " + strconv.Itoa(int(errno))
}
