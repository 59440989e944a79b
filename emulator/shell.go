package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"mabd/binfmt"
)

// ShellScript is what Shell runs with the root file system's /bin/sh.
const ShellScript = "uname -m; echo ok"

// Shell runs `sh -c 'uname -m; echo ok'` from a foreign root file system
// in a chroot of it, with a deadline, and checks that the shell reports
// a's machine and finishes. It returns the shell's output; the error says
// what went wrong for a person.
func Shell(ctx context.Context, a binfmt.Arch, rootfs string, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	sh := rootfs + "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		return "", fmt.Errorf("foreign shell: %w: the root file system needs /bin/sh for %s (a busybox-static:%s tree will do)", err, a.Name, a.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", ShellScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Setpgid: true}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	switch {
	case ctx.Err() != nil:
		return text, fmt.Errorf("foreign shell in %s: no answer within %v", rootfs, timeout)
	case errors.Is(err, syscall.ENOEXEC):
		return text, fmt.Errorf("foreign shell in %s: exec format error: no handler for %s (mabd install %s)", rootfs, a.Name, a.Name)
	case err != nil:
		return text, fmt.Errorf("foreign shell in %s: %w (output %q)", rootfs, err, strings.TrimSpace(text))
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 2 || lines[1] != "ok" {
		return text, fmt.Errorf("foreign shell in %s printed %q, want the machine and ok", rootfs, text)
	}
	if a.Machine != "" && lines[0] != a.Machine {
		return text, fmt.Errorf("foreign shell in %s says it runs on %s, want %s: is the root file system for another architecture?", rootfs, lines[0], a.Machine)
	}
	return text, nil
}
