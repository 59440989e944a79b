package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mabd/internal/userns"
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
	if err := userns.CheckHost(userns.Spec{PID: true}); err != nil {
		return explain(err)
	}
	if err := userns.CheckFilesystem(); err != nil {
		return explain(err)
	}
	if _, err := findTools(); err != nil {
		return err
	}
	return probe()
}

// fixes says what the person running the tests can do about each reason
// private instances are unavailable; SYSCTL and VALUE stand for the
// error's Sysctl and Allow.
var fixes = map[userns.Reason]string{
	userns.Disabled:     "enable them with `sysctl -w SYSCTL=VALUE`",
	userns.Refused:      "check sysctl kernel.unprivileged_userns_clone (or run as root), AppArmor's kernel.apparmor_restrict_unprivileged_userns, and the seccomp profile of the container the tests run in",
	userns.Limit:        "raise sysctl user.max_user_namespaces, user.max_mnt_namespaces or user.max_pid_namespaces",
	userns.NoFilesystem: "load it with `modprobe binfmt_misc`",
	userns.MountRefused: "on Ubuntu, AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=0, or run as root); in a container, its seccomp or AppArmor profile may forbid mount",
}

// explain adds to an error of package userns what to do about it.
func explain(err error) error {
	var old *userns.KernelTooOldError
	if errors.As(err, &old) {
		return fmt.Errorf("%w; run these tests on Linux %d.%d or newer", err, userns.MinKernelMajor, userns.MinKernelMinor)
	}
	var ue *userns.UnavailableError
	if !errors.As(err, &ue) || fixes[ue.Reason] == "" {
		return err
	}
	fix := strings.NewReplacer("SYSCTL", ue.Sysctl, "VALUE", ue.Allow).Replace(fixes[ue.Reason])
	if ue.Sysctl == userns.SysctlUnprivilegedClone {
		fix += ", or run the tests as root"
	}
	return fmt.Errorf("%w; %s", err, fix)
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
		return explain(userns.NamespaceError(scriptSpec, err))
	}
	err = cmd.Wait()
	output := strings.TrimSpace(out.String())
	if err != nil {
		hint := ""
		if strings.Contains(output, "ermission denied") || strings.Contains(output, "not permitted") {
			hint = "; the user namespace has no right to mount: " + fixes[userns.MountRefused]
		}
		return fmt.Errorf("mounting a private binfmt_misc instance in a user namespace failed: %v: %s%s", err, output, hint)
	}
	if output != "enabled" {
		return fmt.Errorf("a private binfmt_misc instance reports status %q, want \"enabled\"", output)
	}
	return nil
}
