package userns

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// OpenUserNS opens the user namespace of the process pid. While the file
// is open the namespace keeps its identity (its nsfs inode is not reused
// by a new namespace), so that [KillAll] never mistakes another namespace
// for it once its processes are gone.
func OpenUserNS(pid int) (*os.File, error) {
	return os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
}

// KillAll sends SIGKILL to every process of the user namespace ns (see
// [OpenUserNS]; not those of namespaces nested in it), again until none is
// left or timeout has passed, and returns how many it killed. A namespace
// whose first process died can hold orphans: the steps of a build whose
// buildkitd was killed, which nothing else would ever end. The error says
// how many are left.
func KillAll(ns *os.File, timeout time.Duration) (int, error) {
	killed := map[int]bool{}
	deadline := time.Now().Add(timeout)
	for {
		left, err := Processes(ns)
		if err != nil || len(left) == 0 {
			return len(killed), err
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("%d processes of the user namespace %s still run after SIGKILL: %v", len(left), ns.Name(), left)
		}
		for _, pid := range left {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed[pid] = true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Processes lists the processes that run in the user namespace ns (see
// [OpenUserNS]; not in namespaces nested in it). Those that cannot be
// inspected (gone, or another user's) and zombies are not listed.
func Processes(ns *os.File) ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Fstat(int(ns.Fd()), &want); err != nil {
		return nil, &os.PathError{Op: "stat", Path: ns.Name(), Err: err}
	}
	return inUserNS(want)
}

// inUserNS lists the processes whose user namespace is the nsfs inode of
// ns, as Processes does.
func inUserNS(ns syscall.Stat_t) ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: "/proc", Err: err}
	}
	var out []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+n+"/ns/user", &st) == nil && st.Dev == ns.Dev && st.Ino == ns.Ino && !zombie(n) {
			out = append(out, pid)
		}
	}
	return out, nil
}

// zombie reports whether the process pid (a /proc name) has exited and
// waits for its parent to reap it: it keeps its namespaces until then, but
// runs nothing. Its state is the field after the command's ")" in
// /proc/PID/stat.
func zombie(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true // gone
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
