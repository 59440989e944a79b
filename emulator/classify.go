package emulator

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
)

// Remedy is a step mabd itself can take about a failure, for the caller
// to word for its user: the CLI says which command, the daemon which
// setting. The rest of a fix (install a package, echo 1 > a file) is in
// [Result.Fix].
type Remedy string

// The remedies.
const (
	RemedyNone     Remedy = ""
	RemedyRegister Remedy = "register" // register mabd's handler for the architecture
	RemedyReplace  Remedy = "replace"  // replace the entry that holds the name with mabd's handler
)

// Describe says what the remedy does, without naming a command: ""
// for none.
func (r Remedy) Describe(arch string) string {
	switch r {
	case RemedyRegister:
		return "register mabd's handler for " + arch
	case RemedyReplace:
		return "replace the entry with mabd's handler for " + arch
	}
	return ""
}

// Every failed [Result] has a Reason that starts with one of these phrases
// (followed, for most, by ": " and the details), so that callers and tests
// can tell the cases apart, and a Fix.
const (
	// ReasonNoHandler: exec format error, and no entry of the mount
	// selects the architecture's programs. Remedy: register one.
	ReasonNoHandler = "no handler"
	// ReasonNotMounted: exec format error, and the mount is not a
	// binfmt_misc instance. Fix: mount it.
	ReasonNotMounted = "binfmt_misc not mounted"
	// ReasonFacilityDisabled: exec format error, and the mount's status
	// file says disabled. Fix: echo 1 > <mount>/status.
	ReasonFacilityDisabled = "binfmt_misc disabled"
	// ReasonEntryDisabled: exec format error, and the entry that selects
	// the programs (qemu-<arch> or another) is disabled. Fix: echo 1 >
	// <mount>/<entry>.
	ReasonEntryDisabled = "entry disabled"
	// ReasonNoMatch: exec format error; qemu-<arch> is registered and
	// enabled but its magic and mask do not select the probe.
	ReasonNoMatch = "entry does not match"
	// ReasonBadInterpreter: exec format error from an enabled handler:
	// the kernel cannot execute its interpreter either.
	ReasonBadInterpreter = "interpreter not executable"
	// ReasonInterpreterMissing: the handler's interpreter does not exist.
	ReasonInterpreterMissing = "interpreter missing"
	// ReasonNoFixBinary: the handler was registered without the F flag, so
	// the kernel looks for its interpreter inside the program's root (the
	// empty chroot, or a container), where it does not exist.
	ReasonNoFixBinary = "registered without the F flag"
	// ReasonDynamicInterpreter: the handler has F but its interpreter is
	// dynamically linked; its loader is missing inside the chroot.
	ReasonDynamicInterpreter = "interpreter dynamically linked"
	// ReasonNoExec: the temporary directory is on a noexec file system, or
	// the interpreter may not be executed.
	ReasonNoExec = "permission denied"
	// ReasonNoChroot: this process may not chroot (needs root).
	ReasonNoChroot = "cannot chroot"
	// ReasonExecFailed: starting the probe failed otherwise.
	ReasonExecFailed = "exec failed"
	// ReasonCrashed: the emulator (or the probe under it) was killed by a
	// signal, such as SIGSEGV, or the probe's Go runtime died of a fatal
	// error (as under QEMU 7.2's qemu-i386, which delivers its signals
	// wrongly: "fatal: bad g in signal handler", "fatal: morestack on
	// gsignal").
	ReasonCrashed = "emulator crashed"
	// ReasonExitStatus: the run ended with a non-zero exit status, not
	// from a fatal error of the probe's Go runtime (QEMU refused the
	// program, or the workload found a wrong result).
	ReasonExitStatus = "probe failed"
	// ReasonWrongMachine: the probe ran but reported another machine.
	ReasonWrongMachine = "wrong machine"
	// ReasonWrongOutput: the workload probe (see [Workload]) ran to its
	// end but printed other results than every correct run does: the
	// emulator computes wrongly.
	ReasonWrongOutput = "wrong output"
	// ReasonTimeout: the run did not end before the deadline and was
	// killed.
	ReasonTimeout = "timed out"
	// ReasonCanceled: the caller's context was done during the run.
	ReasonCanceled = "canceled"
	// ReasonNoProbe: mabd has no probe program for the architecture.
	ReasonNoProbe = "no probe"
	// ReasonSetup: the probe could not be written to a temporary
	// directory.
	ReasonSetup = "cannot prepare the probe"
)

// handlerState is what a binfmt_misc mount says about the programs of one
// architecture.
type handlerState struct {
	mount    binfmt.Mount
	dir      string
	mountErr error // not a binfmt_misc mount, or unreadable
	enabled  bool  // the facility's status (meaningful if mountErr is nil)
	// own is the entry qemu-<arch>, nil if absent.
	own *binfmt.Entry
	// matching are the entries whose magic selects the probe, own first
	// if it does, then by name.
	matching []binfmt.Entry
	listErr  error // reading the entries failed
}

// table is what a binfmt_misc mount holds, read once for every probe of a
// run (reading ~35 entry files for each probe would cost more than
// running it).
type table struct {
	mount binfmt.Mount
	once  sync.Once

	mountErr error
	enabled  bool
	entries  []binfmt.Entry
	listErr  error
}

// newTable returns the table of m, read on first use.
func newTable(m binfmt.Mount) *table { return &table{mount: m} }

func (t *table) read() {
	t.once.Do(func() {
		if t.mountErr = t.mount.Check(); t.mountErr != nil {
			return
		}
		if t.enabled, t.mountErr = t.mount.Enabled(); t.mountErr != nil {
			return
		}
		t.entries, t.listErr = t.mount.Entries()
	})
}

// inspectHandlers returns the entries of t that concern the probe of a
// whose first bytes are header.
func inspectHandlers(t *table, a binfmt.Arch, header []byte) handlerState {
	t.read()
	h := handlerState{mount: t.mount, dir: t.mount.Path(""), mountErr: t.mountErr, enabled: t.enabled, listErr: t.listErr}
	if t.mountErr != nil {
		return h
	}
	if t.listErr != nil {
		// Without the list, the entry of its own name may still read.
		if e, err := t.mount.Entry(a.HandlerName()); err == nil {
			h.own = &e
			if e.Matches(header) {
				h.matching = []binfmt.Entry{e}
			}
		}
		return h
	}
	for _, e := range t.entries {
		if e.Name == a.HandlerName() {
			e := e
			h.own = &e
		}
		if !e.Matches(header) {
			continue
		}
		if e.Name == a.HandlerName() {
			h.matching = append([]binfmt.Entry{e}, h.matching...)
		} else {
			h.matching = append(h.matching, e)
		}
	}
	return h
}

// active returns the entry the kernel most likely used for the probe: an
// enabled matching entry, qemu-<arch> preferred, or nil when binfmt_misc
// would not handle it (no such entry, or the facility disabled). Of
// several, the kernel takes the newest, which the mount does not show.
func (h handlerState) active() *binfmt.Entry {
	if h.mountErr != nil || !h.enabled {
		return nil
	}
	for i := range h.matching {
		if h.matching[i].Enabled {
			return &h.matching[i]
		}
	}
	return nil
}

// disabledMatch returns a matching entry that is disabled, qemu-<arch>
// preferred, or nil.
func (h handlerState) disabledMatch() *binfmt.Entry {
	for i := range h.matching {
		if !h.matching[i].Enabled {
			return &h.matching[i]
		}
	}
	return nil
}

// classify fills r's State, Reason, Fix and Machine from run and, where
// the outcome depends on it, from the state of the handlers in t (the
// table of opt.Mount).
func classify(r *Result, a binfmt.Arch, opt ProbeOptions, t *table, run probeRun) {
	if !run.workload {
		r.Machine = firstLine(run.stdout)
	}
	fail := func(reason, fix string, remedy Remedy) {
		r.State, r.Reason, r.Fix, r.Remedy = StateFailed, reason, fix, remedy
	}

	if run.setup {
		fail(ReasonSetup+": "+run.err.Error(), "make os.TempDir() ("+os.TempDir()+") writable, or set TMPDIR to a writable directory", RemedyNone)
		return
	}
	if run.ctxErr != nil {
		fail(fmt.Sprintf("%s: %v", ReasonCanceled, run.ctxErr), "", RemedyNone)
		return
	}
	h := inspectHandlers(t, a, run.header)
	act := h.active()
	via := ""
	if act != nil {
		via = fmt.Sprintf(" (entry %s, interpreter %s, flags %q)", act.Name, act.Interpreter, act.Flags.String())
	}
	if run.timedOut {
		limit := opt.timeout()
		if run.workload {
			limit = opt.workloadTimeout()
		}
		fail(fmt.Sprintf("%s: the probe did not finish within %v and was killed%s", ReasonTimeout, limit, via),
			"check that the emulator works ("+emulatorOf(act, a)+" --version) and is not stuck; on a busy machine, probe again with a longer timeout", RemedyNone)
		return
	}

	if errno, ok := startErrno(run.err); ok {
		classifyExecError(r, a, h, act, errno, run, fail)
		return
	}

	var exitErr *exec.ExitError
	if errors.As(run.err, &exitErr) {
		ws, _ := exitErr.Sys().(syscall.WaitStatus)
		detail := stderrDetail(run.stderr)
		upgrade := "check " + emulatorOf(act, a) + " (run it with --version) and upgrade qemu-user-static"
		switch {
		case ws.Signaled():
			sig := ws.Signal()
			fail(fmt.Sprintf("%s: killed by %s (%s)%s%s", ReasonCrashed, signalName(sig), sig, via, detail), upgrade, RemedyNone)
		case goRuntimeDied(run.stderr):
			fail(fmt.Sprintf("%s: exit status %d after a fatal error of the probe's Go runtime%s%s", ReasonCrashed, exitErr.ExitCode(), via, detail), upgrade, RemedyNone)
		default:
			fail(fmt.Sprintf("%s: exit status %d%s%s", ReasonExitStatus, exitErr.ExitCode(), via, detail), upgrade, RemedyNone)
		}
		return
	}
	if run.err != nil {
		fail(fmt.Sprintf("%s: %v", ReasonExecFailed, run.err), "", RemedyNone)
		return
	}

	if run.workload && run.stdout != WorkloadOutput {
		fail(fmt.Sprintf("%s: %s%s", ReasonWrongOutput, outputDiff(run.stdout), via),
			"check "+emulatorOf(act, a)+" (run it with --version) and upgrade qemu-user-static", RemedyNone)
		return
	}
	// The probe ran. Through a handler, or natively?
	if act == nil && (h.mountErr == nil || IsNative(a.Name)) {
		// No handler could have run it: the kernel did. It reports its
		// own machine (i386 programs on x86_64 see "x86_64"), so the
		// machine is not checked.
		r.State = StateNative
		return
	}
	if run.workload {
		r.State = StateOK
		return
	}
	if a.Machine != "" && r.Machine != a.Machine {
		fail(fmt.Sprintf("%s: the probe reports %q, want %q%s", ReasonWrongMachine, r.Machine, a.Machine, via),
			"the handler runs an emulator for another architecture; mabd's runs "+staticPath(a), RemedyReplace)
		return
	}
	if r.Machine == "" {
		fail(fmt.Sprintf("%s: the probe printed nothing%s%s", ReasonWrongMachine, via, stderrDetail(run.stderr)),
			"check "+emulatorOf(act, a)+" (run it with --version) and upgrade qemu-user-static", RemedyNone)
		return
	}
	r.State = StateOK
}

// classifyExecError explains an error of execve(2) on the probe.
func classifyExecError(r *Result, a binfmt.Arch, h handlerState, act *binfmt.Entry, errno syscall.Errno, run probeRun, fail func(reason, fix string, remedy Remedy)) {
	ours := "mabd's runs " + staticPath(a)
	qemu := "install qemu-user-static (apt-get install qemu-user-static)"
	switch errno {
	case syscall.ENOEXEC:
		own := a.HandlerName()
		switch {
		case h.mountErr != nil:
			fail(fmt.Sprintf("%s: exec format error, and %v", ReasonNotMounted, h.mountErr),
				fmt.Sprintf("mount -t binfmt_misc binfmt_misc %s", h.dir), RemedyRegister)
		case !h.enabled:
			fail(fmt.Sprintf("%s: exec format error, and %s says disabled, so no handler runs", ReasonFacilityDisabled, h.mount.Path("status")),
				"echo 1 > "+h.mount.Path("status"), RemedyNone)
		case act != nil:
			fail(fmt.Sprintf("%s: the kernel cannot execute the interpreter %s of entry %s (exec format error)", ReasonBadInterpreter, act.Interpreter, act.Name),
				ours, RemedyReplace)
		case h.disabledMatch() != nil:
			e := h.disabledMatch()
			fail(fmt.Sprintf("%s: entry %s, which selects %s programs, is disabled (exec format error)", ReasonEntryDisabled, e.Name, a.Name),
				"echo 1 > "+h.mount.Path(e.Name), RemedyNone)
		case h.own != nil && !h.own.Enabled:
			fail(fmt.Sprintf("%s: entry %s is disabled, and it does not select the probe either", ReasonEntryDisabled, own),
				"", RemedyReplace)
		case h.own != nil:
			fail(fmt.Sprintf("%s: entry %s is enabled but its magic and mask do not select %s programs such as the probe (exec format error)", ReasonNoMatch, own, a.Name),
				"", RemedyReplace)
		default:
			detail := ""
			if h.listErr != nil {
				detail = fmt.Sprintf(" (reading the other entries failed: %v)", h.listErr)
			}
			fail(fmt.Sprintf("%s: exec format error; no entry in %s selects %s programs%s", ReasonNoHandler, h.dir, a.Name, detail), "", RemedyRegister)
		}

	case syscall.ENOENT:
		if act == nil {
			fail(fmt.Sprintf("%s: %v, and no enabled entry in %s selects %s programs", ReasonExecFailed, errno, h.dir, a.Name), "", RemedyRegister)
			return
		}
		interp := act.Interpreter
		_, statErr := os.Stat(interp)
		switch {
		case errors.Is(statErr, fs.ErrNotExist) && !act.Flags.Has(binfmt.FixBinary):
			fail(fmt.Sprintf("%s: the interpreter %s of entry %s does not exist", ReasonInterpreterMissing, interp, act.Name),
				qemu, RemedyReplace)
		case !act.Flags.Has(binfmt.FixBinary):
			fail(fmt.Sprintf("%s: entry %s (flags %q) makes the kernel look for its interpreter %s inside the program's root; in the empty chroot (as in a container) it does not exist",
				ReasonNoFixBinary, act.Name, act.Flags.String(), interp),
				"mabd's has F", RemedyReplace)
		default:
			if static, err := IsStatic(interp); err == nil && !static {
				fail(fmt.Sprintf("%s: entry %s has F, but its interpreter %s is dynamically linked and its loader and libraries do not exist inside the chroot", ReasonDynamicInterpreter, act.Name, interp),
					qemu+"; "+ours, RemedyReplace)
				return
			}
			fail(fmt.Sprintf("%s: %v running %s through entry %s (interpreter %s)", ReasonExecFailed, errno, a.Name, act.Name, interp),
				"", RemedyReplace)
		}

	case syscall.EACCES:
		// run.dir is gone by now; its parent is on the same file system.
		if run.dir != "" && noexec(filepath.Dir(run.dir)) {
			fail(fmt.Sprintf("%s: the temporary directory %s is on a file system mounted noexec", ReasonNoExec, filepath.Dir(run.dir)),
				"set TMPDIR to a directory on a file system that allows executing programs", RemedyNone)
			return
		}
		if act != nil {
			fail(fmt.Sprintf("%s: the interpreter %s of entry %s may not be executed", ReasonNoExec, act.Interpreter, act.Name),
				"make "+act.Interpreter+" executable (chmod 0755)", RemedyReplace)
			return
		}
		fail(fmt.Sprintf("%s: %v", ReasonNoExec, run.err), "", RemedyNone)

	case syscall.EPERM:
		fail(fmt.Sprintf("%s: %v: probing needs root (CAP_SYS_CHROOT)", ReasonNoChroot, run.err), "run as root (sudo)", RemedyNone)

	default:
		fail(fmt.Sprintf("%s: %v", ReasonExecFailed, run.err), "", RemedyNone)
	}
}

// emulatorOf names the emulator that ran (or should run) a's programs.
func emulatorOf(e *binfmt.Entry, a binfmt.Arch) string {
	if e != nil {
		return e.Interpreter
	}
	return staticPath(a)
}

// staticPath is where Debian's qemu-user-static installs a's emulator.
func staticPath(a binfmt.Arch) string { return "/usr/bin/" + staticName(a.Name) }

// noexec reports whether dir is on a file system mounted noexec.
func noexec(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Flags&unix.ST_NOEXEC != 0
}

// signalName returns the symbolic name of sig, such as "SIGSEGV".
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// firstLine returns the first line of s without surrounding space.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// stderrDetail quotes the line of what the run wrote to stderr that says
// most about a failure, for a reason: `: "fatal: morestack on gsignal"`,
// or "". That is the first line of a Go runtime's fatal error or of
// QEMU's report of a signal, else the first line.
func stderrDetail(stderr string) string {
	line := firstLine(stderr)
	for l := range strings.Lines(stderr) {
		if l = strings.TrimSpace(l); isCrashLine(l) {
			line = l
			break
		}
	}
	// A runtime that fails while reporting its failure repeats itself.
	for strings.HasPrefix(line, "fatal error: fatal error: ") {
		line = strings.TrimPrefix(line, "fatal error: ")
	}
	if line == "" {
		return ""
	}
	if len(line) > 200 {
		line = strings.ToValidUTF8(line[:200], "") + "..."
	}
	return fmt.Sprintf(": %q", line)
}

// isCrashLine reports whether a line of stderr is a Go runtime's fatal
// error ("fatal error: …", "fatal: …", "SIGSEGV: segmentation violation")
// or QEMU's report of the signal that killed its program ("qemu:
// uncaught target signal 5 (Trace/breakpoint trap) - core dumped").
func isCrashLine(l string) bool {
	return strings.HasPrefix(l, "qemu: uncaught target signal") || isGoFatal(l)
}

// isGoFatal reports whether a line is the Go runtime's report of a fatal
// error: a throw ("fatal error: …"), a signal it cannot handle ("fatal:
// bad g in signal handler"), or a signal it did not expect, before it
// exits 2 ("SIGSEGV: segmentation violation").
func isGoFatal(l string) bool {
	if strings.HasPrefix(l, "fatal error: ") || strings.HasPrefix(l, "fatal: ") {
		return true
	}
	name, _, ok := strings.Cut(l, ": ")
	return ok && len(name) > 3 && strings.HasPrefix(name, "SIG") && strings.ToUpper(name) == name && !strings.Contains(name, " ")
}

// goRuntimeDied reports whether stderr holds the Go runtime's report of
// a fatal error or of a signal it did not expect (QEMU 7.2's qemu-i386
// gives either, run to run). The probes are Go programs that do not fail
// natively: under an emulator such an error is the emulator's doing.
func goRuntimeDied(stderr string) bool {
	for l := range strings.Lines(stderr) {
		if isGoFatal(strings.TrimSpace(l)) {
			return true
		}
	}
	return false
}
