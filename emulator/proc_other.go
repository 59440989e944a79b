//go:build !unix

package emulator

import "os/exec"

// setProcessGroup is a no-op where process groups are not available;
// cancellation kills only the process itself.
func setProcessGroup(cmd *exec.Cmd) {}
