package builder

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHostPID: a process known by its id in a PID namespace is found
// among the children of the process that made it, by the id this
// process sees.
func TestHostPID(t *testing.T) {
	// unshare forks sleep as PID 1 of a new PID namespace, killed when
	// unshare is.
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v (unshare is util-linux's)", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var got int
	var err error
	var cmdline []byte
	for range 500 { // until the forked child has become sleep
		if got, err = hostPID(cmd.Process.Pid, 1); err == nil {
			if cmdline, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", got)); strings.HasPrefix(string(cmdline), "sleep\x00600") {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || !strings.HasPrefix(string(cmdline), "sleep\x00600") {
		t.Fatalf("hostPID = %d, %v (command line %q); want sleep's", got, err, cmdline)
	}
	if _, err := hostPID(cmd.Process.Pid, 2); err == nil {
		t.Error("hostPID found a process 2 that the namespace does not have")
	}
}
