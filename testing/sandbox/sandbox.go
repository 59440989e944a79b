// Package sandbox lets tests register binfmt_misc handlers in a private
// binfmt_misc instance, never in the host's.
//
// # Why this is safe
//
// Since Linux 6.7 binfmt_misc is per user namespace. A process that is in a
// new user namespace and a new mount namespace and mounts
//
//	mount -t binfmt_misc binfmt_misc DIR
//
// gets a new, empty binfmt_misc instance on DIR. Entries registered through
// DIR/register apply only to processes in that user namespace and in its
// descendants; the host (the initial user namespace) never sees them. The
// instance disappears with the last mount of it, which here means: when the
// last process of the namespace exits. This package therefore never unmounts
// a binfmt_misc mount and never touches /proc/sys/fs/binfmt_misc; it mounts a
// fresh instance on a fresh directory inside a fresh namespace and lets the
// kernel tear everything down when the namespace dies.
//
// Before it mounts anything, the sandboxed process checks that its user
// namespace differs from the one of the process that created the sandbox,
// and after mounting it checks that the instance is empty (only the
// "register" and "status" files). If either check fails it refuses to go on.
// [Run] gets its namespaces from package mabd/internal/userns, which `mabd
// exec` uses too; [Script] and [Command] have a shell wrapper do the same.
//
// # Run: a Go test body inside the sandbox
//
// A multithreaded Go process cannot move itself into a new user namespace
// (unshare(CLONE_NEWUSER) requires a single-threaded caller), so [Run]
// re-executes the test binary with userns.Start: /proc/self/exe in new
// user and mount namespaces (as root: the ids 0 to 65535 mapped to
// themselves, as a container of real root's, so that a body can run
// containers — BuildKit's — that need more than one id; otherwise the
// caller's uid and gid mapped to 0 and setgroups denied; SIGKILL when the
// parent dies), with the flags
//
//	-test.run=^TestName$/^subtest$ -test.count=1 -test.v [-test.short] [-test.timeout=...]
//
// (each level of t.Name() quoted with regexp.QuoteMeta and anchored), so
// that the child runs only that test. This package's init function first
// lets userns.MaybeRunChild make the child's mounts private and mount a
// private binfmt_misc instance on a directory of the parent's; then the
// child recognises itself by the MABD_SANDBOX_TEST environment variable
// (its value is t.Name()), checks that it is in a namespace of its own with
// the instance mounted, and calls the body.
// When the test is over (body, its subtests and cleanups), the child writes
// the outcome to a file of the parent and exits at once. The parent only
// reports: it logs the child's output when -test.v is set, fails the test
// with that output when the child fails, and skips the test when the body
// called t.Skip. The timeout given to the child is a little shorter than
// what is left of the parent's, so a hanging body is reported with the
// child's goroutine dump.
//
// Consequences for test authors:
//
//   - The body runs in another process. It cannot hand results back through
//     variables; use t.Error/t.Fatal inside the body, or files. The child
//     inherits the parent's environment (t.Setenv in the parent before Run
//     is one way to pass values) and working directory, but its TMPDIR is
//     a directory of the parent's that the parent removes.
//   - The test function (and TestMain, and enclosing tests of a subtest)
//     runs again in the child up to the Run call, so code before Run runs
//     twice; keep it cheap and free of side effects that must happen once.
//     Nothing after the Run call runs in the child: the parent runs it.
//     The child skips Run calls of other tests and returns at once from
//     earlier Run calls of the same test.
//   - Several Run calls in one test, in subtests, and in subtests whose
//     names contain spaces or regexp metacharacters are supported; every
//     call gets its own child process and its own instance. The sequence
//     of Run calls must be the same in every run of the test binary.
//   - Run cannot be nested: calling Run from inside a body fails the test.
//     [Script] and [Command] can be used from inside a body.
//
// # Script and Command: several commands against one instance
//
// [Script] and [Command] return an *exec.Cmd that runs a shell script or a
// program in a fresh user, mount and PID namespace with a private
// binfmt_misc instance; they work in any program, no TestMain is needed.
// The mount point is passed as $BINFMT and $MABD_BINFMT_MOUNT, and Command
// substitutes "{{binfmt}}" in its arguments. Use Script to run several
// commands against one instance: the instance lives as long as the script.
// The mount point is a directory in os.TempDir() that is removed when the
// script or program exits.
//
// # Requirements
//
// [Available] reports whether private instances work on this machine: Linux
// 6.7 or newer, user namespaces enabled, the binfmt_misc file system
// available, and /bin/sh, mount and unshare (util-linux), mkdir, rmdir and
// readlink (coreutils). Run, Script and Command fail (never skip) with the
// reason when they do not; [Require] does the same for a whole test.
package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/internal/userns"
)

// envTest is the environment variable that marks a re-executed test binary
// as the sandboxed child of Run; its value is the t.Name() of the test
// whose body the child runs. It is read and removed from the environment
// when the package is initialised, so processes started by the body do not
// inherit it (a test binary they start is a parent again, not a child).
const envTest = "MABD_SANDBOX_TEST"

// envChild carries the rest of the child's instructions (JSON childSpec).
const envChild = "MABD_SANDBOX_CHILD"

// childSpec is what the parent tells the child besides the test name.
type childSpec struct {
	Call   int    // index of the Run call within the test
	Dir    string // mount point, created by the parent
	Report string // file the child writes the outcome of the body to
	UserNS string // readlink /proc/self/ns/user of the parent
}

// Outcomes written to childSpec.Report.
const (
	reportStarted = "started"
	reportDone    = "done"
	reportSkipped = "skipped"
	reportFailed  = "failed"
)

var (
	// childTest is the value of envTest at start-up ("" in the parent).
	childTest string
	// child is the decoded envChild, nil if absent or invalid.
	child *childSpec
	// childErr explains why envChild could not be used.
	childErr error

	// inBody is set while the child runs the body (to detect nesting).
	inBody atomic.Bool
	// targetDone is set once the child has run its body.
	targetDone atomic.Bool

	callsMu sync.Mutex
	calls   = map[*testing.T]int{}
)

func init() {
	// First of all: in a child of Run, set up the namespaces (userns.Start
	// re-executed this binary as the program itself, so this returns).
	userns.MaybeRunChild()
	childTest = os.Getenv(envTest)
	raw, haveSpec := os.LookupEnv(envChild)
	os.Unsetenv(envTest)
	os.Unsetenv(envChild)
	if childTest == "" {
		return
	}
	if !haveSpec {
		childErr = fmt.Errorf("%s=%q is set but %s is not: this process was not started by sandbox.Run", envTest, childTest, envChild)
		return
	}
	var s childSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		childErr = fmt.Errorf("decode %s: %w", envChild, err)
		return
	}
	child = &s
}

// Run runs body inside a new user and mount namespace in which a private
// binfmt_misc instance is mounted on a fresh directory; body receives the
// path of that directory as mount. Entries registered through
// mount+"/register" apply only to processes of that namespace (the body and
// the processes it starts) and vanish when the body's process exits.
//
// Run re-executes the test binary to get into the namespace (see the
// package documentation); body runs only in that child process, never in
// the calling one. The test fails with the child's output if the body fails,
// and with the reason if private instances are not available here (see
// [Available]). If the body calls t.Skip, the test is skipped.
//
// Run must be called from the test's own goroutine, not from a body.
func Run(t *testing.T, body func(t *testing.T, mount string)) {
	t.Helper()
	call := nextCall(t)
	if childTest != "" {
		runChild(t, call, body)
		return
	}
	runParent(t, call)
}

// nextCall returns how many times Run was called for t before.
func nextCall(t *testing.T) int {
	callsMu.Lock()
	defer callsMu.Unlock()
	n, ok := calls[t]
	if !ok {
		t.Cleanup(func() {
			callsMu.Lock()
			delete(calls, t)
			callsMu.Unlock()
		})
	}
	calls[t] = n + 1
	return n
}

// runPattern returns the -test.run pattern that selects exactly the test
// called name (a t.Name(), with '/' between the levels of subtests).
func runPattern(name string) string {
	elems := strings.Split(name, "/")
	for i, e := range elems {
		elems[i] = "^" + regexp.QuoteMeta(e) + "$"
	}
	return strings.Join(elems, "/")
}

// runParent re-executes the test binary to run call number call of Run in t
// inside the sandbox, and reports the outcome.
func runParent(t *testing.T, call int) {
	t.Helper()
	if !testing.Testing() {
		t.Fatalf("sandbox.Run: not running in a test binary")
	}
	if err := Available(); err != nil {
		t.Fatalf("sandbox.Run: private binfmt_misc instances are not available: %v", err)
	}

	userNS, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatalf("sandbox.Run: %v", err)
	}
	// tmp holds the mount point, the report and the child's TMPDIR (the
	// child exits without running the cleanups of enclosing tests).
	tmp := t.TempDir()
	spec := childSpec{
		Call:   call,
		Dir:    filepath.Join(tmp, "binfmt_misc"),
		Report: filepath.Join(tmp, "report"),
		UserNS: userNS,
	}
	for _, d := range []string{spec.Dir, filepath.Join(tmp, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("sandbox.Run: %v", err)
		}
	}
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("sandbox.Run: encode %s: %v", envChild, err)
	}

	// The child always runs verbosely: it exits as soon as the test is
	// over, before the testing package would print buffered output.
	args := []string{
		"-test.run=" + runPattern(t.Name()),
		"-test.count=1",
		"-test.v=true",
	}
	if testing.Short() {
		args = append(args, "-test.short=true")
	}
	if deadline, ok := t.Deadline(); ok {
		// Leave the parent some time to report a child that times out
		// (the child's panic includes its goroutine dump): a tenth, at
		// least a second unless that is more than half (the child's
		// clock starts only once it runs, which on a loaded machine
		// takes a good part of a second), at most ten.
		left := time.Until(deadline)
		grace := min(max(left/10, time.Second), left/2, 10*time.Second)
		args = append(args, "-test.timeout="+max(left-grace, time.Millisecond).String())
	}

	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(),
		envTest+"="+t.Name(),
		envChild+"="+string(rawSpec),
		"TMPDIR="+filepath.Join(tmp, "tmp"))
	if gorace := os.Getenv("GORACE"); !strings.Contains(gorace, "atexit_sleep_ms") {
		// The race detector sleeps one second at exit by default.
		cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := userns.Start(cmd, runSpec(spec.Dir)); err != nil {
		t.Fatalf("sandbox.Run: %v\n%s", explain(err), out.Bytes())
	}
	err = cmd.Wait()

	report, rerr := os.ReadFile(spec.Report)
	outcome := strings.TrimSpace(string(report))
	switch {
	case err != nil:
		t.Fatalf("sandbox.Run: the sandboxed child running %s failed: %v\n%s", t.Name(), err, out.Bytes())
	case rerr != nil && !os.IsNotExist(rerr):
		t.Fatalf("sandbox.Run: read the child's report: %v\n%s", rerr, out.Bytes())
	case outcome == reportDone:
		if testing.Verbose() {
			t.Logf("sandbox.Run: output of the sandboxed child:\n%s", out.Bytes())
		}
	case outcome == reportSkipped:
		t.Skipf("sandbox.Run: the body skipped the test:\n%s", out.Bytes())
	case outcome == "" || outcome == reportStarted:
		t.Fatalf("sandbox.Run: the sandboxed child (%s -test.run=%s) exited successfully without running the body (report %q); is the call to Run deterministic?\n%s",
			os.Args[0], runPattern(t.Name()), outcome, out.Bytes())
	default:
		t.Fatalf("sandbox.Run: the sandboxed child exited successfully but reported %q\n%s", outcome, out.Bytes())
	}
}

// runChild handles call number call of Run in t in the sandboxed child.
func runChild(t *testing.T, call int, body func(t *testing.T, mount string)) {
	t.Helper()
	switch {
	case child == nil:
		t.Fatalf("sandbox.Run: %v", childErr)
	case inBody.Load() || targetDone.Load():
		t.Fatalf("sandbox.Run: Run called from inside a sandbox body (%s); nested Run is not supported, use sandbox.Script or sandbox.Command", t.Name())
	case t.Name() == childTest && call == child.Call:
		runTarget(t, body)
	case t.Name() == childTest || strings.HasPrefix(childTest, t.Name()+"/"):
		// An earlier call in the target test or a call in an enclosing
		// test: it has (or had) a child of its own; go on to the target.
	default:
		t.Skipf("sandbox.Run: this sandboxed child runs only %s", childTest)
	}
}

// runTarget sets up the private instance, runs body and ends the child
// process when the test (body, subtests and cleanups) is over, so that
// nothing else of the test binary runs in the child: not the rest of the
// test function after Run, not the rest of enclosing tests, not the end of
// TestMain.
func runTarget(t *testing.T, body func(t *testing.T, mount string)) {
	t.Helper()
	var finished, panicked, bodySkipped bool
	// Registered before body runs, so it runs after the body's cleanups.
	t.Cleanup(func() {
		outcome := reportDone
		switch {
		case panicked || t.Failed():
			outcome = reportFailed
		case bodySkipped:
			outcome = reportSkipped
		}
		if err := os.WriteFile(child.Report, []byte(outcome), 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "sandbox.Run: write report: %v\n", err)
			outcome = reportFailed
		}
		if panicked {
			return // let the testing package report the panic
		}
		// The child runs with -test.v, so everything the test logged has
		// been printed already.
		fmt.Printf("--- sandbox child: the body of %s %s; the child exits here\n", t.Name(), map[string]string{
			reportDone: "passed", reportSkipped: "skipped", reportFailed: "failed",
		}[outcome])
		os.Stdout.Sync()
		if outcome == reportFailed {
			os.Exit(1)
		}
		os.Exit(0)
	})

	if err := checkChild(); err != nil {
		t.Fatalf("sandbox.Run: %v", err)
	}
	dir := child.Dir
	if err := os.WriteFile(child.Report, []byte(reportStarted), 0o600); err != nil {
		t.Fatalf("sandbox.Run: write report: %v", err)
	}

	inBody.Store(true)
	func() {
		defer func() {
			inBody.Store(false)
			targetDone.Store(true)
			if !finished {
				if r := recover(); r != nil {
					panicked = true
					panic(r)
				}
				bodySkipped = t.Skipped()
			}
		}()
		body(t, dir)
		finished = true
	}()

	// Stop the test function here; the parent runs the rest of it.
	t.SkipNow()
}

// checkChild checks that this process is what Run started: in a user
// namespace other than the parent's, with the private binfmt_misc
// instance that userns.Start mounted on child.Dir.
func checkChild() error {
	own, err := os.Readlink("/proc/self/ns/user")
	if err != nil || own == child.UserNS {
		return fmt.Errorf("refusing to run the body: this process is in the parent's user namespace %s (%v)", own, err)
	}
	if ok, err := binfmt.Mounted(child.Dir); err != nil || !ok {
		return fmt.Errorf("refusing to run the body: no private binfmt_misc instance on %s (%v)", child.Dir, err)
	}
	return nil
}

// runSpec is the namespaces of a Run child whose instance is on dir: as
// root, ids 0 to 65535 mapped to themselves; otherwise the caller's ids
// mapped to root, alone.
func runSpec(dir string) userns.Spec {
	spec := userns.Spec{Mount: dir}
	if os.Geteuid() == 0 {
		spec.UIDMaps, spec.GIDMaps = userns.Identity(65536), userns.Identity(65536)
	}
	return spec
}
