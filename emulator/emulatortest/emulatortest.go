// Package emulatortest gives tests the emulators they compare: Debian
// 12's QEMU 7.2 (qemu-user-static, in /usr/bin) and Debian 13's QEMU 10
// (qemu-user, extracted by `make deps` into [SecondDir]), copies of them
// in directories a test may change, and an emulator that crashes.
//
// A missing emulator fails the test, saying to run `make deps`; it is
// never skipped.
package emulatortest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mabd/emulator"
)

// SecondDir is where scripts/deps.sh (`make deps`) extracts Debian 13's
// qemu-user package (QEMU 10.0, static-pie emulators named
// qemu-<arch>): a second QEMU beside Debian 12's qemu-user-static.
const SecondDir = "/opt/mabd/qemu-debian13/usr/bin"

// FirstDir is where Debian 12's qemu-user-static installs its
// emulators, named qemu-<arch>-static.
const FirstDir = "/usr/bin"

// First returns the path of Debian 12's static emulator for arch (a QEMU
// name), failing the test when it is missing.
func First(t testing.TB, arch string) string {
	t.Helper()
	return need(t, filepath.Join(FirstDir, "qemu-"+arch+"-static"), "install qemu-user-static (make deps)")
}

// Second returns the path of Debian 13's emulator for arch, failing the
// test when it is missing or does not say it is QEMU 10 or later.
func Second(t testing.TB, arch string) string {
	t.Helper()
	p := need(t, filepath.Join(SecondDir, "qemu-"+arch), "run `make deps`: it extracts Debian 13's qemu-user into "+filepath.Dir(filepath.Dir(SecondDir)))
	v := Version(t, p)
	if major, _, _ := strings.Cut(v, "."); len(major) < 2 {
		t.Fatalf("%s is QEMU %s, want 10 or later: run `make deps` again", p, v)
	}
	return p
}

// Version returns what the emulator at path says its QEMU version is.
func Version(t testing.TB, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := emulator.Version(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func need(t testing.TB, p, fix string) string {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: %s", err, fix)
	}
	return p
}

// Dir returns a new directory in /tmp that CheckTrusted accepts for
// emulators (the tests run as root: root-owned, mode 0755, in the sticky
// /tmp), with a short path (a binfmt_misc interpreter has at most 127
// bytes), removed with the test.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "mabd-emu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// Copy copies the emulator src into dir as name (mode 0755) and returns
// the copy's path: a candidate the test may replace.
func Copy(t testing.TB, src, dir, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Untrusted copies the emulator src as name into a new Dir and makes it
// writable by everyone, which CheckTrusted refuses; it returns the
// directory and the copy's path.
func Untrusted(t testing.TB, src, name string) (dir, path string) {
	t.Helper()
	dir = Dir(t)
	path = Copy(t, src, dir, name)
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// crasherSrc answers --version like QEMU's emulator for an architecture
// and dies of SIGSEGV on anything else: an emulator that looks fine and
// crashes every program.
const crasherSrc = `package main

import (
	"os"
	"syscall"
	"unsafe"
)

var target = "TARGET"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		os.Stdout.WriteString("qemu-" + target + " version 7.2.22 (mabd test: crashes)\n")
		return
	}
	// Restore the default action (the Go runtime handles SIGSEGV) and
	// die of it, without a core file.
	syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	var sa [4]uintptr // SIG_DFL, no flags, no restorer, empty mask
	syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	syscall.Kill(syscall.Getpid(), syscall.SIGSEGV)
	select {}
}
`

// Crasher builds, as dir/name (mode 0755), a static program that answers
// --version as QEMU 7.2.22's emulator for arch does and dies of SIGSEGV
// on anything else, and returns its path.
func Crasher(t testing.TB, dir, name, arch string) string {
	t.Helper()
	src := t.TempDir()
	for file, text := range map[string]string{
		"main.go": strings.Replace(crasherSrc, "TARGET", arch, 1),
		"go.mod":  "module crasher\n\ngo 1.26\n",
	} {
		if err := os.WriteFile(filepath.Join(src, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the crashing emulator: %v", err)
	}
	bin := filepath.Join(src, "crasher")
	cmd := exec.Command(gotool, "build", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the crashing emulator: %v\n%s", err, out)
	}
	return Copy(t, bin, dir, name)
}
