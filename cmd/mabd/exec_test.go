package main

// Tests of `mabd exec`. TestExec builds the mabd binary with `go build` and
// runs it as a real process, with the real kernel, qemu-aarch64-static and
// Debian's arm64 busybox (make deps). Each run gets a private binfmt_misc
// instance of its own; the host's table is only ever read.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mabd/testing/procs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/internal/userns"
	"mabd/testing/fixtures"
)

// publicDir returns a new directory that every user can read and search,
// removed when the test ends: tests run programs in it as uid 65534.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mabd-exec-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not searchable by other users (mode %v), so uid 65534 cannot reach %s: set TMPDIR to a directory under /tmp", d, fi.Mode().Perm(), dir)
		}
		if d == "/" {
			break
		}
	}
	return dir
}

// goTool returns the go command that runs this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	return p
}

// buildMabd builds this package into dir/mabd (mode 0755).
func buildMabd(t *testing.T, dir string) string {
	t.Helper()
	return goBuild(t, filepath.Join(dir, "mabd"), ".")
}

// goBuild builds the command pkg into out, mode 0755.
func goBuild(t *testing.T, out, pkg string) string {
	t.Helper()
	cmd := exec.Command(goTool(t), "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -o %s %s: %v\n%s", out, pkg, err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// copyExecutable copies src to dst with mode 0755.
func copyExecutable(t *testing.T, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
}

// execResult is how a run of the binary ended.
type execResult struct {
	code           int
	stdout, stderr string
}

// runExec runs the binary with args and stdin, as cred when not nil, in
// dir, and returns its exit status and output.
func runExec(t *testing.T, bin, dir string, cred *syscall.Credential, stdin io.Reader, env []string, args ...string) execResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("mabd %s: %v", strings.Join(args, " "), err)
	}
	r := execResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	t.Logf("mabd %s → %d\nstdout: %q\nstderr: %q", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// hostAarch64Handlers lists the host's binfmt_misc entries that run arm64
// programs, read (never written) from /proc/sys/fs/binfmt_misc. ok is false
// when the host has no binfmt_misc mounted there (this test never mounts
// it).
func hostAarch64Handlers(t *testing.T) (names []string, ok bool) {
	t.Helper()
	mounted, err := binfmt.Mounted(binfmt.DefaultDir)
	if err != nil || !mounted {
		return nil, false
	}
	es, err := binfmt.Mount{}.Entries()
	if err != nil {
		t.Fatalf("read the host's binfmt_misc table: %v", err)
	}
	arch, _ := binfmt.ArchByName("aarch64")
	for _, e := range es {
		if e.Spec.Name == arch.HandlerName() || bytes.Equal(e.Spec.Magic, arch.Magic) {
			names = append(names, e.Spec.Name)
		}
	}
	return names, true
}

func TestExec(t *testing.T) {
	src := fixtures.Busybox(t, "arm64")
	dir := publicDir(t)
	bin := buildMabd(t, dir)
	bb := filepath.Join(dir, "busybox")
	copyExecutable(t, bb, src)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	env := []string{"TMPDIR=" + tmp}
	mabd := func(t *testing.T, stdin string, args ...string) execResult {
		t.Helper()
		return runExec(t, bin, dir, nil, strings.NewReader(stdin), env, args...)
	}
	want := func(t *testing.T, r execResult, code int, stdout, stderrHas string) {
		t.Helper()
		if r.code != code {
			t.Errorf("exit status %d, want %d (stderr %q)", r.code, code, r.stderr)
		}
		if stdout != "*" && r.stdout != stdout {
			t.Errorf("stdout %q, want %q", r.stdout, stdout)
		}
		if !strings.Contains(r.stderr, stderrHas) {
			t.Errorf("stderr %q does not contain %q", r.stderr, stderrHas)
		}
	}

	t.Run("UnameM", func(t *testing.T) {
		r := mabd(t, "", "exec", "--platform", "linux/arm64", "--", bb, "uname", "-m")
		want(t, r, 0, "aarch64\n", "")
		if r.stderr != "" {
			t.Errorf("stderr %q, want nothing", r.stderr)
		}
	})
	t.Run("WithoutDoubleDash", func(t *testing.T) {
		// Flags after CMD are CMD's.
		want(t, mabd(t, "", "exec", "--platform", "arm64", bb, "uname", "-m"), 0, "aarch64\n", "")
	})
	t.Run("ExitCode", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", bb, "sh", "-c", "exit 7"), 7, "", "")
	})
	t.Run("SignalDeath", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", bb, "sh", "-c", "kill -9 $$"), 128+9, "", "")
	})
	t.Run("Stdin", func(t *testing.T) {
		want(t, mabd(t, "hi\n", "exec", "--platform", "linux/arm64", "--", bb, "cat"), 0, "hi\n", "")
	})
	t.Run("Stderr", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", bb, "sh", "-c", "echo oops >&2"), 0, "", "oops\n")
	})
	t.Run("CallerIdentity", func(t *testing.T) {
		ids := strconv.Itoa(os.Geteuid()) + " " + strconv.Itoa(os.Getegid()) + "\n"
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", bb, "sh", "-c", `echo "$(id -u) $(id -g)"`), 0, ids, "")
	})
	t.Run("ForeignChildren", func(t *testing.T) {
		// The foreign shell starts another foreign program through the
		// same private handler.
		want(t, mabd(t, "", "exec", "--platform", "arm64", "--", bb, "sh", "-c", bb+" uname -m"), 0, "aarch64\n", "")
	})
	t.Run("ExplicitEmulator", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "aarch64", "--emulator", fixtures.Arches["arm64"].QEMUStatic(), "--", bb, "uname", "-m"), 0, "aarch64\n", "")
	})
	t.Run("Armhf", func(t *testing.T) {
		arm := filepath.Join(dir, "armhf")
		if err := os.Mkdir(arm, 0o755); err != nil {
			t.Fatal(err)
		}
		abb := filepath.Join(arm, "busybox")
		copyExecutable(t, abb, fixtures.Busybox(t, "armhf"))
		want(t, mabd(t, "", "exec", "--platform", "linux/arm/v7", "--", abb, "uname", "-m"), 0, fixtures.Arches["armhf"].UnameM+"\n", "")
	})
	t.Run("Native", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/"+runtime.GOARCH, "--", "/bin/sh", "-c", "echo native; exit 3"), 3, "native\n", "")
	})

	t.Run("Unprivileged", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("not root: cannot switch to uid 65534 (the other subtests already ran without root)")
		}
		before, mounted := hostAarch64Handlers(t)
		if !mounted {
			t.Log("the host has no binfmt_misc on /proc/sys/fs/binfmt_misc: not checking its table")
		} else if len(before) > 0 {
			t.Logf("the host has arm64 handlers %q: this run cannot show that it needs none", before)
		}
		cred := &syscall.Credential{Uid: 65534, Gid: 65534}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "exec", "--platform", "linux/arm64", "--", bb, "sh", "-c", `uname -m; id -u; read line; echo "got $line"`)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.WaitDelay = 5 * time.Second
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer stdin.Close()
		buf := make([]byte, 0, 64)
		for !bytes.HasSuffix(buf, []byte("\n65534\n")) {
			var b [64]byte
			n, err := stdout.Read(b[:])
			buf = append(buf, b[:n]...)
			if err != nil {
				t.Fatalf("read the program's output: %v (got %q, stderr %q)", err, buf, errb.String())
			}
		}
		if string(buf) != "aarch64\n65534\n" {
			t.Fatalf("output %q, want \"aarch64\\n65534\\n\"", buf)
		}
		// The program runs now, in its own binfmt_misc instance; the
		// host's table has no handler for it.
		if during, mounted := hostAarch64Handlers(t); mounted && len(before) == 0 && len(during) > 0 {
			t.Errorf("while the program runs the host has arm64 handlers %q", during)
		}
		if _, err := io.WriteString(stdin, "bye\n"); err != nil {
			t.Fatal(err)
		}
		stdin.Close()
		rest, _ := io.ReadAll(stdout)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("mabd exec as uid 65534: %v\nstderr: %s", err, errb.String())
		}
		if string(rest) != "got bye\n" {
			t.Errorf("then output %q, want \"got bye\\n\"", rest)
		}
		if after, mounted := hostAarch64Handlers(t); mounted && len(after) != len(before) {
			t.Errorf("the host's arm64 handlers were %q, are %q", before, after)
		}
	})

	t.Run("UnknownPlatform", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/sparc", "--", bb, "true"), exitExecSetup, "", `mabd exec: unknown architecture "linux/sparc"`)
	})
	t.Run("NotLinux", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "windows/arm64", "--", bb, "true"), exitExecSetup, "", "binfmt_misc runs linux binaries only")
	})
	t.Run("DynamicEmulator", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator", "/bin/ls", "--", bb, "true"), exitExecSetup, "",
			"mabd exec: /bin/ls is dynamically linked: the F flag opens it at registration")
	})
	t.Run("WrongArchEmulator", func(t *testing.T) {
		arm := fixtures.Arches["armhf"].QEMUStatic()
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator", arm, "--", bb, "true"), exitExecSetup, "",
			"mabd exec: "+arm+` is QEMU's arm emulator (its --version says "qemu-arm"), not aarch64's`)
		// A copy named like the right one, found in --emulator-dir.
		wrong := filepath.Join(dir, "wrong")
		if err := os.Mkdir(wrong, 0o755); err != nil {
			t.Fatal(err)
		}
		copyExecutable(t, filepath.Join(wrong, "qemu-aarch64-static"), arm)
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator-dir", wrong, "--", bb, "true"), exitExecSetup, "",
			"mabd exec: "+filepath.Join(wrong, "qemu-aarch64-static")+" is QEMU's arm emulator")
	})
	t.Run("ScriptEmulator", func(t *testing.T) {
		script := filepath.Join(dir, "qemu-aarch64-static")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'qemu-aarch64 version 9.9.9'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(script)
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator", script, "--", bb, "true"), exitExecSetup, "",
			"mabd exec: "+script+" cannot be the aarch64 emulator: not an ELF executable")
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator-dir", dir, "--", bb, "true"), exitExecSetup, "",
			"mabd exec: "+script+" cannot be the aarch64 emulator: not an ELF executable")
	})
	t.Run("EmulatorMissing", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator", filepath.Join(dir, "nope"), "--", bb, "true"), exitExecSetup, "", "no such file or directory")
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--emulator-dir", dir, "--", bb, "true"), exitExecSetup, "", "qemu-aarch64-static not found in "+dir)
	})
	t.Run("CommandNotFound", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", "no-such-command-mabd"), exitExecNotFound, "", "no-such-command-mabd: command not found")
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", filepath.Join(dir, "nope")), exitExecNotFound, "", "no such file or directory")
	})
	t.Run("CommandNotExecutable", func(t *testing.T) {
		f := filepath.Join(dir, "data")
		if err := os.WriteFile(f, []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64", "--", f), exitExecCannot, "", "permission denied")
	})
	t.Run("Usage", func(t *testing.T) {
		want(t, mabd(t, "", "exec", "--platform", "linux/arm64"), exitExecSetup, "", "no command given")
		want(t, mabd(t, "", "exec", "--", bb, "true"), exitExecSetup, "", "--platform is required")
		want(t, mabd(t, "", "exec", "--no-such-flag", "--", bb, "true"), exitExecSetup, "", "unknown flag: --no-such-flag")
	})
	t.Run("NoLeftovers", func(t *testing.T) {
		des, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			t.Errorf("left behind in TMPDIR: %s", de.Name())
		}
	})
}

// TestExecKilled: `mabd exec` killed with SIGKILL while a foreign program
// runs leaves nothing behind: no mabd-exec-* in TMPDIR, no helper or
// program process, and the host's binfmt_misc as it was (the private
// instance is mounted over /proc/sys/fs/binfmt_misc in the sandbox's mount
// namespace only).
func TestExecKilled(t *testing.T) {
	dir := publicDir(t)
	bin := mabdBinary(t)
	bb := filepath.Join(dir, "busybox")
	copyExecutable(t, bb, fixtures.Busybox(t, "arm64"))
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	hostBefore := binfmtView(t)

	cmd := exec.Command(bin, "exec", "--platform", "linux/arm64", "--", bb, "sh", "-c",
		"ls /proc/sys/fs/binfmt_misc; echo ready; exec "+bb+" sleep 1000")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	out := make(chan string, 1)
	go func() {
		var b []byte
		buf := make([]byte, 256)
		for !bytes.HasSuffix(b, []byte("ready\n")) {
			n, err := stdout.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		out <- string(b)
	}()
	select {
	case got := <-out:
		if got != "qemu-aarch64\nregister\nstatus\nready\n" {
			t.Errorf("the program printed %q (stderr %q), want its private binfmt_misc listed and ready", got, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("the program did not start (stderr %q)", errb.String())
	}

	tree := procs.Tree(cmd.Process.Pid)[1:] // its descendants
	if len(tree) < 2 {
		t.Fatalf("mabd exec has %d descendants %v, want the helper and the program", len(tree), tree)
	}
	if during := binfmtView(t); during != hostBefore {
		t.Errorf("while the program runs the host's binfmt_misc is\n%s\nnot\n%s", during, hostBefore)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range tree {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d (of %v) outlived the SIGKILLed mabd exec", pid, tree)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	des, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("left behind in TMPDIR: %s", de.Name())
	}
	if after := binfmtView(t); after != hostBefore {
		t.Errorf("the host's binfmt_misc was\n%s\nand is\n%s", hostBefore, after)
	}
}

// binfmtView describes the binfmt_misc this process sees: its mounts (from
// /proc/self/mountinfo) and the files of /proc/sys/fs/binfmt_misc.
func binfmtView(t *testing.T) string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var view []string
	for line := range strings.Lines(string(mi)) {
		if strings.Contains(line, "binfmt_misc") {
			view = append(view, strings.TrimSpace(line))
		}
	}
	des, _ := os.ReadDir(binfmt.DefaultDir)
	for _, de := range des {
		view = append(view, de.Name())
	}
	return strings.Join(view, "\n")
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// TestExecInProcess runs `mabd exec` through run(): the test binary
// re-executes itself as the sandbox helper, which the init function of
// exec.go dispatches before the testing package starts.
func TestExecInProcess(t *testing.T) {
	bb := fixtures.Busybox(t, "arm64")
	var out, errb bytes.Buffer
	code := run([]string{"exec", "--platform", "linux/arm64", "--", bb, "sh", "-c", "uname -m; exit 5"}, &out, &errb)
	if code != 5 || out.String() != "aarch64\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 5, \"aarch64\\n\"", code, out.String(), errb.String())
	}
}

// nativePlatform returns an OCI platform this host runs natively.
func nativePlatform() string {
	switch runtime.GOARCH {
	case "amd64", "arm64", "ppc64le", "s390x", "riscv64":
		return "linux/" + runtime.GOARCH
	}
	return ""
}

func TestResolveExec(t *testing.T) {
	ctx := context.Background()
	qemu := fixtures.Arches["arm64"].QEMUStatic()

	tg, err := resolveExec(ctx, "linux/arm64", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tg.native || tg.arch.Name != "aarch64" || tg.emulator == nil || tg.emulator.Path != qemu || !tg.emulator.Static {
		t.Fatalf("resolveExec(linux/arm64) = %+v, emulator %+v", tg, tg.emulator)
	}
	wantFlags := binfmt.FixBinary
	if emulator.PreservesArgv0(tg.emulator.Version) {
		wantFlags |= binfmt.PreserveArgv0
	}
	if tg.flags != wantFlags || len(tg.warnings) != 0 || tg.emulator.Target != "aarch64" {
		t.Errorf("flags %s, want %s (emulator version %q); warnings %q, target %q", tg.flags, wantFlags, tg.emulator.Version, tg.warnings, tg.emulator.Target)
	}
	spec := tg.spec()
	if spec.Name != "qemu-aarch64" || spec.Interpreter != qemu || spec.Flags != wantFlags || spec.Validate() != nil {
		t.Errorf("spec() = %+v", spec)
	}

	tg, err = resolveExec(ctx, "arm64", qemu, nil)
	if err != nil || tg.emulator.Path != qemu {
		t.Errorf("resolveExec(arm64, %s) = %+v, %v", qemu, tg, err)
	}

	if native := nativePlatform(); native != "" {
		tg, err = resolveExec(ctx, native, "", nil)
		if err != nil || !tg.native || tg.emulator != nil {
			t.Errorf("resolveExec(%s) = %+v, %v; want native", native, tg, err)
		}
	}

	dir := t.TempDir()
	for _, tc := range []struct {
		platform, emulator string
		dirs               []string
		says               string
	}{
		{"linux/sparc", "", nil, `unknown architecture "linux/sparc"`},
		{"linux/arm64", "/bin/ls", nil, (&emulator.Emulator{Path: "/bin/ls"}).CheckFixBinary().Error()},
		{"linux/arm64", "/etc/passwd", nil, "/etc/passwd is not an executable file"},
		{"linux/arm64", filepath.Join(dir, "absent"), nil, "emulator stat " + filepath.Join(dir, "absent") + ": no such file or directory"},
		{"linux/arm64", "", []string{dir}, "qemu-aarch64-static not found"},
	} {
		_, err := resolveExec(ctx, tc.platform, tc.emulator, tc.dirs)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("resolveExec(%q, %q, %q) = %v, want it to say %q", tc.platform, tc.emulator, tc.dirs, err, tc.says)
		}
	}
	if _, err := resolveExec(ctx, "linux/arm64", "", []string{dir}); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("%v does not match ErrNotFound", err)
	}
}

// TestResolveExecRefuses: an emulator of another architecture, given or
// found, and a file that is no ELF executable are refused with the
// reason; one whose --version cannot be read is used without P, with a
// warning.
func TestResolveExecRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	armAsAarch64 := link("qemu-aarch64-static", fixtures.Arches["armhf"].QEMUStatic())
	busybox := link("qemu-riscv64-static", "/bin/busybox") // "qemu-riscv64-static: applet not found"
	script := filepath.Join(dir, "qemu-s390x-static")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'qemu-s390x version 9.9.9'\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, platform, emulator string
		dirs                     []string
		says                     string
	}{
		{"given, wrong architecture", "linux/arm64", armAsAarch64, nil,
			armAsAarch64 + ` is QEMU's arm emulator (its --version says "qemu-arm"), not aarch64's: it cannot run aarch64 programs; replace it with qemu-aarch64-static`},
		{"found, wrong architecture", "linux/arm64", "", []string{dir}, armAsAarch64 + " is QEMU's arm emulator"},
		{"arm for 386", "linux/386", fixtures.Arches["armhf"].QEMUStatic(), nil, "not i386's"},
		{"given, a script", "linux/s390x", script, nil, script + " cannot be the s390x emulator: not an ELF executable"},
		{"found, a script", "linux/s390x", "", []string{dir}, script + " cannot be the s390x emulator: not an ELF executable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := resolveExec(ctx, tt.platform, tt.emulator, tt.dirs)
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("resolveExec = %+v, %v; want it refused, saying %q", tg.emulator, err, tt.says)
			}
		})
	}

	tg, err := resolveExec(ctx, "riscv64", busybox, nil)
	if err != nil {
		t.Fatalf("an emulator whose --version fails: %v, want it used with a warning", err)
	}
	if tg.flags != binfmt.FixBinary || len(tg.warnings) != 1 || !strings.Contains(tg.warnings[0], busybox+" --version") {
		t.Errorf("flags %s, warnings %q; want F alone and a warning naming %s", tg.flags, tg.warnings, busybox)
	}
}

func TestExecLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "prog")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+".")
	if p, _, err := execLookPath("prog"); err != nil || p != exe {
		t.Errorf("execLookPath(prog) = %q, %v; want %q", p, err, exe)
	}
	t.Chdir(dir)
	if p, _, err := execLookPath("./prog"); err != nil || p != exe {
		t.Errorf("execLookPath(./prog) = %q, %v; want %q", p, err, exe)
	}
	for _, tc := range []struct {
		name string
		code int
		says string
	}{
		{"absent", exitExecNotFound, "absent: command not found in $PATH"},
		{"./absent", exitExecNotFound, "./absent: no such file or directory"},
		{"./data", exitExecCannot, "./data: permission denied"},
		{dir, exitExecCannot, dir + ": is a directory"},
	} {
		_, code, err := execLookPath(tc.name)
		if code != tc.code || err == nil || err.Error() != tc.says {
			t.Errorf("execLookPath(%q) = %d, %v; want %d, %q", tc.name, code, err, tc.code, tc.says)
		}
	}
}

func TestExecCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&userns.StartError{Program: "x", Err: syscall.ENOENT}, exitExecNotFound},
		{&userns.StartError{Program: "x", Err: syscall.EACCES}, exitExecCannot},
		{&userns.StartError{Program: "x", Err: syscall.ENOEXEC}, exitExecCannot},
		{&userns.StartError{Program: "x", Err: syscall.EPERM}, exitExecSetup},
		{&userns.UnavailableError{Reason: userns.Limit, Errno: syscall.ENOSPC, Err: syscall.ENOSPC}, exitExecSetup},
		{errors.New("other"), exitExecSetup},
	} {
		if got := execCode(tc.err); got != tc.want {
			t.Errorf("execCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestExplainExec: what mabd exec adds to the reasons private instances
// are not available.
func TestExplainExec(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&userns.KernelTooOldError{Release: "6.1.0-18-amd64"},
			"mabd exec needs Linux 6.7 or newer, where binfmt_misc is per user namespace; this kernel is 6.1.0-18-amd64"},
		{&userns.UnavailableError{Reason: userns.Disabled, Sysctl: userns.SysctlMaxUserNamespaces, Allow: "10000", Err: errors.New("/proc/sys/user/max_user_namespaces is 0")},
			"user namespaces are disabled: /proc/sys/user/max_user_namespaces is 0; enable them (as root) with `sysctl -w user.max_user_namespaces=10000`"},
		{&userns.UnavailableError{Reason: userns.Disabled, Sysctl: userns.SysctlUnprivilegedClone, Allow: "1", Err: errors.New("/proc/sys/kernel/unprivileged_userns_clone is 0")},
			"unprivileged user namespaces are disabled: /proc/sys/kernel/unprivileged_userns_clone is 0; enable them (as root) with `sysctl -w kernel.unprivileged_userns_clone=1`, or run mabd exec as root"},
		{&userns.UnavailableError{Reason: userns.Refused, Op: "create user and mount namespaces", Errno: syscall.EPERM, Err: syscall.EPERM},
			"create user and mount namespaces: operation not permitted (EPERM): user namespaces are not allowed for this process; check sysctl kernel.unprivileged_userns_clone (Debian and older Ubuntu kernels; `sysctl -w kernel.unprivileged_userns_clone=1`), AppArmor's kernel.apparmor_restrict_unprivileged_userns (Ubuntu 23.10 and later), and the seccomp profile of a container mabd runs in"},
		{&userns.UnavailableError{Reason: userns.Limit, Op: "create user and mount namespaces", Errno: syscall.ENOSPC, Err: syscall.ENOSPC},
			"(ENOSPC): a namespace limit is reached; raise `sysctl -w user.max_user_namespaces=10000` and user.max_mnt_namespaces, or end other namespaces of this user"},
		{&userns.UnavailableError{Reason: userns.NoFilesystem, Op: "mount binfmt_misc on /proc/sys/fs/binfmt_misc", Errno: syscall.ENODEV, Err: syscall.ENODEV},
			"(ENODEV): this kernel has no binfmt_misc file system; load it (as root) with `modprobe binfmt_misc`"},
		{&userns.UnavailableError{Reason: userns.MountRefused, Op: "mount binfmt_misc on /proc/sys/fs/binfmt_misc", Sysctl: userns.SysctlAppArmorRestricted, Allow: "0", Errno: syscall.EPERM, Err: syscall.EPERM},
			"AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns is 1); allow mabd in an AppArmor profile, or (as root) `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"},
		{&userns.UnavailableError{Reason: userns.MountRefused, Op: "mount binfmt_misc on /x", Errno: syscall.EPERM, Err: syscall.EPERM},
			"mount binfmt_misc on /x: operation not permitted (EPERM): the new user namespace may not mount: an AppArmor, SELinux or seccomp policy (a container's, for one) may forbid it"},
		{&userns.StartError{Program: "./x", Err: syscall.EACCES}, "./x: permission denied"},
	} {
		got := explainExec(tc.err).Error()
		if !strings.HasSuffix(got, tc.want) {
			t.Errorf("explainExec(%#v) =\n%q\nwant it to end\n%q", tc.err, got, tc.want)
		}
	}
}
