package procs

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestInUserNS: the processes of a new user namespace are listed, those
// of another are not, and neither are zombies.
func TestInUserNS(t *testing.T) {
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
	target := start("sleep 600 & sleep 600 & wait")
	other := start("exec sleep 600")
	self, _ := os.Readlink("/proc/self/ns/user")
	var ns *os.File
	var got []int
	for range 500 { // until sh has entered the namespace and started both
		if l, _ := os.Readlink("/proc/" + strconv.Itoa(target.Process.Pid) + "/ns/user"); l != "" && l != self {
			if ns == nil {
				var err error
				if ns, err = os.Open("/proc/" + strconv.Itoa(target.Process.Pid) + "/ns/user"); err != nil {
					t.Fatal(err)
				}
				defer ns.Close()
				// The sleeps outlive sh: kill whatever is left.
				defer func() {
					left, _ := InUserNS(ns)
					for _, p := range left {
						syscall.Kill(p, syscall.SIGKILL)
					}
				}()
			}
			if got, _ = InUserNS(ns); len(got) == 3 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != 3 || !slices.Contains(got, target.Process.Pid) || slices.Contains(got, other.Process.Pid) {
		t.Fatalf("InUserNS = %v; want sh (%d) and its two sleeps, not %d", got, target.Process.Pid, other.Process.Pid)
	}
	target.Process.Kill()
	for range 100 { // sh is a zombie until reaped: not listed
		if got, _ = InUserNS(ns); !slices.Contains(got, target.Process.Pid) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if slices.Contains(got, target.Process.Pid) {
		t.Fatalf("InUserNS lists the killed sh: %v", got)
	}
}
