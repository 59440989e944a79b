package userns

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestKillAll: every process of a user namespace is killed, orphans
// included, and nothing of another namespace.
func TestKillAll(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare is missing: install util-linux")
	}
	start := func(script string) *exec.Cmd {
		cmd := exec.Command("unshare", "--user", "--map-root-user", "sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	// sh and its two sleeps in one new user namespace; a sleep in
	// another, which must survive.
	target := start("sleep 600 & sleep 600 & wait")
	other := start("exec sleep 600")
	self, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	var ns string
	for range 500 { // until all three run in the new namespace
		ns, _ = os.Readlink("/proc/" + strconv.Itoa(target.Process.Pid) + "/ns/user")
		if ns != "" && ns != self && len(inNSOf(t, target.Process.Pid)) == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := OpenUserNS(target.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := KillAll(f, 5*time.Second)
	if err != nil || n != 3 {
		t.Fatalf("KillAll = %d, %v; want the 3 processes of %s killed", n, err, ns)
	}
	if left := inNSOf(t, target.Process.Pid); len(left) != 0 {
		t.Fatalf("left in %s: %v", ns, left)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the process of another namespace was killed: %v", err)
	}
}

// inNSOf lists the running processes in the user namespace of pid.
func inNSOf(t *testing.T, pid int) []int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/user", &st); err != nil {
		return nil
	}
	out, err := inUserNS(st)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
