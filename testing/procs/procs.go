// Package procs reads the host's process table (/proc) for tests and the
// bench: whose processes are left, what a process's tree is, which uid it
// runs as.
package procs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// UIDs reads the real and effective uid of a process, as the host sees
// them; ok is false when it is gone.
func UIDs(pid int) (real, effective int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Uid:" {
			real, _ = strconv.Atoi(f[1])
			effective, _ = strconv.Atoi(f[2])
			return real, effective, true
		}
	}
	return 0, 0, false
}

// OfUser lists the processes whose real uid is uid.
func OfUser(uid int) []int {
	var out []int
	for _, pid := range all() {
		if real, _, ok := UIDs(pid); ok && real == uid {
			out = append(out, pid)
		}
	}
	return out
}

// Tree returns pid and its descendants, parents before children.
func Tree(pid int) []int {
	children := map[int][]int{}
	for _, p := range all() {
		if f := statFields(p); len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// all lists the processes.
func all() []int {
	var out []int
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		if pid, err := strconv.Atoi(de.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// InUserNS lists the processes that run in the user namespace ns, an open
// /proc/PID/ns/user (held open, the namespace's identity is not reused);
// zombies and namespaces nested in it are not counted.
func InUserNS(ns *os.File) ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Fstat(int(ns.Fd()), &want); err != nil {
		return nil, &os.PathError{Op: "stat", Path: ns.Name(), Err: err}
	}
	var out []int
	for _, pid := range all() {
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/user", pid), &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino && !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out, nil
}

// zombie reports whether pid has exited and waits to be reaped (or is
// gone): its state is Z.
func zombie(pid int) bool {
	f := statFields(pid)
	return len(f) == 0 || f[0] == "Z"
}

// statFields are the fields of /proc/PID/stat after the command (which
// may hold spaces and parentheses): the state, the parent, …; nil when
// the process is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}
