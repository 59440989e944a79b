package userns

// The child side: the re-executed binary sets the namespaces up and runs
// the program.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
)

// envChild marks a process started by [Start]; its value is the JSON
// childConfig. [MaybeRunChild] reads and removes it, so the program never
// sees it.
const envChild = "MABD_USERNS_CHILD"

// childArg is the re-executed binary's argv[1] (unless it is the program
// itself). Only [MaybeRunChild] looks at the environment marker; a binary
// that forgot to call it and parses its command line sees an unknown
// command rather than running anything.
const childArg = "__mabd-userns-child"

// readyMark is what the child writes on the status pipe when the program
// runs, or is about to be executed.
const readyMark = "ready\n"

// exitFailed is the exit status of a child that reported a failure.
const exitFailed = 125

// initialUserNS is readlink /proc/self/ns/user in the initial user
// namespace (PROC_USER_INIT_INO). Its uid_map does not tell it apart: a
// namespace that maps every id to itself has the same one.
const initialUserNS = "user:[4026531837]"

// childConfig is what Start tells the child.
type childConfig struct {
	Handlers []binfmt.Spec
	Mount    string // absolute
	PID      bool
	AsCaller bool
	Self     bool     // the program is this binary: return from MaybeRunChild
	Path     string   // the program
	Args     []string // its argv
	Extra    int      // the caller's ExtraFiles: fds 3 to 3+Extra-1
	StatusFD int      // the write end of the status pipe
	MapsFD   int      // with Subordinate: a pipe to read one byte from once the id maps are written
	UserNS   string   // readlink /proc/self/ns/user of the caller
	MntNS    string   // readlink /proc/self/ns/mnt of the caller

	// With AsCaller: the caller's effective ids, and the ids they have in
	// the first namespace.
	CallerUID, CallerGID int
	InnerUID, InnerGID   int
}

// MaybeRunChild turns the process into the first process of new
// namespaces made by [Start] when it is one: it sets up the private
// binfmt_misc instance and executes the program, or runs it and exits with
// its status ([Spec.AsCaller]); it never returns then, unless the program
// is this binary itself (Start's cmd.Path is /proc/self/exe), which it
// lets run once the setup is done. Otherwise it returns at once, having
// done nothing but read one environment variable.
//
// A binary whose processes call Start must call MaybeRunChild first thing,
// before it parses its command line or starts other work: from an init
// function of the main package, or of a _test.go file in a test binary. A
// failure of the setup is reported to Start, which returns it; the process
// then exits with status 125.
func MaybeRunChild() {
	raw, ok := os.LookupEnv(envChild)
	if !ok {
		return
	}
	os.Unsetenv(envChild)
	if code, exit := runChild(raw); exit {
		os.Exit(code)
	}
}

// runChild is the child: it returns the status to exit with, or exit
// false when the process goes on as the program.
func runChild(raw string) (code int, exit bool) {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil || cfg.StatusFD < 3 {
		fmt.Fprintf(os.Stderr, "userns: %s is set but holds no child configuration (%v)\n", envChild, err)
		return exitFailed, true
	}
	var st unix.Stat_t
	if err := unix.Fstat(cfg.StatusFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		fmt.Fprintf(os.Stderr, "userns: %s is set but this process was not started by userns.Start (no status pipe on fd %d)\n", envChild, cfg.StatusFD)
		return exitFailed, true
	}
	syscall.CloseOnExec(cfg.StatusFD)
	status := os.NewFile(uintptr(cfg.StatusFD), "userns status")
	fail := func(err error) (int, bool) {
		if _, werr := status.Write(encodeReport(err)); werr != nil {
			fmt.Fprintln(os.Stderr, "userns:", err)
		}
		status.Close()
		return exitFailed, true
	}

	if cfg.MapsFD > 0 {
		// newuidmap and newgidmap write this namespace's maps now;
		// until then this process is nobody in it, and it lost its
		// capabilities when it was executed as nobody. Once its uid
		// is 0 there, it executes itself again: as root of the
		// namespace, with every capability in it.
		maps := os.NewFile(uintptr(cfg.MapsFD), "userns maps")
		var b [1]byte
		_, err := maps.Read(b[:])
		maps.Close()
		if err != nil {
			return fail(fmt.Errorf("the caller did not map the new user namespace's ids: %w", err))
		}
		cfg.MapsFD = 0
		raw, err := json.Marshal(cfg)
		if err != nil {
			return fail(err)
		}
		if _, err := unix.FcntlInt(uintptr(cfg.StatusFD), unix.F_SETFD, 0); err != nil {
			return fail(err)
		}
		env := append(environWithout(os.Environ(), envChild), envChild+"="+string(raw))
		err = syscall.Exec("/proc/self/exe", os.Args, env)
		return fail(fmt.Errorf("execute this program again as root of the new user namespace: %w", err))
	}
	if err := setup(cfg); err != nil {
		return fail(err)
	}
	switch {
	case cfg.Self:
		status.WriteString(readyMark)
		status.Close()
		return 0, false
	case cfg.AsCaller:
		return runAsCaller(cfg, status, fail)
	}
	status.WriteString(readyMark)
	err := syscall.Exec(cfg.Path, cfg.Args, os.Environ())
	return fail(startError(cfg.Args, err))
}

// runAsCaller runs the program in a nested user namespace that maps the
// caller's ids back onto theirs in this one, and waits for it.
func runAsCaller(cfg childConfig, status *os.File, fail func(error) (int, bool)) (int, bool) {
	var extra []*os.File
	for i := range cfg.Extra {
		extra = append(extra, os.NewFile(uintptr(3+i), "extra"))
	}
	cmd := &exec.Cmd{
		Path:       cfg.Path,
		Args:       cfg.Args,
		Env:        os.Environ(),
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: cfg.CallerUID, HostID: cfg.InnerUID, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: cfg.CallerGID, HostID: cfg.InnerGID, Size: 1}},
			GidMappingsEnableSetgroups: false,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	rl := newSignalRelay()
	defer rl.stop()
	if err := startLocked(cmd); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.EPERM || errno == syscall.ENOSPC || errno == syscall.EUSERS) {
			return fail(namespaceError("start "+cfg.Args[0]+" in a nested user namespace (to run it with the caller's uid and gid)", err))
		}
		return fail(startError(cfg.Args, err))
	}
	status.WriteString(readyMark)
	status.Close()
	rl.forward(cmd.Process)
	code, err := wait(cmd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "userns:", err)
		return exitFailed, true
	}
	return code, true
}

// setup checks that this process is in namespaces of its own, makes its
// mounts private, mounts a /proc (with PID) and a private binfmt_misc
// instance on cfg.Mount, checks that the instance is new and empty and
// registers the handlers there.
func setup(cfg childConfig) error {
	userNS, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return fmt.Errorf("refusing to mount binfmt_misc: %w", err)
	}
	if userNS == initialUserNS {
		return errors.New("refusing to mount binfmt_misc: this process is in the initial user namespace")
	}
	mntNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("refusing to mount binfmt_misc: %w", err)
	}
	for _, ns := range []struct{ file, own, caller string }{
		{"/proc/self/ns/user", userNS, cfg.UserNS},
		{"/proc/self/ns/mnt", mntNS, cfg.MntNS},
	} {
		if ns.caller == "" || ns.own == ns.caller {
			return fmt.Errorf("refusing to mount binfmt_misc: %s is %q, the caller's", ns.file, ns.own)
		}
	}

	const procSys = "/proc/sys"
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return mountError(procSys, "make the mounts of the new namespace private", err)
	}
	if cfg.PID {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return mountError(procSys, "mount a /proc for the new PID namespace", err)
		}
	}
	if cfg.Mount != binfmt.DefaultDir {
		// Not DefaultDir: reading it could trigger the host's automount.
		if err := checkEmptyDir(cfg.Mount); err != nil {
			return err
		}
	}
	if err := unix.Mount("binfmt_misc", cfg.Mount, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return mountError(procSys, "mount binfmt_misc on "+cfg.Mount, err)
	}
	if err := checkInstance(cfg.Mount); err != nil {
		return err
	}
	m := binfmt.Mount{Dir: cfg.Mount}
	for _, h := range cfg.Handlers {
		if err := m.Register(h); err != nil {
			return fmt.Errorf("register %s in the private binfmt_misc instance: %w", h.Name, err)
		}
	}
	if on, err := m.Enabled(); err != nil || !on {
		return fmt.Errorf("the private binfmt_misc instance is disabled (%v)", err)
	}
	return nil
}

// checkEmptyDir returns an error unless dir is an empty directory.
func checkEmptyDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("refusing to mount binfmt_misc: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return fmt.Errorf("refusing to mount binfmt_misc on %s: %w", dir, err)
	}
	return fmt.Errorf("refusing to mount binfmt_misc on %s: it holds %s, and the mount point must be %s or an empty directory", dir, names[0], binfmt.DefaultDir)
}

// checkInstance returns an error unless dir is a binfmt_misc mount that
// holds no entries.
func checkInstance(dir string) error {
	if ok, err := binfmt.Mounted(dir); err != nil || !ok {
		return fmt.Errorf("refusing to register handlers: %s is no binfmt_misc mount after mounting one there (%v)", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read the private binfmt_misc instance: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "register status" {
		return fmt.Errorf("the binfmt_misc mounted on %s is not a new, empty instance (it holds %q); refusing to register handlers", dir, names)
	}
	return nil
}

// report is what the child writes on the status pipe when something
// failed: the error, and the fields of the typed ones.
type report struct {
	Kind    string // "unavailable", "start", or "" for any other error
	Message string // Error(), or the Err of a typed error
	Reason  Reason
	Op      string
	Sysctl  string
	Allow   string
	Errno   syscall.Errno
	Program string
}

func encodeReport(err error) []byte {
	rep := report{Message: err.Error()}
	var ue *UnavailableError
	var se *StartError
	switch {
	case errors.As(err, &ue):
		rep = report{Kind: "unavailable", Message: errString(ue.Err), Reason: ue.Reason, Op: ue.Op, Sysctl: ue.Sysctl, Allow: ue.Allow, Errno: ue.Errno}
	case errors.As(err, &se):
		rep = report{Kind: "start", Message: errString(se.Err), Program: se.Program}
		errors.As(se.Err, &rep.Errno)
	}
	b, _ := json.Marshal(rep)
	return b
}

func decodeReport(b []byte) error {
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil || rep.Message == "" {
		return fmt.Errorf("userns: the first process of the new namespaces sent a malformed report %q", b)
	}
	// An errno comes back as itself, for errors.Is.
	cause := error(errors.New(rep.Message))
	if rep.Errno != 0 && rep.Errno.Error() == rep.Message {
		cause = rep.Errno
	}
	switch rep.Kind {
	case "unavailable":
		return &UnavailableError{Reason: rep.Reason, Op: rep.Op, Sysctl: rep.Sysctl, Allow: rep.Allow, Errno: rep.Errno, Err: cause}
	case "start":
		return &StartError{Program: rep.Program, Err: cause}
	}
	return cause
}
