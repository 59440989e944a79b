package userns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/testing/fixtures"
)

// sbtest runs files named *.sbtest with /bin/cat: such a file, executable,
// prints itself where the handler is registered and fails with ENOEXEC
// elsewhere.
var sbtest = binfmt.Spec{Name: "sbtest", Type: binfmt.Extension, Magic: []byte("sbtest"), Interpreter: "/bin/cat"}

// payload creates dir/x.sbtest, an executable that only sbtest runs.
func payload(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "x.sbtest")
	if err := os.WriteFile(p, []byte("sbtest payload\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// result is how a run ended.
type result struct {
	code           int
	stdout, stderr string
	err            error
}

// run runs name with args in the namespaces of spec, with stdin.
func run(t *testing.T, spec Spec, stdin string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code, err := Run(cmd, &spec)
	r := result{code, out.String(), errb.String(), err}
	t.Logf("%s %q → %d, %v\nstdout %q\nstderr %q", name, args, code, err, r.stdout, r.stderr)
	return r
}

func TestRun(t *testing.T) {
	x := payload(t, t.TempDir())
	for _, spec := range []Spec{
		{Handlers: []binfmt.Spec{sbtest}},
		{Handlers: []binfmt.Spec{sbtest}, AsCaller: true},
		{Handlers: []binfmt.Spec{sbtest}, PID: true},
		{Handlers: []binfmt.Spec{sbtest}, PID: true, AsCaller: true},
	} {
		t.Run(map[bool]string{false: "exec", true: "AsCaller"}[spec.AsCaller]+map[bool]string{false: "", true: "+PID"}[spec.PID], func(t *testing.T) {
			// The program sees the private instance where programs look
			// for it, with the handler, which runs the payload.
			r := run(t, spec, "", "/bin/sh", "-c", `echo $(ls /proc/sys/fs/binfmt_misc); head -n1 /proc/sys/fs/binfmt_misc/sbtest; "$1"`, "sh", x)
			if r.err != nil || r.code != 0 || r.stdout != "register sbtest status\nenabled\nsbtest payload\n" {
				t.Errorf("the program's binfmt_misc: %+v", r)
			}
			if r := run(t, spec, "x y\n", "cat"); r.err != nil || r.code != 0 || r.stdout != "x y\n" {
				t.Errorf("cat: %+v", r)
			}
			if r := run(t, spec, "", "sh", "-c", "echo oops >&2; exit 7"); r.err != nil || r.code != 7 || r.stderr != "oops\n" {
				t.Errorf("exit 7: %+v", r)
			}
			if !spec.PID || spec.AsCaller { // PID 1 ignores signals it has no handler for
				if r := run(t, spec, "", "sh", "-c", "kill -TERM $$; sleep 5"); r.err != nil || r.code != 128+15 {
					t.Errorf("kill -TERM: %+v, want %d", r, 128+15)
				}
			}
			// The marker does not reach the program.
			if r := run(t, spec, "", "sh", "-c", "echo ${"+envChild+":-unset}"); r.err != nil || r.stdout != "unset\n" {
				t.Errorf("%s in the program's environment: %+v", envChild, r)
			}
			wantPID := map[bool]string{false: "not 1\n", true: "1\n"}[spec.PID && !spec.AsCaller]
			if r := run(t, spec, "", "sh", "-c", `if [ $$ = 1 ]; then echo 1; else echo not 1; fi`); r.stdout != wantPID {
				t.Errorf("PID: %+v, want %q", r, wantPID)
			}
			wantIDs := "0 0\n"
			if spec.AsCaller {
				wantIDs = strconv.Itoa(os.Geteuid()) + " " + strconv.Itoa(os.Getegid()) + "\n"
			}
			if r := run(t, spec, "", "sh", "-c", `echo "$(id -u) $(id -g)"`); r.stdout != wantIDs {
				t.Errorf("ids: %+v, want %q", r, wantIDs)
			}
		})
	}
	// The host never had the handler.
	if out, err := exec.Command(x).CombinedOutput(); !errors.Is(err, syscall.ENOEXEC) {
		t.Errorf("running %s on the host: %v, %q; want ENOEXEC", x, err, out)
	}
}

// TestRunForeign: a real F handler, QEMU's, runs a foreign busybox and what
// it starts.
func TestRunForeign(t *testing.T) {
	bb := fixtures.Busybox(t, "arm64")
	arch, _ := binfmt.ArchByName("aarch64")
	spec := Spec{Handlers: []binfmt.Spec{arch.Spec(fixtures.Arches["arm64"].QEMUStatic(), binfmt.FixBinary)}, AsCaller: true}
	if r := run(t, spec, "", bb, "sh", "-c", bb+" uname -m"); r.err != nil || r.code != 0 || r.stdout != "aarch64\n" {
		t.Errorf("foreign uname -m: %+v", r)
	}
}

// TestRunNative: a nil Spec runs the command as it is.
func TestRunNative(t *testing.T) {
	self, _ := os.Readlink("/proc/self/ns/user")
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "readlink /proc/self/ns/user; exit 3")
	cmd.Stdout = &out
	if code, err := Run(cmd, nil); err != nil || code != 3 || out.String() != self+"\n" {
		t.Errorf("Run(nil): %d, %v, %q; want 3 in this user namespace (%s)", code, err, out.String(), self)
	}
	code, err := Run(exec.Command("/nonexistent/prog"), nil)
	var se *StartError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOENT) || err.Error() != "/nonexistent/prog: no such file or directory" {
		t.Errorf("Run(nil) of a missing program: %d, %#v", code, err)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "qemu-aarch64-static")
	arch, _ := binfmt.ArchByName("aarch64")
	for _, mode := range []struct {
		name string
		spec Spec
	}{{"exec", Spec{}}, {"AsCaller", Spec{AsCaller: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			r := run(t, mode.spec, "", filepath.Join(dir, "absent"))
			var se *StartError
			if !errors.As(r.err, &se) || !errors.Is(r.err, syscall.ENOENT) || se.Program != filepath.Join(dir, "absent") {
				t.Errorf("a missing program: %#v", r.err)
			}
			r = run(t, mode.spec, "", data)
			if !errors.As(r.err, &se) || !errors.Is(r.err, syscall.EACCES) || r.err.Error() != data+": permission denied" {
				t.Errorf("a program that is not executable: %#v", r.err)
			}
			// A failure of the setup: an F handler whose interpreter the
			// kernel cannot open.
			spec := mode.spec
			spec.Handlers = []binfmt.Spec{arch.Spec(missing, binfmt.FixBinary)}
			r = run(t, spec, "", "true")
			if r.err == nil || !strings.Contains(r.err.Error(), "register qemu-aarch64 in the private binfmt_misc instance") || !strings.Contains(r.err.Error(), missing) {
				t.Errorf("a handler the kernel refuses: %v", r.err)
			}
		})
	}
	// Refused before anything starts.
	bad := sbtest
	bad.Name = "a/b"
	if r := run(t, Spec{Handlers: []binfmt.Spec{bad}}, "", "true"); r.err == nil || !strings.Contains(r.err.Error(), "name") {
		t.Errorf("an invalid handler: %v", r.err)
	}
	if r := run(t, Spec{Mount: "relative"}, "", "true"); r.err == nil || !strings.Contains(r.err.Error(), "not an absolute path") {
		t.Errorf("a relative mount point: %v", r.err)
	}
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1}}
	if err := Start(cmd, Spec{}); err == nil || !strings.Contains(err.Error(), "Credential") {
		t.Errorf("a command with credentials: %v", err)
	}
}

// TestMount: an instance on a directory of the caller's choosing; a
// directory that holds anything is refused.
func TestMount(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	x := payload(t, dir)
	r := run(t, Spec{Mount: mnt, Handlers: []binfmt.Spec{sbtest}}, "", "sh", "-c", `echo $(ls "$1"); "$2"; ls /proc/sys/fs/binfmt_misc | grep -c '^sbtest$' || true`, "sh", mnt, x)
	if r.err != nil || r.code != 0 || r.stdout != "register sbtest status\nsbtest payload\n0\n" {
		t.Errorf("instance on %s: %+v", mnt, r)
	}
	if des, err := os.ReadDir(mnt); err != nil || len(des) != 0 {
		t.Errorf("after the run %s holds %v (%v), want nothing", mnt, des, err)
	}

	r = run(t, Spec{Mount: dir}, "", "true")
	if r.err == nil || !strings.Contains(r.err.Error(), "refusing to mount binfmt_misc on "+dir+": it holds ") {
		t.Errorf("a directory that holds files: %v", r.err)
	}
	r = run(t, Spec{Mount: x}, "", "true")
	if r.err == nil || !strings.Contains(r.err.Error(), "refusing to mount binfmt_misc on "+x) {
		t.Errorf("a file: %v", r.err)
	}
}

// TestIdentity: as real root, ids mapped to themselves, up to all of
// them (which the initial namespace's uid_map looks like too).
func TestIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mapping more than one's own id takes root")
	}
	for _, size := range []int{65536, 4294967295} {
		spec := Spec{UIDMaps: Identity(size), GIDMaps: Identity(size), Handlers: []binfmt.Spec{sbtest}}
		want := "0 0 " + strconv.Itoa(size) + "\n0 0 " + strconv.Itoa(size) + "\nregister sbtest status\n"
		r := run(t, spec, "", "sh", "-c", `for f in uid_map gid_map; do echo $(cat /proc/self/$f); done; echo $(ls /proc/sys/fs/binfmt_misc)`)
		if r.err != nil || r.stdout != want {
			t.Errorf("Identity(%d): %+v, want %q", size, r, want)
		}
		spec.AsCaller = true
		if r := run(t, spec, "", "sh", "-c", "id -u; cat /proc/sys/fs/binfmt_misc/status"); r.err != nil || r.stdout != "0\nenabled\n" {
			t.Errorf("Identity(%d), AsCaller: %+v", size, r)
		}
	}
	// A setgroups that nil maps deny works with maps.
	spec := Spec{UIDMaps: Identity(65536), GIDMaps: Identity(65536)}
	if r := run(t, spec, "", "setpriv", "--groups", "1,2", "id", "-G"); r.err != nil || r.stdout != "0 1 2\n" {
		t.Errorf("setgroups: %+v", r)
	}
}

// TestSelf: when the program is this binary, the first process is the
// program: it returns from MaybeRunChild after the setup.
func TestSelf(t *testing.T) {
	if os.Getenv("USERNS_TEST_SELF") != "" {
		// The program: in its namespaces, with the instance set up.
		b, err := os.ReadFile(filepath.Join(os.Getenv("USERNS_TEST_MOUNT"), "sbtest"))
		if err != nil || !strings.HasPrefix(string(b), "enabled\n") {
			t.Fatalf("the handler: %q, %v", b, err)
		}
		ns, _ := os.Readlink("/proc/self/ns/user")
		if ns == os.Getenv("USERNS_TEST_SELF") {
			t.Fatalf("in the caller's user namespace %s", ns)
		}
		if _, ok := os.LookupEnv(envChild); ok {
			t.Errorf("%s is still set", envChild)
		}
		// Started once: its parent is the caller.
		if ppid := strconv.Itoa(os.Getppid()); ppid != os.Getenv("USERNS_TEST_PARENT") {
			t.Errorf("parent %s, want %s", ppid, os.Getenv("USERNS_TEST_PARENT"))
		}
		t.Log("self ran")
		return
	}
	mnt := t.TempDir()
	ns, _ := os.Readlink("/proc/self/ns/user")
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestSelf$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "USERNS_TEST_SELF="+ns, "USERNS_TEST_MOUNT="+mnt, "USERNS_TEST_PARENT="+strconv.Itoa(os.Getpid()))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := Start(cmd, Spec{Mount: mnt, Handlers: []binfmt.Spec{sbtest}}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "self ran") {
		t.Errorf("%v\n%s", err, out.String())
	}
}

// TestStartOutlivesGoroutine: the process started by Start lives on when
// the goroutine that called Start ends, until it is waited for.
func TestStartOutlivesGoroutine(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 0.3; echo alive")
	var out bytes.Buffer
	cmd.Stdout = &out
	errc := make(chan error)
	go func() { errc <- Start(cmd, Spec{}) }()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || out.String() != "alive\n" {
		t.Errorf("%v, %q", err, out.String())
	}
}

// TestRefusesInitialUserNS starts this test binary as if Start had, with a
// forged configuration, in a new mount namespace but in the initial user
// namespace: it must refuse to mount binfmt_misc (which would be the
// host's instance there) and report why.
func TestRefusesInitialUserNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot start a process in a new mount namespace without a new user namespace")
	}
	if ns, _ := os.Readlink("/proc/self/ns/user"); ns != initialUserNS {
		t.Skipf("not in the initial user namespace (%s): nothing to check", ns)
	}
	mnt := t.TempDir()
	raw, err := json.Marshal(childConfig{Mount: mnt, Path: "/bin/true", Args: []string{"true"}, StatusFD: 3, UserNS: "user:[1]", MntNS: "mnt:[1]"})
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", childArg)
	cmd.Env = append(os.Environ(), envChild+"="+string(raw))
	cmd.ExtraFiles = []*os.File{w}
	// A new mount namespace, so that even a failing check could not
	// leave a mount behind on the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep, _ := io.ReadAll(r)
	werr := cmd.Wait()
	err = decodeReport(rep)
	if err == nil || err.Error() != "refusing to mount binfmt_misc: this process is in the initial user namespace" || cmd.ProcessState.ExitCode() != exitFailed {
		t.Errorf("forged child: report %q (%v), exit %v, output %q; want it to refuse", rep, err, werr, out.String())
	}
}

// TestNotAChild: the marker without Start's status pipe is refused.
func TestNotAChild(t *testing.T) {
	cmd := exec.Command("/proc/self/exe", childArg)
	cmd.Env = append(os.Environ(), envChild+`={"StatusFD":3}`)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitFailed || !strings.Contains(string(out), "was not started by userns.Start") {
		t.Errorf("%v: %q", err, out)
	}
	cmd = exec.Command("/proc/self/exe", childArg)
	cmd.Env = append(os.Environ(), envChild+"=garbage")
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitFailed || !strings.Contains(string(out), "holds no child configuration") {
		t.Errorf("garbage: %q", out)
	}
}

func TestMaybeRunChildReturns(t *testing.T) {
	if _, ok := os.LookupEnv(envChild); ok {
		t.Fatalf("%s is set in a test process", envChild)
	}
	MaybeRunChild() // must return: this is no child
}

// TestUnprivileged runs TestHelperUnprivileged as uid 65534 from a copy of
// this binary that uid can execute.
func TestUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("not root: the other tests already run unprivileged")
	}
	dir, err := os.MkdirTemp("", "userns-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "userns.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	x := payload(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestHelperUnprivileged$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "USERNS_TEST_UNPRIVILEGED="+x, "HOME="+dir, "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("as uid 65534: checked")) || !bytes.Contains(out, []byte("--- PASS: TestHelperUnprivileged")) {
		t.Errorf("as uid 65534: %v\n%s", err, out)
	}
}

// TestHelperUnprivileged does nothing unless TestUnprivileged runs it.
func TestHelperUnprivileged(t *testing.T) {
	x := os.Getenv("USERNS_TEST_UNPRIVILEGED")
	if x == "" {
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("running as root")
	}
	script := `echo "$(id -u) $(id -g)"; "$1"`
	if r := run(t, Spec{Handlers: []binfmt.Spec{sbtest}}, "", "sh", "-c", script, "sh", x); r.err != nil || r.stdout != "0 0\nsbtest payload\n" {
		t.Errorf("as root of the namespace: %+v", r)
	}
	if r := run(t, Spec{Handlers: []binfmt.Spec{sbtest}, AsCaller: true, PID: true}, "", "sh", "-c", script, "sh", x); r.err != nil || r.stdout != "65534 65534\nsbtest payload\n" {
		t.Errorf("as the caller: %+v", r)
	}
	// Mapping more than one's own id takes root.
	r := run(t, Spec{UIDMaps: Identity(65536)}, "", "true")
	var ue *UnavailableError
	if !errors.As(r.err, &ue) || ue.Reason != Refused {
		t.Errorf("Identity(65536) as uid 65534: %#v, want Refused", r.err)
	}
	t.Logf("as uid %d: checked", os.Geteuid())
}

// TestStartKeepsCommand: the command's extra files reach the program, in
// both modes, and its own SysProcAttr fields are kept.
func TestStartKeepsCommand(t *testing.T) {
	for _, spec := range []Spec{{}, {AsCaller: true}} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", `echo "extra $1" >&3; ps -o pid=,pgid= -p $$`, "sh", strconv.FormatBool(spec.AsCaller))
		cmd.ExtraFiles = []*os.File{w}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = Start(cmd, spec)
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("AsCaller %v: %v\n%s", spec.AsCaller, err, out.String())
		}
		if want := "extra " + strconv.FormatBool(spec.AsCaller) + "\n"; string(got) != want {
			t.Errorf("fd 3: %q, want %q", got, want)
		}
		if f := strings.Fields(out.String()); !spec.AsCaller && (len(f) != 2 || f[0] != f[1]) {
			t.Errorf("pid and process group %q: want Setpgid kept", out.String())
		}
	}
}
