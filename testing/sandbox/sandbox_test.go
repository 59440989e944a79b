package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mabd/testing/sandbox"
)

// entry registers extension .sbtest with /bin/cat as interpreter: running
// x.sbtest prints the file instead of failing with ENOEXEC.
const entry = ":sbtest:E::sbtest::/bin/cat:"

const binfmtMagic = 0x42494e4d

// fromParent returns the value of the environment variable key if it is
// set (as in a sandboxed child, which inherits the parent's environment),
// and otherwise sets it to compute() for the rest of the test. This is how
// a test shares values between the parent and the sandboxed body.
func fromParent(t *testing.T, key string, compute func() string) string {
	t.Helper()
	if v := os.Getenv(key); v != "" {
		return v
	}
	v := compute()
	t.Setenv(key, v)
	return v
}

// sharedDir returns a directory that the parent and the sandboxed bodies of
// the test share.
func sharedDir(t *testing.T) string {
	t.Helper()
	return fromParent(t, "SBTEST_SHARED", t.TempDir)
}

// hostUserNS returns the user namespace of the top-level test process.
func hostUserNS(t *testing.T) string {
	t.Helper()
	return fromParent(t, "SBTEST_HOST_USERNS", func() string { return readlink(t, "/proc/self/ns/user") })
}

func readlink(t *testing.T, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// payload creates dir/x.sbtest, an executable that only the entry can run.
func payload(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "x.sbtest")
	if err := os.WriteFile(path, []byte("sbtest payload\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// markerPath is where the body of the test called name leaves a marker.
func markerPath(shared, name string) string {
	return filepath.Join(shared, url.PathEscape(name)+".ran")
}

// markRan records in shared that the body of t ran, in which user
// namespace.
func markRan(t *testing.T, shared string) {
	t.Helper()
	ns := readlink(t, "/proc/self/ns/user")
	if err := os.WriteFile(markerPath(shared, t.Name()), []byte(t.Name()+"\n"+ns), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkRan checks in the parent that the body of t ran in a user namespace
// other than the host's, and returns that namespace.
func checkRan(t *testing.T, shared string) string {
	t.Helper()
	b, err := os.ReadFile(markerPath(shared, t.Name()))
	if err != nil {
		t.Fatalf("the sandboxed body did not run: %v", err)
	}
	name, ns, _ := strings.Cut(string(b), "\n")
	if name != t.Name() {
		t.Errorf("the body ran as %q, want %q", name, t.Name())
	}
	if ns == "" || ns == hostUserNS(t) {
		t.Errorf("the body ran in user namespace %q, the host's is %q", ns, hostUserNS(t))
	}
	return ns
}

// checkEmptyInstance checks that mount is a fresh binfmt_misc instance.
func checkEmptyInstance(t *testing.T, mount string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != binfmtMagic {
		t.Errorf("%s: file system type %#x, want binfmt_misc (%#x)", mount, st.Type, binfmtMagic)
	}
	if got := listDir(t, mount); !slices.Equal(got, []string{"register", "status"}) {
		t.Errorf("%s holds %q, want only register and status", mount, got)
	}
	if b, err := os.ReadFile(filepath.Join(mount, "status")); err != nil || string(b) != "enabled\n" {
		t.Errorf("%s/status: %q, %v; want \"enabled\\n\"", mount, b, err)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// register writes entry to mount/register and checks the new entry.
func register(t *testing.T, mount, entry string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(mount, "register"), []byte(entry), 0); err != nil {
		t.Fatalf("register %q: %v", entry, err)
	}
	name := strings.Split(entry, ":")[1]
	b, err := os.ReadFile(filepath.Join(mount, name))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "enabled\n") {
		t.Errorf("%s/%s: %q, want it enabled", mount, name, b)
	}
}

// checkNotOnHost checks that no binfmt_misc mount of the host holds an
// entry called name, and that the host cannot run a .sbtest payload.
func checkNotOnHost(t *testing.T, name, payload string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		before, after, ok := strings.Cut(line, " - ")
		fields := strings.Fields(before)
		if !ok || len(fields) < 5 || !strings.HasPrefix(after, "binfmt_misc ") {
			continue
		}
		path := filepath.Join(fields[4], name)
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("host binfmt_misc mount %s: entry %s: %v (want it absent)", fields[4], name, err)
		}
	}
	if payload != "" {
		out, err := exec.Command(payload).CombinedOutput()
		if !errors.Is(err, syscall.ENOEXEC) {
			t.Errorf("running %s on the host: %v, %q; want ENOEXEC (no handler on the host)", payload, err, out)
		}
	}
}

func TestAvailable(t *testing.T) {
	sandbox.Require(t)
	if err := sandbox.Available(); err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	shared := sharedDir(t)
	host := hostUserNS(t)
	x := payload(t, shared)
	sandbox.Run(t, func(t *testing.T, mount string) {
		if ns := readlink(t, "/proc/self/ns/user"); ns == host {
			t.Fatalf("body runs in the host's user namespace %s", ns)
		}
		checkEmptyInstance(t, mount)
		register(t, mount, entry)
		out, err := exec.Command(x).Output()
		if err != nil || string(out) != "sbtest payload\n" {
			t.Errorf("running %s in the sandbox: %q, %v; want the handler to print it", x, out, err)
		}
		markRan(t, shared)
	})
	checkRan(t, shared)
	checkNotOnHost(t, "sbtest", x)
}

func TestRunTwice(t *testing.T) {
	shared := sharedDir(t)
	sandbox.Run(t, func(t *testing.T, mount string) {
		checkEmptyInstance(t, mount)
		register(t, mount, ":sbtest1:E::sbtest1::/bin/cat:")
		if err := os.WriteFile(filepath.Join(shared, "first"), []byte(readlink(t, "/proc/self/ns/user")), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	sandbox.Run(t, func(t *testing.T, mount string) {
		checkEmptyInstance(t, mount) // no sbtest1
		register(t, mount, ":sbtest2:E::sbtest2::/bin/cat:")
		if err := os.WriteFile(filepath.Join(shared, "second"), []byte(readlink(t, "/proc/self/ns/user")), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	first, err1 := os.ReadFile(filepath.Join(shared, "first"))
	second, err2 := os.ReadFile(filepath.Join(shared, "second"))
	if err1 != nil || err2 != nil {
		t.Fatalf("a body did not run: %v, %v", err1, err2)
	}
	if string(first) == string(second) || string(first) == hostUserNS(t) || string(second) == hostUserNS(t) {
		t.Errorf("user namespaces: first %s, second %s, host %s; want three different ones", first, second, hostUserNS(t))
	}
	checkNotOnHost(t, "sbtest1", "")
	checkNotOnHost(t, "sbtest2", "")
}

func TestRunSubtests(t *testing.T) {
	shared := sharedDir(t)
	// The names go test gives the subtests below.
	names := []string{
		"TestRunSubtests/name_with_spaces",
		`TestRunSubtests/meta.*+?(x)|[y]{2}^$\`,
		"TestRunSubtests/dup",
		"TestRunSubtests/dup#01",
		"TestRunSubtests/outer/inner_one",
		"TestRunSubtests/outer/inner_two",
	}
	body := func(t *testing.T, mount string) {
		checkEmptyInstance(t, mount)
		register(t, mount, entry)
		markRan(t, shared)
	}
	run := func(t *testing.T) {
		if !slices.Contains(names, t.Name()) {
			t.Errorf("unexpected subtest name %q", t.Name())
		}
		sandbox.Run(t, body)
		checkRan(t, shared)
	}
	t.Run("name with spaces", run)
	t.Run("meta.*+?(x)|[y]{2}^$\\", run)
	t.Run("dup", run)
	t.Run("dup", run) // TestRunSubtests/dup#01
	t.Run("outer", func(t *testing.T) {
		t.Run("inner one", run)
		t.Run("inner two", run)
	})
	checkNotOnHost(t, "sbtest", "")
}

// TestRunOutcome runs TestHelperOutcome in a child process to check how
// Run reports bodies that fail, skip or nest Run.
func TestRunOutcome(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		wantErr bool
		want    []string
	}{
		{"fail", true, []string{"deliberate failure in the body", "--- FAIL: TestHelperOutcome"}},
		{"fatal", true, []string{"deliberate fatal error in the body", "--- FAIL: TestHelperOutcome"}},
		{"skip", false, []string{"deliberate skip in the body", "--- SKIP: TestHelperOutcome"}},
		{"nested", true, []string{"nested Run is not supported", "--- FAIL: TestHelperOutcome"}},
		{"pass", false, []string{"body passed", "--- PASS: TestHelperOutcome", "the parent continues after Run"}},
		{"panic", true, []string{"panic: deliberate panic in the body", "--- FAIL: TestHelperOutcome"}},
		{"hang", true, []string{"panic: test timed out after", "sandbox_test.TestHelperOutcome.func", "--- FAIL: TestHelperOutcome"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			timeout := "-test.timeout=30s"
			if tc.mode == "hang" {
				timeout = "-test.timeout=3s"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOutcome$", "-test.v", "-test.count=1", timeout)
			cmd.Env = append(os.Environ(), "SBTEST_HELPER="+tc.mode, "GORACE=atexit_sleep_ms=0")
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.wantErr {
				t.Errorf("error %v, want error: %v", err, tc.wantErr)
			}
			for _, w := range tc.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestHelperOutcome does nothing unless TestRunOutcome runs it.
func TestHelperOutcome(t *testing.T) {
	mode := os.Getenv("SBTEST_HELPER")
	if mode == "" {
		return
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		switch mode {
		case "fail":
			t.Error("deliberate failure in the body")
		case "fatal":
			t.Fatal("deliberate fatal error in the body")
		case "skip":
			t.Skip("deliberate skip in the body")
		case "nested":
			sandbox.Run(t, func(t *testing.T, mount string) {})
		case "pass":
			t.Log("body passed")
		case "panic":
			panic("deliberate panic in the body")
		case "hang":
			time.Sleep(time.Minute)
		}
	})
	if mode == "pass" {
		t.Log("the parent continues after Run")
	}
}

// TestScriptInsideRun checks that a body can use Script, which gets an
// instance of its own.
func TestScriptInsideRun(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		register(t, mount, entry)
		out, err := sandbox.Script(context.Background(), `echo $(ls "$BINFMT")`).CombinedOutput()
		if err != nil || string(out) != "register status\n" {
			t.Errorf("Script inside Run: %q, %v; want an empty instance", out, err)
		}
		if _, err := os.Stat(filepath.Join(mount, "sbtest")); err != nil {
			t.Errorf("the body's own instance: %v", err)
		}
	})
}

func TestScript(t *testing.T) {
	x := payload(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := sandbox.Script(ctx, `
		set -e
		test "$BINFMT" = "$MABD_BINFMT_MOUNT"
		echo "mount $BINFMT"
		echo "entries" $(ls "$BINFMT")
		echo "status $(cat "$BINFMT/status")"
		echo "pid $$"
		printf '%s' "$ENTRY" > "$BINFMT/register"
		# Second and third commands, each its own process, see the entry.
		sh -c 'echo "second $(head -n1 "$BINFMT/sbtest")"'
		echo "third $("$X")"
	`)
	cmd.Env = append(os.Environ(), "ENTRY="+entry, "X="+x)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		got[k] = v
	}
	for k, want := range map[string]string{
		"entries": "register status",
		"status":  "enabled",
		"second":  "enabled",
		"third":   "sbtest payload",
	} {
		if got[k] != want {
			t.Errorf("%s: %q, want %q\n%s", k, got[k], want, out)
		}
	}
	if got["pid"] == "1" || got["pid"] == "" {
		t.Errorf("pid %q: want the script not to be PID 1 of the sandbox", got["pid"])
	}
	mount := got["mount"]
	if !strings.HasPrefix(mount, filepath.Join(os.TempDir(), "mabd-binfmt-")) {
		t.Errorf("mount %q, want a directory in %s", mount, os.TempDir())
	}
	if _, err := os.Lstat(mount); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point %s left behind: %v", mount, err)
	}
	checkNotOnHost(t, "sbtest", x)
}

// TestScriptInstances checks that two sandboxes that run at the same time
// have different instances.
func TestScriptInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := sandbox.Script(ctx, `printf '%s' "$ENTRY" > "$BINFMT/register" && ls "$BINFMT" | tr '\n' ' ' && echo && cat >/dev/null`)
	first.Env = append(os.Environ(), "ENTRY="+entry)
	stdin, err := first.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "register sbtest status \n" {
		t.Errorf("first sandbox: %q, %v\n%s", line, err, stderr.Bytes())
	}

	out, err := sandbox.Script(ctx, `ls "$BINFMT" | tr '\n' ' '`).CombinedOutput()
	if err != nil || string(out) != "register status " {
		t.Errorf("second sandbox, while the first runs: %q, %v; want an empty instance", out, err)
	}

	stdin.Close()
	if err := first.Wait(); err != nil {
		t.Errorf("first sandbox: %v\n%s", err, stderr.Bytes())
	}
	checkNotOnHost(t, "sbtest", "")
}

func TestCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sandbox.Command(ctx, "sh", "-c", `echo "$1 $2 $MABD_BINFMT_MOUNT $BINFMT"; ls "$1"`, "sh", "{{binfmt}}", "--dir={{binfmt}}/x").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fields := strings.Fields(lines[0])
	if len(fields) != 4 || fields[1] != "--dir="+fields[0]+"/x" || fields[2] != fields[0] || fields[3] != fields[0] {
		t.Errorf("substitution and environment: %q", lines[0])
	}
	if !slices.Equal(lines[1:], []string{"register", "status"}) {
		t.Errorf("instance holds %q, want only register and status", lines[1:])
	}

	// The program is looked up in $PATH; its exit status is passed on.
	err = sandbox.Command(ctx, "false").Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("false: %v, want exit status 1", err)
	}
}

// TestScriptCancel checks that cancelling the context kills everything in
// the sandbox, background processes included, and removes the mount point.
func TestScriptCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := sandbox.Script(ctx, `echo "$BINFMT"; sleep 60 & sleep 60`)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd.Stdout = w
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	br := bufio.NewReader(r)
	mount, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	mount = strings.TrimSpace(mount)
	cancel()
	if err := cmd.Wait(); err == nil {
		t.Errorf("Wait after cancel: no error")
	}
	// All writers of the pipe (the sleeps) are gone: EOF at once.
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after Wait: %q, %v; want EOF (every process in the sandbox killed)", rest, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if _, err := os.Lstat(mount); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point %s left behind: %v", mount, err)
	}
}

// TestUnprivileged runs TestHelperUnprivileged as user nobody (65534) from
// a copy of the test binary that nobody can read.
func TestUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Log("not root: the other tests already run unprivileged")
		return
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sandbox.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestHelperUnprivileged$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBTEST_UNPRIVILEGED=1", "HOME="+dir, "ENTRY="+entry, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, w := range []string{"uid 65534", "script: register sbtest status", "run: body ran", "--- PASS: TestHelperUnprivileged"} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("output lacks %q\n%s", w, out)
		}
	}
}

// TestHelperUnprivileged does nothing unless TestUnprivileged runs it.
func TestHelperUnprivileged(t *testing.T) {
	if os.Getenv("SBTEST_UNPRIVILEGED") == "" {
		return
	}
	t.Logf("uid %d", os.Getuid())
	out, err := sandbox.Script(context.Background(), `printf '%s' "$ENTRY" > "$BINFMT/register" && echo $(ls "$BINFMT")`).CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	t.Logf("script: %s", bytes.TrimSpace(out))
	sandbox.Run(t, func(t *testing.T, mount string) {
		checkEmptyInstance(t, mount)
		register(t, mount, entry)
		t.Log("run: body ran")
	})
}
