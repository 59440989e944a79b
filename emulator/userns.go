package emulator

// Private user-namespace sandboxes: run one foreign program through a
// binfmt_misc handler that only that program (and what it starts) sees,
// without root and without touching the host's binfmt_misc table.

import (
	"context"
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
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
)

// Exit statuses of [Sandbox.Run] that are not the program's own. They are
// the ones env(1), chroot(1) and `docker run` use, so that a caller can tell
// them from the program's usual small codes.
const (
	// ExitSetup: the sandbox could not be set up (bad usage, unknown
	// platform, no usable emulator, kernel too old, namespaces refused,
	// binfmt_misc missing); the program did not run.
	ExitSetup = 125
	// ExitCannotRun: the program was found but could not be executed
	// (not executable, a directory, an unknown file format).
	ExitCannotRun = 126
	// ExitNotFound: the program was not found.
	ExitNotFound = 127
)

// MinKernelMajor and MinKernelMinor are the first Linux release (6.7) in
// which binfmt_misc is per user namespace: before it, a user namespace can
// neither mount binfmt_misc nor have handlers of its own.
const (
	MinKernelMajor = 6
	MinKernelMinor = 7
)

// envExecChild marks a process re-executed by [Sandbox.Run] as the sandbox
// helper; its value is the JSON execChildSpec. [MaybeRunExecChild] reads and
// removes it, so the program run in the sandbox never sees it.
const envExecChild = "MABD_EXEC_CHILD"

// helperArg is the helper's argv[1]. Only [MaybeRunExecChild] looks at the
// environment marker; a binary that forgot to call it and parses its command
// line sees an unknown command rather than running anything.
const helperArg = "__mabd-exec-helper"

// statusFD is the file descriptor on which the helper reports a setup
// failure to the parent (the write end of a pipe, ExtraFiles[0]).
const statusFD = 3

// SandboxError is a failure of [Sandbox.Run] or [NewSandbox] before the
// program started. Code is the exit status a command-line tool should exit
// with: [ExitSetup], [ExitCannotRun] or [ExitNotFound].
type SandboxError struct {
	Code int
	Err  error
}

func (e *SandboxError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *SandboxError) Unwrap() error { return e.Err }

func sandboxSetupError(err error) error { return &SandboxError{Code: ExitSetup, Err: err} }

// KernelTooOldError says that the running kernel predates per-user-namespace
// binfmt_misc (Linux 6.7).
type KernelTooOldError struct {
	Release string // uname -r
}

func (e *KernelTooOldError) Error() string {
	return fmt.Sprintf("mabd exec needs Linux %d.%d or newer, where binfmt_misc is per user namespace; this kernel is %s",
		MinKernelMajor, MinKernelMinor, e.Release)
}

// Sandbox is a private binfmt_misc instance that holds one handler: the
// one that runs Arch's programs with Emulator. [Sandbox.Run] creates it
// for one program and it vanishes with that program's namespace.
//
// # How it works
//
// Since Linux 6.7 binfmt_misc is per user namespace: binfmt_misc mounted by
// a process of a new user namespace is a new, empty instance, whose handlers
// apply to the processes of that namespace and its descendants only; the
// host's table is neither read nor changed. A multithreaded Go process cannot
// enter a new user namespace itself, so Run re-executes the running binary
// (/proc/self/exe) as a helper in a new user and mount namespace, with the
// caller's effective uid and gid mapped to 0 (setgroups denied, SIGKILL
// when the parent dies). The binary must call [MaybeRunExecChild] before
// anything else (mabd does it from an init function of its main package).
// The helper, root of that namespace:
//
//  1. checks that it is in a user and a mount namespace of its own, not the
//     caller's (it refuses to go on otherwise),
//  2. makes every mount private (mount --make-rprivate /),
//  3. mounts binfmt_misc over /proc/sys/fs/binfmt_misc — in its own mount
//     namespace only: the host's mount there and the host's table are
//     neither unmounted nor changed, only hidden from the helper and the
//     program — checks that the instance is empty, and registers the
//     handler,
//  4. starts the program in a second, nested user namespace that maps the
//     caller's uid and gid back onto the helper's 0, so that the program
//     runs with the caller's own uid and gid (id -u prints what it prints
//     outside), with no capabilities unless the caller is root,
//  5. relays signals, waits, and exits with the program's status.
//
// The handler is inherited by the nested namespace (the kernel looks up the
// nearest ancestor namespace that mounted binfmt_misc), so every program of
// Arch that the program starts runs under the emulator too.
//
// # What the program sees
//
// Its stdin, stdout and stderr, environment and working directory are the
// caller's. /proc/sys/fs/binfmt_misc shows the private instance with its
// one handler, not the host's table. Inside the namespaces only the caller's uid and gid are mapped:
// files owned by anyone else show as owned by the overflow ids (nobody,
// nogroup; 65534), supplementary groups likewise, though access to them is
// still checked against the real ids. setuid and setgid programs cannot gain
// privileges, and the program cannot mount anything. It has a mount
// namespace of its own (a private copy of the caller's), so mounts made on
// the host afterwards are not seen. Its parent process is the helper, not
// the caller.
//
// Nothing is created on the host: the mount exists in the sandbox's mount
// namespace only and ends with it, so a run leaves nothing behind even when
// the caller is killed with SIGKILL (the helper and the program then get
// SIGKILL too, as their parent-death signal).
//
// # Signals
//
// SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to the caller's process are
// relayed to the helper and from it to the program. SIGINT and SIGQUIT are
// caught but not relayed: typed at a terminal they reach the whole
// foreground process group, the program included, and relaying them would
// deliver them twice. Signals ignored when the process started stay
// ignored.
type Sandbox struct {
	// Arch is the architecture the handler serves.
	Arch binfmt.Arch
	// Emulator is the interpreter the handler names; with F in Flags it
	// must be static (see [Emulator.CheckFixBinary]). Nil when Native.
	Emulator *Emulator
	// Flags are the handler's flags. [NewSandbox] sets F, plus P when the
	// emulator's version honours it (see [PreservesArgv0]).
	Flags binfmt.Flags
	// Native reports that the host runs Arch's programs itself (see
	// [binfmt.IsNative]): Run then starts the program directly, with no
	// namespace and no handler.
	Native bool
	// Warnings are what [NewSandbox] noticed but did not refuse: an
	// emulator whose --version could not be read.
	Warnings []string
}

// NewSandbox resolves what a user asked for: platform is an OCI platform, a
// QEMU name or an alias (see [LookupArch]); emulatorPath is the emulator to
// use, or "" to look for qemu-<arch>[-static] in dirs with [Find] (nil dirs
// means [DefaultDirs]). The emulator must be an ELF executable (else an
// [*UnusableError]) and statically linked, because the handler gets the F
// flag. It is run once with --version (ctx bounds that, see [Inspect]): an
// emulator whose target is another architecture is refused with a
// [*WrongTargetError]; its version decides on the P flag. When the output
// cannot be read, P is left out and the reason is in the sandbox's
// Warnings. A platform the host runs natively gives a Native sandbox,
// unless emulatorPath asks for an emulator explicitly.
//
// Every error is a [*SandboxError] with Code [ExitSetup].
func NewSandbox(ctx context.Context, platform, emulatorPath string, dirs []string) (*Sandbox, error) {
	arch, err := LookupArch(platform)
	if err != nil {
		return nil, sandboxSetupError(err)
	}
	if emulatorPath == "" && binfmt.IsNative(arch.Name) {
		return &Sandbox{Arch: arch, Native: true}, nil
	}
	var emu *Emulator
	if emulatorPath != "" {
		abs, err := filepath.Abs(emulatorPath)
		if err != nil {
			return nil, sandboxSetupError(fmt.Errorf("emulator %s: %w", emulatorPath, err))
		}
		if !isExecutableFile(abs) {
			if _, err := os.Stat(abs); err != nil {
				return nil, sandboxSetupError(fmt.Errorf("emulator %w", err))
			}
			return nil, sandboxSetupError(fmt.Errorf("emulator %s is not an executable file", abs))
		}
		static, err := IsStatic(abs)
		if err != nil {
			return nil, sandboxSetupError(&UnusableError{Arch: arch.Name, Path: abs, Err: err})
		}
		emu = &Emulator{Arch: arch.Name, Path: abs, Static: static}
	} else {
		emu, err = Find(arch.Name, dirs)
		if err != nil {
			return nil, sandboxSetupError(err)
		}
	}
	if err := emu.CheckFixBinary(); err != nil {
		return nil, sandboxSetupError(fmt.Errorf("%w (a sandbox always registers its handler with F)", err))
	}
	sb := &Sandbox{Arch: arch, Emulator: emu, Flags: binfmt.FixBinary}
	if err := emu.Inspect(ctx); err != nil {
		var wt *WrongTargetError
		if errors.As(err, &wt) {
			return nil, sandboxSetupError(err)
		}
		sb.Warnings = append(sb.Warnings, fmt.Sprintf("%v: its architecture is not checked and the handler has no P flag", err))
	}
	if PreservesArgv0(emu.Version) {
		sb.Flags |= binfmt.PreserveArgv0
	}
	return sb, nil
}

// Spec returns the handler the sandbox registers: qemu-<arch>, the table's
// magic and mask, the emulator's path and s.Flags. It is the zero Spec for
// a Native sandbox.
func (s *Sandbox) Spec() binfmt.Spec {
	if s.Native || s.Emulator == nil {
		return binfmt.Spec{}
	}
	return s.Arch.Spec(s.Emulator.Path, s.Flags)
}

// SandboxCommand is a program for [Sandbox.Run] to run.
type SandboxCommand struct {
	// Args is the program and its arguments. Args[0] is looked up like a
	// shell does: a name without a slash in $PATH (an entry of "." or ""
	// included), anything else relative to the working directory.
	Args []string
	// Stdin, Stdout and Stderr are the program's standard files; nil means
	// the calling process's own. Files (such as os.Stdin) are handed to the
	// program as they are; anything else goes through a pipe.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Run runs c in the sandbox (see [Sandbox]) and waits for it. It returns
// the program's exit status, 128+N when signal N killed it, and a nil
// error. When the program could not be started at all it returns a
// [*SandboxError] and its Code: [ExitNotFound] when Args[0] is not found,
// [ExitCannotRun] when it cannot be executed, [ExitSetup] when the sandbox
// could not be set up; the error says why and, for a disabled or missing
// kernel feature, how to fix it.
//
// Run checks first, in the calling process, that the kernel is 6.7 or newer
// ([KernelTooOldError]) and that no sysctl disables user or mount
// namespaces. It keeps the calling goroutine on its OS thread while the
// program runs (the helper's parent-death signal is tied to that thread).
func (s *Sandbox) Run(c SandboxCommand) (int, error) {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return ExitSetup, sandboxSetupError(errors.New("no command given"))
	}
	if _, ok := os.LookupEnv(envExecChild); ok {
		return ExitSetup, sandboxSetupError(fmt.Errorf("%s is set: this process is a sandbox helper whose main did not call emulator.MaybeRunExecChild first", envExecChild))
	}
	path, err := sandboxLookPath(c.Args[0])
	if err != nil {
		return sandboxCode(err), err
	}
	if s.Native {
		code, err := runRelayed(&exec.Cmd{Path: path, Args: c.Args, Stdin: stdinOr(c.Stdin), Stdout: stdoutOr(c.Stdout), Stderr: stderrOr(c.Stderr)}, nil)
		if err != nil {
			return code, &SandboxError{Code: code, Err: sandboxStartError(c.Args[0], err)}
		}
		return code, nil
	}
	if s.Emulator == nil {
		return ExitSetup, sandboxSetupError(errors.New("sandbox: no emulator"))
	}
	spec := s.Spec()
	if err := spec.Validate(); err != nil {
		return ExitSetup, sandboxSetupError(err)
	}
	if spec.Flags.Has(binfmt.FixBinary) {
		if err := s.Emulator.CheckFixBinary(); err != nil {
			return ExitSetup, sandboxSetupError(err)
		}
	}
	if err := CheckUserNS(); err != nil {
		return ExitSetup, sandboxSetupError(err)
	}

	userNS, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return ExitSetup, sandboxSetupError(err)
	}
	mntNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return ExitSetup, sandboxSetupError(err)
	}
	child := execChildSpec{
		Spec:   spec,
		Path:   path,
		Args:   c.Args,
		UID:    os.Geteuid(),
		GID:    os.Getegid(),
		UserNS: userNS,
		MntNS:  mntNS,
	}
	raw, err := json.Marshal(child)
	if err != nil {
		return ExitSetup, sandboxSetupError(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return ExitSetup, sandboxSetupError(err)
	}
	defer r.Close()

	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{os.Args[0], helperArg},
		Env:        append(environWithout(envExecChild), envExecChild+"="+string(raw)),
		Stdin:      stdinOr(c.Stdin),
		Stdout:     stdoutOr(c.Stdout),
		Stderr:     stderrOr(c.Stderr),
		ExtraFiles: []*os.File{w},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: child.UID, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: child.GID, Size: 1}},
			GidMappingsEnableSetgroups: false,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	var report []byte
	code, err := runRelayed(cmd, func() {
		w.Close()
		// The helper closes its end once the program has started, or
		// exits; either way this returns.
		report, _ = io.ReadAll(io.LimitReader(r, 64<<10))
	})
	w.Close()
	if err != nil {
		return ExitSetup, sandboxSetupError(sandboxNamespaceError(err))
	}
	if len(report) > 0 {
		var rep execReport
		if jerr := json.Unmarshal(report, &rep); jerr != nil || rep.Code == 0 {
			return ExitSetup, sandboxSetupError(fmt.Errorf("the sandbox helper sent a malformed report %q", report))
		}
		return rep.Code, &SandboxError{Code: rep.Code, Err: errors.New(rep.Message)}
	}
	return code, nil
}

// runRelayed starts cmd with the calling goroutine locked to its thread,
// calls started (if not nil) once it runs, relays signals to it (see
// [Sandbox]) and returns its exit status, 128+N for a death by signal N.
// The error is cmd.Start's.
func runRelayed(cmd *exec.Cmd, started func()) (int, error) {
	// Pdeathsig fires when the thread that started the child exits.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rl := newSignalRelay()
	defer rl.stop()
	if err := cmd.Start(); err != nil {
		return sandboxStartCode(err), err
	}
	rl.forward(cmd.Process)
	if started != nil {
		started()
	}
	err := cmd.Wait()
	if cmd.ProcessState == nil {
		return ExitSetup, fmt.Errorf("wait for %s: %w", cmd.Path, err)
	}
	return shellExitStatus(cmd.ProcessState), nil
}

// shellExitStatus is what a shell reports for a finished process: its exit
// code, or 128+N when signal N killed it.
func shellExitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// relayedSignals are caught while a child runs; all but SIGINT and SIGQUIT
// are passed on to it (see [Sandbox]).
var relayedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGQUIT}

// signalRelay passes signals the process receives on to a child process.
type signalRelay struct {
	ch   chan os.Signal
	done chan struct{}
}

// newSignalRelay starts catching relayedSignals (those not ignored at start-up:
// a child inherits an ignored signal as ignored, a caught one as default).
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

// sandboxLookPath resolves a command name as a shell would and makes it absolute.
// Errors are [*SandboxError]s with Code [ExitNotFound] or [ExitCannotRun].
func sandboxLookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		err = nil // found through "." in $PATH: a shell runs it, so do we
	}
	if err != nil {
		code := ExitCannotRun
		var ee *exec.Error
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = ExitNotFound
		}
		if errors.As(err, &ee) && ee.Err != nil {
			err = ee.Err
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if code == ExitNotFound && !strings.Contains(name, "/") {
			return "", &SandboxError{Code: code, Err: fmt.Errorf("%s: command not found in $PATH", name)}
		}
		return "", &SandboxError{Code: code, Err: fmt.Errorf("%s: %w", name, err)}
	}
	if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
		return "", &SandboxError{Code: ExitCannotRun, Err: fmt.Errorf("%s: is a directory", name)}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", &SandboxError{Code: ExitCannotRun, Err: fmt.Errorf("%s: %w", name, err)}
	}
	return abs, nil
}

// sandboxCode returns the Code of a *SandboxError, ExitSetup otherwise.
func sandboxCode(err error) int {
	var se *SandboxError
	if errors.As(err, &se) {
		return se.Code
	}
	return ExitSetup
}

// sandboxStartCode classifies an error of exec.Cmd.Start: the program's
// file missing, not executable or of an unknown format, or else a failure
// to create the process (namespaces refused, limits).
func sandboxStartCode(err error) int {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return ExitSetup
	}
	switch errno {
	case syscall.ENOENT:
		return ExitNotFound
	case syscall.EACCES, syscall.ENOEXEC, syscall.EISDIR, syscall.ENOTDIR, syscall.ELOOP, syscall.ETXTBSY, syscall.E2BIG, syscall.ENAMETOOLONG:
		return ExitCannotRun
	}
	return ExitSetup
}

// sandboxNamespaceError explains an error from starting a process in new
// namespaces.
func sandboxNamespaceError(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("start the sandbox helper in new user and mount namespaces: %w", err)
	}
	var fix string
	switch errno {
	case syscall.EPERM, syscall.EACCES:
		fix = "user namespaces are not allowed for this process: check sysctl kernel.unprivileged_userns_clone (Debian and older Ubuntu kernels; `sysctl -w kernel.unprivileged_userns_clone=1`), AppArmor's kernel.apparmor_restrict_unprivileged_userns (Ubuntu 23.10 and later), and the seccomp profile of a container mabd runs in"
	case syscall.ENOSPC, syscall.EUSERS:
		fix = "a namespace limit is reached: raise `sysctl -w user.max_user_namespaces=10000` and user.max_mnt_namespaces, or end other namespaces of this user"
	case syscall.EINVAL:
		fix = "the kernel does not support user namespaces (CONFIG_USER_NS)"
	default:
		fix = "the kernel refused to create the namespaces"
	}
	return fmt.Errorf("start the sandbox helper in new user and mount namespaces: %w (%s): %s", err, sandboxErrnoName(errno), fix)
}

func sandboxErrnoName(errno syscall.Errno) string {
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return "errno " + strconv.Itoa(int(errno))
}

// CheckUserNS reports, without side effects, whether this host can give an
// unprivileged process a private binfmt_misc instance: nil, a
// [*KernelTooOldError] for a kernel older than 6.7, or an error naming the
// sysctl that disables user or mount namespaces and the command that
// enables them. Some refusals only show when a namespace is created (an
// AppArmor or seccomp policy, a namespace limit, the binfmt_misc file system
// missing); [Sandbox.Run] explains those when they happen.
func CheckUserNS() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	if err := checkKernelRelease(unix.ByteSliceToString(uts.Release[:])); err != nil {
		return err
	}
	return checkSysctls("/proc/sys", os.Geteuid())
}

// checkSysctls returns an error when a sysctl under procSys (/proc/sys)
// disables the namespaces an unprivileged process with effective uid euid
// needs.
func checkSysctls(procSys string, euid int) error {
	for _, s := range []struct{ file, name string }{
		{"user/max_user_namespaces", "user.max_user_namespaces"},
		{"user/max_mnt_namespaces", "user.max_mnt_namespaces"},
	} {
		p := filepath.Join(procSys, s.file)
		if n, ok := readSysctlInt(p); ok && n == 0 {
			return fmt.Errorf("user namespaces are disabled: %s is 0; enable them (as root) with `sysctl -w %s=10000`", p, s.name)
		}
	}
	unprivClone := filepath.Join(procSys, "kernel/unprivileged_userns_clone")
	if n, ok := readSysctlInt(unprivClone); ok && n == 0 && euid != 0 {
		return fmt.Errorf("unprivileged user namespaces are disabled: %s is 0; enable them (as root) with `sysctl -w kernel.unprivileged_userns_clone=1`, or run mabd exec as root", unprivClone)
	}
	return nil
}

// checkKernelRelease returns a *KernelTooOldError for a release older than 6.7.
// A release it cannot parse passes: the mount fails later if it must.
func checkKernelRelease(release string) error {
	major, minor, ok := parseKernelRelease(release)
	if ok && (major < MinKernelMajor || major == MinKernelMajor && minor < MinKernelMinor) {
		return &KernelTooOldError{Release: release}
	}
	return nil
}

// parseKernelRelease parses the major and minor number of a kernel release such
// as "6.7.0-1-amd64".
func parseKernelRelease(release string) (major, minor int, ok bool) {
	fields := strings.SplitN(release, ".", 3)
	if len(fields) < 2 {
		return 0, 0, false
	}
	num := func(s string) (int, bool) {
		if end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
			s = s[:end]
		}
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	major, ok1 := num(fields[0])
	minor, ok2 := num(fields[1])
	return major, minor, ok1 && ok2
}

// readSysctlInt reads a sysctl file holding one integer.
func readSysctlInt(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

func stdinOr(r io.Reader) io.Reader {
	if r == nil {
		return os.Stdin
	}
	return r
}

func stdoutOr(w io.Writer) io.Writer {
	if w == nil {
		return os.Stdout
	}
	return w
}

func stderrOr(w io.Writer) io.Writer {
	if w == nil {
		return os.Stderr
	}
	return w
}

// environWithout returns the environment without the variable name.
func environWithout(name string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, name+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// execChildSpec is what [Sandbox.Run] tells the helper.
type execChildSpec struct {
	Spec   binfmt.Spec // the one handler to register
	Path   string      // absolute path of the program
	Args   []string    // its argv
	UID    int         // the caller's effective uid, for the nested namespace
	GID    int         // the caller's effective gid
	UserNS string      // readlink /proc/self/ns/user of the caller
	MntNS  string      // readlink /proc/self/ns/mnt of the caller
}

// execReport is what the helper writes to statusFD when the program could
// not be started.
type execReport struct {
	Code    int
	Message string
}

// MaybeRunExecChild turns the process into the helper of a [Sandbox.Run]
// when it is one: if the environment marks it so, it sets up the private
// binfmt_misc instance, runs the program and exits with its status; it
// never returns then. Otherwise it returns at once, having done nothing
// but read one environment variable.
//
// A binary that calls [Sandbox.Run] must call MaybeRunExecChild first
// thing, before it parses its command line or starts other work (an init
// function of the main package, or the start of main). Test binaries that
// call Run in-process do it from an init function of a _test.go file.
func MaybeRunExecChild() {
	raw, ok := os.LookupEnv(envExecChild)
	if !ok {
		return
	}
	os.Unsetenv(envExecChild)
	os.Exit(runExecChild(raw))
}

// runExecChild is the helper: it returns the status to exit with.
func runExecChild(raw string) int {
	var st unix.Stat_t
	if err := unix.Fstat(statusFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		fmt.Fprintf(os.Stderr, "mabd: %s is set but this process was not started by a sandbox run (no status pipe on fd %d)\n", envExecChild, statusFD)
		return ExitSetup
	}
	syscall.CloseOnExec(statusFD)
	status := os.NewFile(statusFD, "sandbox status")
	fail := func(code int, err error) int {
		b, _ := json.Marshal(execReport{Code: code, Message: err.Error()})
		if _, werr := status.Write(b); werr != nil {
			fmt.Fprintln(os.Stderr, "mabd:", err)
		}
		status.Close()
		return code
	}

	var spec execChildSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fail(ExitSetup, fmt.Errorf("sandbox helper: decode %s: %w", envExecChild, err))
	}
	if err := setupInstance(spec); err != nil {
		return fail(ExitSetup, err)
	}

	cmd := &exec.Cmd{
		Path:   spec.Path,
		Args:   spec.Args,
		Env:    os.Environ(),
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: spec.UID, HostID: 0, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: spec.GID, HostID: 0, Size: 1}},
			GidMappingsEnableSetgroups: false,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	code, err := runRelayed(cmd, func() { status.Close() })
	if err != nil {
		if code == ExitSetup {
			var errno syscall.Errno
			if errors.As(err, &errno) && (errno == syscall.EPERM || errno == syscall.ENOSPC || errno == syscall.EUSERS) {
				err = fmt.Errorf("start %s in a nested user namespace (to run it with your uid and gid): %w (%s)", spec.Args[0], err, sandboxErrnoName(errno))
			}
			return fail(code, err)
		}
		return fail(code, sandboxStartError(spec.Args[0], err))
	}
	return code
}

// sandboxStartError words an error of exec.Cmd.Start for the program called name
// as a shell would: "name: permission denied".
func sandboxStartError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", name, err)
}

// sandboxMount is where the helper mounts the private binfmt_misc
// instance, in its own mount namespace: where programs look for it, and
// a directory that exists on every Linux host (so nothing is created, and
// nothing is left to remove).
const sandboxMount = binfmt.DefaultDir

// setupInstance checks that the helper is in namespaces of its own, makes
// its mounts private, mounts a private binfmt_misc instance over
// sandboxMount, checks it is empty and registers spec.Spec there.
func setupInstance(spec execChildSpec) error {
	for _, ns := range []struct{ file, caller string }{
		{"/proc/self/ns/user", spec.UserNS},
		{"/proc/self/ns/mnt", spec.MntNS},
	} {
		own, err := os.Readlink(ns.file)
		if err != nil {
			return fmt.Errorf("sandbox helper: refusing to mount binfmt_misc: %w", err)
		}
		if ns.caller == "" || own == ns.caller {
			return fmt.Errorf("sandbox helper: refusing to mount binfmt_misc: %s is %q, the caller's", ns.file, own)
		}
	}
	if b, err := os.ReadFile("/proc/self/uid_map"); err != nil || strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295" {
		return fmt.Errorf("sandbox helper: refusing to mount binfmt_misc: this process is in the initial user namespace (%v)", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts of the new namespace private: %w%s", err, sandboxMountHint(err))
	}
	if err := unix.Mount("binfmt_misc", sandboxMount, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		switch {
		case errors.Is(err, syscall.ENODEV):
			return fmt.Errorf("mount binfmt_misc on %s: %w: this kernel has no binfmt_misc file system; load it (as root) with `modprobe binfmt_misc`", sandboxMount, err)
		case errors.Is(err, syscall.EPERM):
			return fmt.Errorf("mount binfmt_misc on %s in a user namespace: %w%s", sandboxMount, err, sandboxMountHint(err))
		}
		return fmt.Errorf("mount binfmt_misc on %s: %w", sandboxMount, err)
	}
	entries, err := os.ReadDir(sandboxMount)
	if err != nil {
		return fmt.Errorf("read the private binfmt_misc instance: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "register status" {
		return fmt.Errorf("sandbox helper: the binfmt_misc mounted on %s is not a new, empty instance (it holds %q); refusing to register", sandboxMount, names)
	}
	m := binfmt.Mount{Dir: sandboxMount}
	if err := m.Register(spec.Spec); err != nil {
		return fmt.Errorf("register %s in the private binfmt_misc instance: %w", spec.Spec.Name, err)
	}
	if on, err := m.Enabled(); err != nil || !on {
		return fmt.Errorf("the private binfmt_misc instance is disabled (%v)", err)
	}
	return nil
}

// sandboxMountHint explains an EPERM from mount in a new user namespace.
func sandboxMountHint(err error) string {
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		return ""
	}
	if n, ok := readSysctlInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && n != 0 {
		return "; AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns=1): allow mabd in an AppArmor profile, or (as root) `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
	}
	return fmt.Sprintf("; the new user namespace may not mount: binfmt_misc needs Linux %d.%d or newer to be mounted there, and an AppArmor, SELinux or seccomp policy (a container's, for one) may forbid it", MinKernelMajor, MinKernelMinor)
}
