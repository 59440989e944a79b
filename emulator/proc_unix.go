//go:build unix

package emulator

import (
	"os/exec"
	"syscall"
)

// setProcessGroup runs cmd in a process group of its own and makes
// cancellation kill the whole group, so that a wrapper script's children die
// with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
