package userns

// The parent side: start a program in new namespaces and learn whether it
// runs there.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
)

// Spec describes the namespaces [Start] creates and the private
// binfmt_misc instance in them. Its zero value is usable: new user and
// mount namespaces in which the caller's effective uid and gid are root,
// and an empty private instance on /proc/sys/fs/binfmt_misc.
type Spec struct {
	// Handlers are registered, in this order, in the private instance
	// before the program starts. With the F flag a handler's interpreter
	// is opened then, by the new namespace's root.
	Handlers []binfmt.Spec

	// Mount is where the private instance is mounted, inside the new
	// mount namespace only: "" or binfmt.DefaultDir
	// (/proc/sys/fs/binfmt_misc, where programs look for it; the host's
	// mount there is hidden from the namespace, never changed), or else
	// an absolute path of an empty directory.
	Mount string

	// UIDMaps and GIDMaps map the ids of the new user namespace to the
	// caller's. Nil maps the caller's effective uid (gid) to 0, alone,
	// and denies setgroups, which any user may do. Anything else takes
	// root (CAP_SETUID, CAP_SETGID) and allows setgroups; [Identity]
	// maps ids to themselves, as a container of real root's would.
	UIDMaps, GIDMaps []syscall.SysProcIDMap

	// PID asks for a new PID namespace too, with a /proc of its own
	// (mounted before the instance, so an instance on
	// /proc/sys/fs/binfmt_misc is in it). The program, or with AsCaller
	// the first process, is its PID 1.
	PID bool

	// Subordinate, when set, maps the ids with newuidmap and newgidmap
	// instead of UIDMaps and GIDMaps: the user's own ids to 0 and its
	// subordinate ranges after them, which an ordinary user may have
	// (rootless). The first process waits until the maps are written.
	Subordinate *SubIDs

	// AsCaller runs the program with the caller's effective uid and gid,
	// as it is outside, and no capabilities unless the caller is root: it
	// runs in a second, nested user namespace that maps them back onto
	// the ids they have in the first (the handlers are inherited: the
	// kernel uses the nearest ancestor namespace's instance). The first
	// process then stays the program's parent, passes on SIGTERM, SIGHUP,
	// SIGUSR1 and SIGUSR2, and exits with the program's status (128+N
	// when signal N killed it). Without AsCaller the first process
	// becomes the program (it executes it in place).
	AsCaller bool
}

// Identity maps the ids 0 to size-1 to themselves; Identity(65536) is
// what a container usually has. The largest size is 4294967295 (every id
// but the invalid 4294967295).
func Identity(size int) []syscall.SysProcIDMap {
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: size}}
}

// mount returns where the instance is mounted.
func (s Spec) mount() string {
	if s.Mount == "" {
		return binfmt.DefaultDir
	}
	return s.Mount
}

// namespaces says which namespaces s creates, for messages.
func (s Spec) namespaces() string {
	if s.PID {
		return "user, mount and PID namespaces"
	}
	return "user and mount namespaces"
}

// SysProcAttr returns the attributes that start a process in the
// namespaces of spec: its clone flags and id maps, and SIGKILL as its
// parent-death signal (delivered when the thread that starts it exits:
// keep that goroutine locked to its thread while the process runs).
// [Start] uses it. A caller that sets up its namespace by other means (a
// shell script that mounts binfmt_misc itself) can use it with an
// exec.Cmd of its own, and [NamespaceError] for the error of its Start.
func SysProcAttr(spec Spec) *syscall.SysProcAttr {
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS)
	if spec.PID {
		flags |= syscall.CLONE_NEWPID
	}
	attr := &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: spec.UIDMaps,
		GidMappings: spec.GIDMaps,
		Pdeathsig:   syscall.SIGKILL,
	}
	if spec.Subordinate != nil {
		// newuidmap and newgidmap write the maps once it runs.
		attr.UidMappings, attr.GidMappings = nil, nil
		return attr
	}
	if attr.UidMappings == nil {
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
	}
	if attr.GidMappings == nil {
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	} else {
		attr.GidMappingsEnableSetgroups = true
	}
	return attr
}

// NamespaceError explains err, the error of starting a process with
// [SysProcAttr](spec): an [*UnavailableError] when the kernel's errno says
// why the namespaces are not available (refused, a limit reached, not
// supported), err wrapped with what was tried otherwise.
func NamespaceError(spec Spec, err error) error {
	return namespaceError("create "+spec.namespaces(), err)
}

// StartError says that the program could not be executed in the
// namespaces: not found, not executable, not a format the kernel or a
// handler knows. Err is the errno, as execve(2) returned it.
type StartError struct {
	Program string // the program, as its caller named it (argv[0])
	Err     error
}

// Error reads as a shell says it: "./prog: permission denied".
func (e *StartError) Error() string { return e.Program + ": " + errString(e.Err) }

// Unwrap returns the errno.
func (e *StartError) Unwrap() error { return e.Err }

// Start starts cmd's program in new namespaces with a private binfmt_misc
// instance, as spec describes, and returns once it runs there: the
// namespaces made, the instance mounted and checked, the handlers
// registered, the program executed. The caller then waits for it with
// cmd.Wait, as for any started command.
//
// Start takes cmd over: the process it starts is this binary
// (/proc/self/exe), whose [MaybeRunChild] does the setup and then
// executes cmd.Path with cmd.Args. So cmd's Path, Args, Env (a marker is
// added) and SysProcAttr (see [SysProcAttr]) are changed; Dir, Stdin,
// Stdout, Stderr, ExtraFiles, WaitDelay and a context's cancellation work
// as usual. A SysProcAttr the caller set keeps its other fields (Setpgid,
// Setsid, …), but may not set Credential, Chroot or id maps. When
// cmd.Path is /proc/self/exe, the program is the re-executed binary
// itself: its MaybeRunChild returns after the setup instead of executing
// it again.
//
// Start first checks the host ([CheckHost]). Its errors: a
// [*KernelTooOldError] or [*UnavailableError] when the host or its
// policies give no private instance, a [*StartError] when the program
// could not be executed, and errors that say what else went wrong (a
// handler the kernel refused, a mount point that is not empty). When it
// returns an error the process, if it was started, has been waited for.
//
// The process gets SIGKILL when the thread that started it exits: Start
// keeps that thread for it until it has exited (it does not reap it).
func Start(cmd *exec.Cmd, spec Spec) error {
	if cmd.Process != nil {
		return errors.New("userns: Start: already started")
	}
	if cmd.Err != nil {
		return cmd.Err
	}
	if _, ok := os.LookupEnv(envChild); ok {
		return fmt.Errorf("userns: %s is set: this process was started by userns.Start, but its main did not call userns.MaybeRunChild first", envChild)
	}
	if cmd.Path == "" {
		return errors.New("userns: Start: no program")
	}
	args := cmd.Args
	if len(args) == 0 {
		args = []string{cmd.Path}
	}
	mount := spec.mount()
	if !filepath.IsAbs(mount) {
		return fmt.Errorf("userns: Start: the mount point %q is not an absolute path", mount)
	}
	for _, h := range spec.Handlers {
		if err := h.Validate(); err != nil {
			return err
		}
	}
	attr, err := mergeAttr(cmd.SysProcAttr, spec)
	if err != nil {
		return err
	}
	if err := CheckHost(spec); err != nil {
		return err
	}
	if spec.Subordinate != nil {
		if _, err := spec.Subordinate.tools(); err != nil {
			return err
		}
	}

	cfg := childConfig{
		Handlers: spec.Handlers,
		Mount:    mount,
		PID:      spec.PID,
		AsCaller: spec.AsCaller,
		Self:     cmd.Path == "/proc/self/exe" && !spec.AsCaller,
		Path:     cmd.Path,
		Args:     args,
		Extra:    len(cmd.ExtraFiles),
		StatusFD: 3 + len(cmd.ExtraFiles),
	}
	if spec.Subordinate != nil {
		cfg.MapsFD = cfg.StatusFD + 1
	}
	if cfg.UserNS, err = os.Readlink("/proc/self/ns/user"); err != nil {
		return err
	}
	if cfg.MntNS, err = os.Readlink("/proc/self/ns/mnt"); err != nil {
		return err
	}
	if spec.AsCaller {
		cfg.CallerUID, cfg.CallerGID = os.Geteuid(), os.Getegid()
		var ok1, ok2 bool
		cfg.InnerUID, ok1 = inside(attr.UidMappings, cfg.CallerUID)
		cfg.InnerGID, ok2 = inside(attr.GidMappings, cfg.CallerGID)
		if !ok1 || !ok2 {
			return fmt.Errorf("userns: Start: the id maps do not map the caller's uid %d and gid %d, which AsCaller runs the program with", cfg.CallerUID, cfg.CallerGID)
		}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()

	extra := cmd.ExtraFiles
	childArgs := []string{args[0], childArg}
	if cfg.Self {
		childArgs = args
	}
	cmd.Path, cmd.Args = "/proc/self/exe", childArgs
	cmd.Env = append(environWithout(cmd.Environ(), envChild), envChild+"="+string(raw))
	cmd.ExtraFiles = append(append([]*os.File(nil), extra...), w)
	var mapsR, mapsW *os.File
	if spec.Subordinate != nil {
		if mapsR, mapsW, err = os.Pipe(); err != nil {
			w.Close()
			return err
		}
		defer mapsW.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, mapsR)
	}
	cmd.SysProcAttr = attr
	err = startLocked(cmd)
	w.Close()
	if mapsR != nil {
		mapsR.Close()
	}
	cmd.ExtraFiles = extra
	if err != nil {
		return NamespaceError(spec, err)
	}
	if spec.Subordinate != nil {
		// The first process waits for its ids: map them, then let it go.
		if err := spec.Subordinate.writeMaps(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("map %s's ids into the new user namespace: %w", spec.Subordinate.User, err)
		}
		if _, err := mapsW.Write([]byte{1}); err != nil {
			return fmt.Errorf("userns: the first process of the new namespaces ended before its ids were mapped: %w", err)
		}
	}

	// The child writes ready when the program runs (or is about to be
	// executed), a report when something failed; the pipe closes when
	// the program is executed or the child exits.
	status, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	report, ran := strings.CutPrefix(string(status), readyMark)
	if ran && report == "" {
		return nil
	}
	werr := cmd.Wait()
	if report == "" {
		if werr == nil {
			werr = errors.New("exit status 0")
		}
		return fmt.Errorf("userns: the first process of the new namespaces ended before the program started: %w", werr)
	}
	return decodeReport([]byte(report))
}

// startLocked starts cmd from a goroutine locked to its OS thread, which
// stays locked until the process has exited: its parent-death signal is
// tied to that thread.
func startLocked(cmd *exec.Cmd) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		// Opened before Start returns, so before anyone can reap the
		// process and its pid be reused.
		fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
		started <- nil
		if err != nil {
			return
		}
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				return
			}
		}
	}()
	return <-started
}

// inside returns the id that id (the caller's) has in a namespace with
// the maps m.
func inside(m []syscall.SysProcIDMap, id int) (int, bool) {
	for _, e := range m {
		if id >= e.HostID && id-e.HostID < e.Size {
			return e.ContainerID + id - e.HostID, true
		}
	}
	return 0, false
}

// mergeAttr returns the SysProcAttr that Start gives the process: the
// caller's, if any, with the namespaces' fields of spec.
func mergeAttr(own *syscall.SysProcAttr, spec Spec) (*syscall.SysProcAttr, error) {
	attr := SysProcAttr(spec)
	if own == nil {
		return attr, nil
	}
	if own.Credential != nil || own.Chroot != "" || own.UidMappings != nil || own.GidMappings != nil {
		return nil, errors.New("userns: Start: the command's SysProcAttr sets Credential, Chroot or id maps (give id maps in the Spec)")
	}
	merged := *own
	merged.Cloneflags |= attr.Cloneflags
	merged.UidMappings, merged.GidMappings = attr.UidMappings, attr.GidMappings
	merged.GidMappingsEnableSetgroups = attr.GidMappingsEnableSetgroups
	if merged.Pdeathsig == 0 {
		merged.Pdeathsig = attr.Pdeathsig
	}
	return &merged, nil
}

// Run starts cmd as [Start] does and waits for it, passing on to it the
// SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 this process gets; SIGINT and
// SIGQUIT are caught but not passed on (typed at a terminal they reach
// the whole foreground process group, the program included). Signals
// ignored when this process started stay ignored. It returns the
// program's exit status, 128+N when signal N killed it (or killed the
// first process before the program started), and a nil error; or Start's
// error when the program did not run.
//
// A nil spec runs cmd as it is, in the caller's namespaces, with the same
// signals and status: what a caller that emulates some programs does for
// those it does not need to. An error then is a [*StartError].
func Run(cmd *exec.Cmd, spec *Spec) (int, error) {
	rl := newSignalRelay()
	defer rl.stop()
	var err error
	if spec != nil {
		err = Start(cmd, *spec)
	} else if err = cmd.Start(); err != nil {
		err = startError(cmd.Args, err)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// Killed before the program started (SIGINT typed while
			// the namespaces were set up): as if the program had been.
			return 128 + int(ws.Signal()), nil
		}
	}
	if err != nil {
		return -1, err
	}
	rl.forward(cmd.Process)
	return wait(cmd)
}

// wait waits for cmd and returns its status as a shell reports it.
func wait(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	if cmd.ProcessState == nil {
		return -1, fmt.Errorf("wait for %s: %w", cmd.Path, err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// startError makes a *StartError of an error of exec.Cmd.Start or execve.
func startError(args []string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	name := ""
	if len(args) > 0 {
		name = args[0]
	}
	return &StartError{Program: name, Err: err}
}

// relayedSignals are caught while a child runs; all but SIGINT and SIGQUIT
// are passed on to it (see [Run]).
var relayedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGQUIT}

// signalRelay passes signals the process receives on to a child process.
type signalRelay struct {
	ch   chan os.Signal
	done chan struct{}
}

// newSignalRelay starts catching relayedSignals (those not ignored at
// start-up: a child inherits an ignored signal as ignored, a caught one as
// default).
func newSignalRelay() *signalRelay {
	rl := &signalRelay{ch: make(chan os.Signal, 8), done: make(chan struct{})}
	var sigs []os.Signal
	for _, s := range relayedSignals {
		if !signal.Ignored(s) {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) > 0 {
		signal.Notify(rl.ch, sigs...)
	}
	return rl
}

// forward passes the caught signals, those caught before included, to p
// until stop.
func (rl *signalRelay) forward(p *os.Process) {
	go func() {
		for {
			select {
			case s := <-rl.ch:
				if s != syscall.SIGINT && s != syscall.SIGQUIT {
					_ = p.Signal(s)
				}
			case <-rl.done:
				return
			}
		}
	}()
}

func (rl *signalRelay) stop() {
	signal.Stop(rl.ch)
	close(rl.done)
}

// environWithout returns env without the variable name.
func environWithout(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
