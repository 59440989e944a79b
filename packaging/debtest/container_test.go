package debtest

// A throwaway Debian system booted by the host's own systemd, for
// TestSystemd. See bootContainer for the steps and why each is needed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mabd/builder"
)

// The test binary re-executes itself for the two stages that must run in
// other namespaces than the test; envStage names the stage.
const (
	envStage  = "MABD_DEBTEST_STAGE"
	envDir    = "MABD_DEBTEST_DIR"    // the container's directory (see bootContainer)
	envCgroup = "MABD_DEBTEST_CGROUP" // the container's cgroup (host path)
	envRemove = "MABD_DEBTEST_REMOVE" // paths deleted from the container's / (newline-separated)
	envMask   = "MABD_DEBTEST_MASK"   // units masked in the container (space-separated)
)

// The stages talk to the test through two pipes: they write lines such as
// "pid 1234" to fd 3 and read the test's answers from fd 4.
const (
	reportFD  = 3
	controlFD = 4
)

// systemdBinary is the host's systemd, booted as the container's PID 1.
const systemdBinary = "/lib/systemd/systemd"

// containerEnv is the whole environment of the commands run in the
// container (nothing of the test's leaks in).
var containerEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C",
	"TERM=dumb",
	"SYSTEMD_PAGER=",
	"SYSTEMD_COLORS=0",
	"SYSTEMD_LOG_COLOR=0",
	"DEBIAN_FRONTEND=noninteractive",
}

func init() {
	stage := os.Getenv(envStage)
	if stage == "" {
		return
	}
	var err error
	switch stage {
	case "mount":
		err = stageMount()
	case "init":
		err = stageInit()
	default:
		err = fmt.Errorf("unknown stage")
	}
	// A stage that returns has failed: its output is the container's
	// console, which the test shows.
	fmt.Fprintf(os.Stderr, "debtest stage %s: %v\n", stage, err)
	fmt.Fprintf(os.NewFile(reportFD, "report"), "error %s: %v\n", stage, err)
	os.Exit(1)
}

// stageMount runs as real root in a new mount namespace (of the initial
// user namespace), so its mounts never appear in the host's. It mounts a
// tmpfs for the overlay's upper and work directories and the overlay of /
// (lowerdir=/), which only real root can: in a user namespace the kernel
// refuses ("failed to clone lowerpath"). Then it starts stageInit as PID 1
// of new user, pid, mount, uts, ipc and net namespaces, in the container's
// cgroup, and waits for it. Its mount namespace, and with it the overlay
// and the tmpfs, disappears with the last of these processes.
func stageMount() error {
	dir := os.Getenv(envDir)
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	layers, root := filepath.Join(dir, "layers"), filepath.Join(dir, "root")
	if err := unix.Mount("mabd-debtest", layers, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", layers, err)
	}
	upper, work := filepath.Join(layers, "upper"), filepath.Join(layers, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	// The merged root takes the upper directory's mode: that of /.
	if err := os.Chmod(upper, 0o755); err != nil {
		return err
	}
	opts := "lowerdir=/,upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the overlay of / on %s (%s): %w", root, opts, err)
	}
	cg, err := os.Open(os.Getenv(envCgroup))
	if err != nil {
		return fmt.Errorf("open the container's cgroup: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envStage+"=init")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(reportFD, "report"), os.NewFile(controlFD, "control")}
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// The cgroup namespace comes later (stageInit): one made here
		// would be rooted at this process's cgroup, not the container's.
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
		// The identity map of ids 0–65535, written by this (real root)
		// process: newuidmap would want /etc/subuid entries.
		UidMappings:                ids,
		GidMappings:                ids,
		GidMappingsEnableSetgroups: true,
		UseCgroupFD:                true,
		CgroupFD:                   int(cg.Fd()),
		Pdeathsig:                  syscall.SIGKILL,
	}
	// Pdeathsig fires when the starting thread exits.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the container's init in new namespaces: %w", err)
	}
	cg.Close()
	fmt.Fprintf(os.NewFile(reportFD, "report"), "pid %d\n", cmd.Process.Pid)
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		return err
	}
	os.Exit(0)
	return nil
}

// stageInit runs as PID 1 and root of the container's namespaces. It makes
// the overlay the container's root file system with what systemd expects
// of a container (a tmpfs /dev with the usual nodes, a fresh /proc, a
// read-only /sys, a writable cgroup2 at /sys/fs/cgroup), mounts a new
// binfmt_misc instance on /proc/sys/fs/binfmt_misc and lets the test prove
// it private, then executes systemd.
func stageInit() error {
	// Namespaces set up by unshare(2) belong to the calling thread; the
	// exec below must happen on the same one.
	runtime.LockOSThread()
	report := os.NewFile(reportFD, "report")
	control := bufio.NewReader(os.NewFile(controlFD, "control"))
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("new cgroup namespace: %w", err)
	}
	root := filepath.Join(os.Getenv(envDir), "root")
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	// Mounts copied from the parent's namespace are locked together; a
	// bind of the overlay onto itself is a mount of this namespace that
	// pivot_root and systemd's remounts may change.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", root, err)
	}
	for _, p := range strings.Split(os.Getenv(envRemove), "\n") {
		if p != "" {
			if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
				return err
			}
		}
	}
	for _, u := range strings.Fields(os.Getenv(envMask)) {
		link := filepath.Join(root, "etc/systemd/system", u)
		if err := os.Symlink("/dev/null", link); err != nil {
			return fmt.Errorf("mask %s: %w", u, err)
		}
	}
	if err := mountDev(filepath.Join(root, "dev")); err != nil {
		return err
	}
	const noexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
	}{
		{"proc", "proc", noexec},
		{"sysfs", "sys", noexec | unix.MS_RDONLY},
		{"cgroup2", "sys/fs/cgroup", noexec},
		// A new instance: this process is in a new user namespace.
		{"binfmt_misc", "proc/sys/fs/binfmt_misc", noexec},
	} {
		if err := unix.Mount(m.fstype, filepath.Join(root, m.target), m.fstype, m.flags, ""); err != nil {
			return fmt.Errorf("mount %s on /%s: %w", m.fstype, m.target, err)
		}
	}
	if err := proveBinfmtPrivate(filepath.Join(root, "proc/sys/fs/binfmt_misc"), report, control); err != nil {
		return err
	}
	// The overlay becomes /, and the host's tree goes.
	if err := os.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	fmt.Fprintf(report, "exec %s\n", systemdBinary)
	// systemd gets stdin /dev/null, stdout and stderr (the console file)
	// and nothing else.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return err
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	if err := unix.Dup2(null, 0); err != nil {
		return err
	}
	env := []string{"container=other", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	return fmt.Errorf("exec %s: %w", systemdBinary, unix.Exec(systemdBinary, []string{systemdBinary}, env))
}

// mountDev mounts a tmpfs on dev with the nodes a container gets: device
// files are binds of the host's (a user namespace may not create any),
// devpts a new instance.
func mountDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mount a tmpfs on /dev: %w", err)
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join(dev, n)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+n, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	// systemd writes to /dev/console in a container; the test reads
	// systemd's stdout and the journal instead. It is a file of the
	// container's own: a bind of the host's /dev/null would hand the
	// host's node to whatever in the container chowns and chmods its
	// console (getty made the host's /dev/null root:tty 0620 once).
	if err := os.WriteFile(filepath.Join(dev, "console"), nil, 0o600); err != nil {
		return err
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return fmt.Errorf("mount devpts: %w", err)
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd",
		"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// proveBinfmtPrivate checks that the binfmt_misc instance mounted on dir
// is new (only register and status, enabled), registers a marker entry in
// it and asks the test, which looks at the host's table from the initial
// namespaces, whether the host sees the marker. On the test's "go" it
// removes the marker again and checks that the instance is empty.
func proveBinfmtPrivate(dir string, report *os.File, control *bufio.Reader) error {
	empty := func(when string) error {
		names, err := dirNames(dir)
		if err != nil {
			return err
		}
		if !slices.Equal(names, []string{"register", "status"}) {
			return fmt.Errorf("the container's binfmt_misc instance %s holds %q, want only register and status: it is not a new instance", when, names)
		}
		return nil
	}
	if err := empty("after mounting"); err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "status")); err != nil || string(b) != "enabled\n" {
		return fmt.Errorf("the container's binfmt_misc status: %q, %v; want enabled", b, err)
	}
	marker := fmt.Sprintf("mabd-debtest-%x", time.Now().UnixNano())
	line := ":" + marker + ":E::" + marker + "::/nonexistent/" + marker + ":"
	if err := os.WriteFile(filepath.Join(dir, "register"), []byte(line), 0); err != nil {
		return fmt.Errorf("register the marker %s: %w", line, err)
	}
	if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
		return fmt.Errorf("the marker is not in the container's instance: %w", err)
	}
	fmt.Fprintf(report, "marker %s\n", marker)
	answer, err := control.ReadString('\n')
	if err != nil || answer != "go\n" {
		return fmt.Errorf("the test did not confirm that the instance is private: %q, %v", answer, err)
	}
	if err := os.WriteFile(filepath.Join(dir, marker), []byte("-1"), 0); err != nil {
		return fmt.Errorf("remove the marker: %w", err)
	}
	return empty("after removing the marker")
}

// dirNames lists a directory's entries, sorted.
func dirNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

// container is a running systemd (see bootContainer).
type container struct {
	t       *testing.T
	pid     int         // the host's PID of its PID 1 (stageInit, then systemd)
	systemd bool        // PID 1 is systemd now
	stage   *os.Process // the first stage (stageMount)
	console string      // file with the stages' and systemd's own output
	nsenter string
	exited  chan struct{} // closed when the stages have exited
	booted  time.Duration // exec of systemd → is-system-running answered
}

// binfmtTable is what the host's binfmt_misc shows: whether it is mounted,
// and each file's contents ("status" and one per entry).
type binfmtTable struct {
	mounted bool
	files   map[string]string
}

// hostBinfmt reads the host's binfmt_misc table at the usual place. It
// never mounts anything: if nothing is mounted there the table cannot hold
// entries (an instance without a mount has none).
func hostBinfmt(t *testing.T) binfmtTable {
	t.Helper()
	const dir = "/proc/sys/fs/binfmt_misc"
	tab := binfmtTable{files: map[string]string{}}
	if _, err := os.Stat(filepath.Join(dir, "register")); err != nil {
		return tab
	}
	tab.mounted = true
	names, err := dirNames(dir)
	if err != nil {
		t.Fatalf("read the host's binfmt_misc table: %v", err)
	}
	for _, n := range names {
		if n == "register" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		} else if err != nil {
			t.Fatalf("read the host's binfmt_misc table: %v", err)
		}
		tab.files[n] = string(b)
	}
	return tab
}

// entries is the number of entries (files other than status).
func (tab binfmtTable) entries() int {
	_, ok := tab.files["status"]
	if ok {
		return len(tab.files) - 1
	}
	return len(tab.files)
}

// tableChange is one difference between two binfmtTables.
type tableChange struct {
	kind          string // "added", "removed", "changed" or "mounted"
	name          string // the entry
	before, after string // its contents
}

func (ch tableChange) String() string {
	switch ch.kind {
	case "mounted":
		return fmt.Sprintf("binfmt_misc mounted: %s before, %s after", ch.before, ch.after)
	case "added":
		return "added " + ch.name + ": " + oneLine(ch.after)
	case "removed":
		return "removed " + ch.name + ": " + oneLine(ch.before)
	}
	return "changed " + ch.name + ": " + oneLine(ch.before) + " → " + oneLine(ch.after)
}

// diff lists how after differs from tab. No test touches the host's
// table, so any change is a fault.
func (tab binfmtTable) diff(t *testing.T, after binfmtTable) []tableChange {
	var d []tableChange
	if tab.mounted != after.mounted {
		d = append(d, tableChange{kind: "mounted", before: strconv.FormatBool(tab.mounted), after: strconv.FormatBool(after.mounted)})
	}
	for n, b := range tab.files {
		if a, ok := after.files[n]; !ok {
			d = append(d, tableChange{"removed", n, b, ""})
		} else if a != b {
			d = append(d, tableChange{"changed", n, b, a})
		}
	}
	for n, a := range after.files {
		if _, ok := tab.files[n]; !ok {
			d = append(d, tableChange{"added", n, "", a})
		}
	}
	slices.SortFunc(d, func(a, b tableChange) int { return strings.Compare(a.String(), b.String()) })
	return d
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// bootContainer boots the host's systemd as PID 1 of a throwaway system:
//
//  1. The test creates a cgroup for it below its own in the host's
//     cgroup2 hierarchy (on a hybrid host, /sys/fs/cgroup/unified).
//  2. stageMount, as real root in a new mount namespace: a tmpfs for the
//     overlay's upper layer, the overlay of / on a new directory.
//  3. stageInit, PID 1 of new user (ids 0–65535 mapped to themselves),
//     pid, mount, uts, ipc, net and then cgroup namespaces, in that
//     cgroup: the overlay bound onto itself, remove (paths of the host
//     that must not be in the container) deleted and mask (units) masked
//     in the overlay, a tmpfs /dev, /proc, read-only /sys, cgroup2 on
//     /sys/fs/cgroup, a new binfmt_misc instance on
//     /proc/sys/fs/binfmt_misc.
//  4. Privacy: stageInit registers a marker entry in its instance; the
//     test checks that the host's table does not show it and has not
//     changed; stageInit removes it and checks the instance is empty.
//  5. pivot_root into the overlay; exec systemd with container=other.
//  6. The test waits until `systemctl is-system-running --wait` answers.
//
// Cleanup (also when the test fails): `systemctl poweroff` and a bounded
// wait, SIGKILL otherwise; the cgroup is emptied (cgroup.kill) and
// removed; the host's binfmt_misc mounts and table are compared with what
// they were before.
func bootContainer(t *testing.T, remove, mask []string) *container {
	t.Helper()
	nsenter := needTool(t, "nsenter", "util-linux")
	if _, err := os.Stat(systemdBinary); err != nil {
		t.Fatalf("%v: install the systemd package", err)
	}
	before := hostBinfmt(t)
	mountsBefore := binfmtMounts(t)
	devBefore := devNodes(t)
	t.Cleanup(func() {
		if after := devNodes(t); after != devBefore {
			t.Errorf("the host's device nodes changed:\nbefore %s\nafter  %s", devBefore, after)
		}
	})
	cgroup := makeCgroup(t)
	t.Cleanup(func() { removeCgroup(t, cgroup) }) // after the container's end

	dir := makeDir(t)
	for _, d := range []string{"layers", "root"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	console := filepath.Join(dir, "console.log")
	out, err := os.Create(console)
	if err != nil {
		t.Fatal(err)
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	controlR, controlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envStage+"=mount", envDir+"="+dir, envCgroup+"="+cgroup,
		envRemove+"="+strings.Join(remove, "\n"), envMask+"="+strings.Join(mask, " "))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{reportW, controlR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	c := &container{t: t, console: console, nsenter: nsenter, exited: make(chan struct{})}
	started := make(chan error)
	go func() {
		// Pdeathsig: the stages die with this thread, which lives as
		// long as they do.
		runtime.LockOSThread()
		defer close(c.exited)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.stage = cmd.Process
		started <- nil
		cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start the container: %v", err)
	}
	reportW.Close()
	controlR.Close()
	out.Close()
	t.Cleanup(func() {
		c.shutdown()
		controlW.Close()
		if after := binfmtMounts(t); !slices.Equal(mountsBefore, after) {
			t.Errorf("the host's binfmt_misc mounts changed:\nbefore: %q\nafter:  %q", mountsBefore, after)
		}
		if diff := before.diff(t, hostBinfmt(t)); len(diff) > 0 {
			t.Errorf("the host's binfmt_misc table changed: %v", diff)
		} else {
			t.Logf("the host's binfmt_misc table is as it was (mounted: %v, %d entries)", before.mounted, before.entries())
		}
	})

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(reportR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(time.Minute)
	next := func(want string) string {
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, want+" ") {
				select { // for the console's last words
				case <-c.exited:
				case <-time.After(10 * time.Second):
				}
				t.Fatalf("container: got %q, want %q; console:\n%s", l, want, c.consoleText())
			}
			return strings.TrimPrefix(l, want+" ")
		case <-deadline:
			t.Fatalf("container: no %q within a minute; console:\n%s", want, c.consoleText())
		}
		return ""
	}
	pid, err := strconv.Atoi(next("pid"))
	if err != nil {
		t.Fatalf("container: %v", err)
	}
	c.pid = pid

	// Step 4: the instance is private.
	marker := next("marker")
	self1, err1 := os.Readlink("/proc/self/ns/user")
	theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err1 != nil || err2 != nil || self1 == theirs {
		t.Fatalf("the container's user namespace %q (%v) is not a new one (the test's: %q, %v)", theirs, err2, self1, err1)
	}
	now := hostBinfmt(t)
	if _, ok := now.files[marker]; ok {
		t.Fatalf("the host's binfmt_misc table shows the marker %s registered in the container: the container's instance is not private", marker)
	}
	if diff := before.diff(t, now); len(diff) > 0 {
		t.Fatalf("the host's binfmt_misc table changed while the container registered its marker: %v", diff)
	}
	if before.mounted {
		t.Logf("binfmt_misc: the container's instance is new and empty; its marker %s is not in the host's table (%d entries)", marker, now.entries())
	} else {
		t.Logf("binfmt_misc: the container's instance is new and empty; the host has none mounted (so no entries), and it stays so")
	}
	if _, err := controlW.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	next("exec")
	c.systemd = true
	start := time.Now()

	// Step 6: systemd answers and has finished starting up.
	var state string
	for {
		o, err := c.run(30*time.Second, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(o)
		if err == nil || state == "degraded" {
			break
		}
		select {
		case <-c.exited:
			t.Fatalf("systemd exited while booting; console:\n%s", c.consoleText())
		default:
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("systemd is not running after a minute (%s: %v); console:\n%s", o, err, c.consoleText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.booted = time.Since(start)
	t.Logf("systemd booted: %s after %s; systemd-analyze: %s; slowest units:\n%s", state, c.booted.Round(time.Millisecond),
		strings.TrimSpace(c.output("systemd-analyze", "time")), c.output("sh", "-c", "systemd-analyze blame --no-pager | head -n 3"))
	if state != "running" {
		t.Logf("failed units:\n%s", c.output("systemctl", "--failed", "--no-legend", "--plain"))
	}
	return c
}

// run runs a command in the container's namespaces and root (nsenter)
// with containerEnv, under timeout(1) there (killing nsenter would leave
// its child running in the container), and returns its standard output and
// error, combined. A command that timed out exits with status 124.
func (c *container) run(timeout time.Duration, args ...string) (string, error) {
	return c.runInput(timeout, nil, args...)
}

// runInput is run with standard input from stdin (nil: /dev/null).
func (c *container) runInput(timeout time.Duration, stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	a := append([]string{"--target", strconv.Itoa(c.pid), "--all", "--root", "--wd", "--",
		"timeout", "--kill-after=2", strconv.FormatFloat(timeout.Seconds(), 'f', 1, 64)}, args...)
	cmd := exec.CommandContext(ctx, c.nsenter, a...)
	cmd.Env = containerEnv
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
	err := cmd.Run()
	return out.String(), err
}

// output runs a command in the container with a deadline of a minute and
// returns its output, with the error appended if it failed.
func (c *container) output(args ...string) string {
	out, err := c.run(time.Minute, args...)
	if err != nil {
		out += fmt.Sprintf("(%s: %v)\n", strings.Join(args, " "), err)
	}
	return out
}

// must runs a command in the container and fails the test with the
// container's state if it fails or takes longer than timeout.
func (c *container) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s%s", strings.Join(args, " "), err, out, c.diagnose())
	}
	return out
}

// diagnose is what a failure shows of the container: mabd's units, the
// failed units and mabd's journal.
func (c *container) diagnose() string {
	return "\n--- systemctl status mabd.service mabd.socket\n" +
		c.output("systemctl", "status", "--no-pager", "--full", "--lines=0", "mabd.service", "mabd.socket") +
		"--- systemctl --failed\n" + c.output("systemctl", "--failed", "--no-legend", "--plain") +
		"--- journalctl -u mabd.service -u mabd.socket -u systemd-binfmt.service (last 150 lines)\n" +
		c.output("journalctl", "--no-pager", "-o", "short-monotonic", "-n", "150", "-u", "mabd.service", "-u", "mabd.socket", "-u", "systemd-binfmt.service")
}

// consoleText is the stages' and systemd's own output so far.
func (c *container) consoleText() string {
	b, err := os.ReadFile(c.console)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// shutdown powers the container off (systemctl poweroff) and waits up to a
// minute for its PID 1 to exit; if it does not, the test fails and the
// container is killed. Stages that have not started systemd yet are
// killed at once.
func (c *container) shutdown() {
	select {
	case <-c.exited:
		return
	default:
	}
	if c.systemd {
		start := time.Now()
		out, err := c.run(30*time.Second, "systemctl", "poweroff")
		if err == nil {
			select {
			case <-c.exited:
				c.t.Logf("container powered off in %s", time.Since(start).Round(time.Millisecond))
				return
			case <-time.After(time.Minute):
				c.t.Errorf("the container did not power off within a minute: killing it; console:\n%s", c.consoleText())
			}
		} else {
			c.t.Errorf("systemctl poweroff: %v\n%s", err, out)
		}
	}
	// SIGKILL to a PID namespace's init kills every process in it; the
	// first stage's death kills the init too (Pdeathsig).
	if c.pid != 0 {
		syscall.Kill(c.pid, syscall.SIGKILL)
	}
	c.stage.Kill()
	select {
	case <-c.exited:
	case <-time.After(time.Minute):
		c.t.Errorf("the container's stages did not exit within a minute of SIGKILL")
	}
}

// mounts are the mounts of the test's mount namespace.
func mounts(t *testing.T) []builder.Mount {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := builder.ParseMountinfo(f)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// binfmtMounts lists the test's binfmt_misc mounts.
func binfmtMounts(t *testing.T) []string {
	t.Helper()
	var points []string
	for _, m := range mounts(t) {
		if m.FSType == "binfmt_misc" {
			points = append(points, m.Point)
		}
	}
	return points
}

// leftPrefix starts the names of the container's cgroup and directory;
// the test's PID follows, so that a later run can tell those of a test
// that was killed before its cleanup (SIGKILL, a crash) and remove them.
const leftPrefix = "mabd-debtest-"

// leftBehind returns the paths matching dir/leftPrefix<pid>[-…] whose pid
// is not a live process.
func leftBehind(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, leftPrefix+"*"))
	var dead []string
	for _, p := range m {
		s := strings.TrimPrefix(filepath.Base(p), leftPrefix)
		s, _, _ = strings.Cut(s, "-")
		pid, err := strconv.Atoi(s)
		if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			dead = append(dead, p)
		}
	}
	return dead
}

// makeDir creates the container's directory in os.TempDir(), after
// removing those that killed runs left behind (the mounts on them lived
// in the stages' mount namespace and died with it).
func makeDir(t *testing.T) string {
	t.Helper()
	for _, d := range leftBehind(os.TempDir()) {
		t.Logf("removing %s, left by an earlier run", d)
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("remove %s: %v", d, err)
		}
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", leftPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the container's directory: %v", err)
		}
	})
	return dir
}

// makeCgroup creates the container's cgroup below the test's own in the
// cgroup2 hierarchy, after removing those that killed runs left behind.
func makeCgroup(t *testing.T) string {
	t.Helper()
	mnt := cgroup2Mount(t)
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var own string
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			own = p
		}
	}
	if own == "" {
		t.Fatalf("/proc/self/cgroup has no cgroup2 line:\n%s", b)
	}
	parent := filepath.Join(mnt, own)
	for _, s := range leftBehind(parent) {
		t.Logf("removing %s, left by an earlier run", s)
		removeCgroup(t, s)
	}
	cg := filepath.Join(parent, fmt.Sprintf("%s%d", leftPrefix, os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("create the container's cgroup: %v", err)
	}
	return cg
}

// cgroup2Mount is where the host mounts cgroup2: /sys/fs/cgroup on a
// unified host, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	for _, m := range mounts(t) {
		if m.FSType == "cgroup2" {
			return m.Point
		}
	}
	t.Fatal("no cgroup2 file system is mounted: systemd in the container needs one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
	return ""
}

// removeCgroup kills what is left in a cgroup and removes it with its
// descendants.
func removeCgroup(t *testing.T, cg string) {
	t.Helper()
	if _, err := os.Stat(cg); errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0); err != nil {
		t.Errorf("cgroup.kill %s: %v", cg, err)
	}
	var dirs []string
	filepath.WalkDir(cg, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(30 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- { // children first
		for {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				t.Errorf("remove cgroup %s: %v (processes: %q)", dirs[i], err, procs)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// devNodes describes the owner and mode of the host's device nodes that
// the container binds in: the container must leave them as they were.
func devNodes(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		fi, err := os.Stat("/dev/" + n)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d; ", n, fi.Mode(), st.Uid, st.Gid)
	}
	return b.String()
}
