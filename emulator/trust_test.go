package emulator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trustRoot returns a fresh directory for CheckTrusted's tests: t.TempDir
// (root's, mode 0700, under the sticky /tmp), made 0755. The tests chown
// files, so they need root.
func trustRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("CheckTrusted's tests chown files to uid 65534 and need files owned by root: run them as root (make test)")
	}
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// trustFile writes an executable file at p (mode applied with chmod, so
// the umask does not hide world-writable bits).
func trustFile(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCheckTrusted(t *testing.T) {
	tests := []struct {
		name string
		// setup builds the case under root and returns the path to check.
		setup func(t *testing.T, root string) string
		// ok: no error; else the error contains every string of says.
		ok   bool
		says []string
	}{
		{"installed emulator", func(t *testing.T, root string) string {
			return "/usr/bin/qemu-aarch64-static"
		}, true, nil},
		{"root's file, mode 0755", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64")
			trustFile(t, p, 0o755)
			return p
		}, true, nil},
		{"group-writable is not refused", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64")
			trustFile(t, p, 0o775)
			return p
		}, true, nil},
		{"world-writable file", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64")
			trustFile(t, p, 0o777)
			return p
		}, false, []string{"/qemu-aarch64 is writable by everyone (mode 0777): anyone could replace the emulator that runs every arm64 program; chmod o-w it or install qemu-user-static"}},
		{"file owned by another user", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-riscv64-static")
			trustFile(t, p, 0o755)
			chown(t, p, 65534)
			return p
		}, false, []string{"/qemu-riscv64-static is owned by uid 65534, not root", "every riscv64 program", "chown root it"}},
		{"world-writable directory", func(t *testing.T, root string) string {
			d := filepath.Join(root, "open")
			p := filepath.Join(d, "qemu-s390x")
			trustFile(t, p, 0o755)
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, []string{"directory " + "ROOT/open is writable by everyone (mode 0777) without the sticky bit", "anyone could replace ROOT/open/qemu-s390x", "every s390x program", "chmod o-w ROOT/open"}},
		{"world-writable sticky directory, like /tmp", func(t *testing.T, root string) string {
			d := filepath.Join(root, "sticky")
			p := filepath.Join(d, "qemu-aarch64")
			trustFile(t, p, 0o755)
			if err := os.Chmod(d, os.ModeSticky|0o777); err != nil {
				t.Fatal(err)
			}
			return p
		}, true, nil},
		{"directory owned by another user", func(t *testing.T, root string) string {
			d := filepath.Join(root, "theirs")
			p := filepath.Join(d, "qemu-aarch64")
			trustFile(t, p, 0o755)
			chown(t, d, 65534)
			return p
		}, false, []string{"directory ROOT/theirs is owned by uid 65534, not root"}},
		{"symlink to a good file", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64-static")
			if err := os.Symlink("/usr/bin/qemu-aarch64-static", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, true, nil},
		{"relative symlink through a directory symlink", func(t *testing.T, root string) string {
			trustFile(t, filepath.Join(root, "real", "qemu-arm"), 0o755)
			if err := os.Symlink("real", filepath.Join(root, "alias")); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, "qemu-arm")
			if err := os.Symlink("alias/../alias/qemu-arm", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, true, nil},
		{"symlink to a world-writable file", func(t *testing.T, root string) string {
			trustFile(t, filepath.Join(root, "real", "qemu-aarch64"), 0o777)
			p := filepath.Join(root, "qemu-aarch64")
			if err := os.Symlink("real/qemu-aarch64", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, []string{"ROOT/real/qemu-aarch64 (which ROOT/qemu-aarch64 leads to) is writable by everyone (mode 0777)"}},
		{"symlink through a world-writable directory", func(t *testing.T, root string) string {
			d := filepath.Join(root, "open")
			trustFile(t, filepath.Join(d, "qemu-aarch64"), 0o755)
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, "qemu-aarch64")
			if err := os.Symlink(filepath.Join(d, "qemu-aarch64"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, []string{"directory ROOT/open is writable by everyone"}},
		{"another user's symlink in a root directory", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64")
			if err := os.Symlink("/usr/bin/qemu-aarch64-static", p); err != nil {
				t.Fatal(err)
			}
			lchown(t, p, 65534)
			return p // its owner cannot change it: fine
		}, true, nil},
		{"another user's symlink in a sticky directory", func(t *testing.T, root string) string {
			d := filepath.Join(root, "sticky")
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, os.ModeSticky|0o777); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, "qemu-aarch64")
			if err := os.Symlink("/usr/bin/qemu-aarch64-static", p); err != nil {
				t.Fatal(err)
			}
			lchown(t, p, 65534)
			return p
		}, false, []string{"symlink ROOT/sticky/qemu-aarch64 is owned by uid 65534", "that user could point it at another program"}},
		{"relative path", func(t *testing.T, root string) string {
			return "bin/qemu-aarch64"
		}, false, []string{`emulator path "bin/qemu-aarch64" is not absolute`, "give its absolute path"}},
		{"missing file", func(t *testing.T, root string) string {
			return filepath.Join(root, "qemu-aarch64")
		}, false, []string{"ROOT/qemu-aarch64: no such file or directory"}},
		{"a directory", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, []string{"ROOT/qemu-aarch64 is a directory"}},
		{"symlink loop", func(t *testing.T, root string) string {
			p := filepath.Join(root, "qemu-aarch64")
			if err := os.Symlink("qemu-aarch64", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, []string{"too many levels of symbolic links"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := trustRoot(t)
			p := tt.setup(t, root)
			err := CheckTrusted(p)
			t.Logf("CheckTrusted(%s) = %v", p, err)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, s := range tt.says {
				s = strings.ReplaceAll(s, "ROOT", root)
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the error does not say %q:\n%v", s, err)
				}
			}
		})
	}
}

func TestCheckTrustedMissingIsNotExist(t *testing.T) {
	err := CheckTrusted(filepath.Join(trustRoot(t), "nope", "qemu-aarch64"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v does not match fs.ErrNotExist", err)
	}
}

// TestCheckTrustedFor: mabd exec accepts the caller's own emulator, not
// another user's.
func TestCheckTrustedFor(t *testing.T) {
	root := trustRoot(t)
	p := filepath.Join(root, "qemu-aarch64")
	trustFile(t, p, 0o755)
	chown(t, p, 65534)
	if err := CheckTrustedFor(p, 65534); err != nil {
		t.Errorf("the caller's own emulator was refused: %v", err)
	}
	err := CheckTrustedFor(p, 1000)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534, not root or you (uid 1000)") {
		t.Errorf("another user's emulator: %v", err)
	}
	if err := os.Chmod(p, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckTrustedFor(p, 65534); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("the caller's world-writable emulator: %v", err)
	}
}

// TestFindTrusted: an untrusted emulator is reported, not found and never
// run (its --version would fail the test).
func TestFindTrusted(t *testing.T) {
	root := trustRoot(t)
	good := filepath.Join(root, "good")
	bad := filepath.Join(root, "bad")
	for _, d := range []string{good, bad} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("/usr/bin/qemu-aarch64-static")
	if err != nil {
		t.Fatalf("%v: install qemu-user-static (make deps)", err)
	}
	if err := os.WriteFile(filepath.Join(good, "qemu-aarch64-static"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// A world-writable static ELF that fails when run with --version
	// (busybox: "qemu-riscv64-static: applet not found"), so FindTrusted
	// would return an error had it run it.
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("%v: install busybox-static (make deps)", err)
	}
	trustFile(t, filepath.Join(bad, "qemu-riscv64-static"), 0o755)
	if err := os.WriteFile(filepath.Join(bad, "qemu-riscv64-static"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(bad, "qemu-riscv64-static"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Version(context.Background(), filepath.Join(bad, "qemu-riscv64-static")); err == nil {
		t.Fatal("busybox --version passed for a QEMU version: this test cannot tell whether FindTrusted runs it")
	}
	found, refused, err := FindTrusted(context.Background(), []string{"aarch64", "riscv64", "s390x"}, []string{good, bad}, true)
	if err != nil {
		t.Fatalf("FindTrusted: %v (did it run the untrusted emulator?)", err)
	}
	if e := found["aarch64"]; e == nil || e.Version == "" {
		t.Errorf("aarch64: %+v, want found with its version", e)
	}
	if _, ok := found["riscv64"]; ok {
		t.Error("the world-writable riscv64 emulator was found")
	}
	if err := refused["riscv64"]; err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("refused[riscv64] = %v", err)
	}
	if _, ok := found["s390x"]; ok || refused["s390x"] != nil {
		t.Error("s390x has no emulator in these directories")
	}
}

// TestFindTrustedWithRefuses: with a cache, FindTrustedWith reads each
// emulator's target and refuses one of another architecture; a file that
// is no ELF executable is refused with or without one; an emulator whose
// --version cannot be parsed is found, with a warning.
func TestFindTrustedWithRefuses(t *testing.T) {
	dir := trustRoot(t)
	copyFile := func(name, src string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%v: install qemu-user-static (make deps)", err)
		}
		p := filepath.Join(dir, name)
		writeFile(t, p, b, 0o755)
		return p
	}
	wrong := copyFile("qemu-aarch64-static", "/usr/bin/qemu-arm-static")
	good := copyFile("qemu-s390x-static", "/usr/bin/qemu-s390x-static")
	echo := copyFile("qemu-ppc64le-static", "/bin/echo") // --version: "echo (GNU coreutils) 9.1"
	shell := filepath.Join(dir, "qemu-riscv64-static")
	writeFile(t, shell, []byte("#!/bin/sh\necho 'qemu-riscv64 version 9.9.9'\n"), 0o755)
	arches := []string{"aarch64", "riscv64", "s390x", "ppc64le", "mips64el"}

	for _, withCache := range []bool{true, false} {
		t.Run(fmt.Sprintf("cache=%v", withCache), func(t *testing.T) {
			var cache *VersionCache
			if withCache {
				cache, _ = LoadVersionCache(filepath.Join(t.TempDir(), "emulators.json"))
			}
			found, refused, err := FindTrustedWith(context.Background(), arches, []string{dir}, cache)
			t.Logf("found %v\nrefused %v\nerr %v", found, refused, err)

			var wt *WrongTargetError
			if !withCache {
				if found["aarch64"] == nil {
					t.Errorf("without a cache nothing runs, so the arm emulator is found for aarch64: %v", refused["aarch64"])
				}
			} else if !errors.As(refused["aarch64"], &wt) || *wt != (WrongTargetError{Path: wrong, Want: "aarch64", Got: "arm"}) {
				t.Errorf("refused[aarch64] = %#v, want a *WrongTargetError for %s", refused["aarch64"], wrong)
			} else {
				msg := wt.Error()
				for _, w := range []string{wrong, "QEMU's arm emulator", `"qemu-arm"`, "not aarch64's", "replace it with qemu-aarch64-static"} {
					if !strings.Contains(msg, w) {
						t.Errorf("%q does not say %q", msg, w)
					}
				}
				if found["aarch64"] != nil {
					t.Error("the arm emulator was found for aarch64")
				}
			}

			var ue *UnusableError
			if !errors.As(refused["riscv64"], &ue) || !errors.Is(refused["riscv64"], ErrNotELF) || ue.Path != shell || ue.Arch != "riscv64" {
				t.Errorf("refused[riscv64] = %#v, want an *UnusableError matching ErrNotELF", refused["riscv64"])
			} else if want := shell + " cannot be the riscv64 emulator: not an ELF executable; install qemu-user-static"; ue.Error() != want {
				t.Errorf("refused[riscv64] says %q, want %q", ue.Error(), want)
			}
			if found["riscv64"] != nil {
				t.Error("the script was found")
			}

			s := found["s390x"]
			if s == nil || s.Path != good || refused["s390x"] != nil {
				t.Fatalf("s390x: %+v, %v", s, refused["s390x"])
			}
			if withCache && (s.Target != "s390x" || !versionPattern.MatchString(s.Version)) {
				t.Errorf("s390x: version %q target %q", s.Version, s.Target)
			}
			if !withCache && (s.Target != "" || s.Version != "") {
				t.Errorf("s390x without a cache: version %q target %q, want none read", s.Version, s.Target)
			}

			p := found["ppc64le"]
			if p == nil || p.Path != echo || p.Version != "" || p.Target != "" {
				t.Errorf("ppc64le (unparsable --version): %+v, want found without version", p)
			}
			if withCache != errors.Is(err, ErrUnknownVersion) || withCache && !strings.Contains(fmt.Sprint(err), echo) {
				t.Errorf("err = %v; want a warning naming %s exactly when versions are read", err, echo)
			}
			if found["mips64el"] != nil || refused["mips64el"] != nil {
				t.Error("mips64el has no emulator here")
			}
		})
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func lchown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}
