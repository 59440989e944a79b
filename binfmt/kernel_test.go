package binfmt_test

// Tests against the real kernel, each in a private binfmt_misc instance.

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mabd/binfmt"
	"mabd/testing/sandbox"
)

// TestParseAgreesWithKernel writes lines to a real register file and checks
// that Parse accepts what the kernel accepts (and reads back the same
// entry), and rejects what the kernel rejects. The one deliberate
// difference, offset+magic of 128 to 255 bytes, is listed apart.
func TestParseAgreesWithKernel(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		m := binfmt.Mount{Dir: mount}
		lines := []string{
			`:k1:M::\x7fELF\x02:\xff\xff\xff\xff\xfe:/bin/true:PF`,
			`:k2:M:2:MZ::/bin/true:`,
			`:k3:E::kext::/bin/true:POCF`,
			"|k4|M||a:b||/bin/true|",
			`:k5:M::\\x41::/bin/true:`,
			`:k6:M::\xAB\xcd::/bin/true:C`,
			":k7:M::zz::/bin/true",
			":k8:M::yy::/bin/true:F\n",
			`:k9:M::a\x4::/bin/true:`,
			`:k10:M::x:\xff\xff:/bin/true:`,
			`:k11:X::x::/bin/true:`,
			`:k12:M::x::/bin/true:Z`,
			":k/13:M::x::/bin/true:",
			":k14:M::x::/bin/true:F\n\n",
			`:k15:M::::/bin/true:`,
			`:k16:E::a/b::/bin/true:`,
			":k17:M:1x:x::/bin/true:",
			":k18:M::x:::",
			":k19:M::x::/bin/true:F:",
			":k20:M::w::/nonexistent/interpreter:",
		}
		for _, line := range lines {
			spec, perr := binfmt.Parse(line)
			f, err := os.OpenFile(m.Path("register"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, kerr := f.Write([]byte(line))
			f.Close()
			if (perr == nil) != (kerr == nil) {
				t.Errorf("%q: Parse error %v, kernel error %v", line, perr, kerr)
				continue
			}
			if perr != nil {
				continue
			}
			e, err := m.Entry(spec.Name)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if !e.Spec.Equal(spec) || !e.Enabled {
				t.Errorf("%q: kernel reads back %#v, Parse gave %#v", line, e.Spec, spec)
			}
		}
		// mabd is stricter on purpose: offset+magic must stay under 128 as
		// on kernels before 5.1; this kernel takes up to 256.
		if _, err := binfmt.Parse(":k30:M:200:x::/bin/true:"); err == nil {
			t.Error("Parse accepted offset 200")
		}
		// mabd also refuses a relative interpreter, which the kernel takes.
		if _, err := binfmt.Parse(":k31:M::x::bin/true:"); err == nil {
			t.Error("Parse accepted a relative interpreter")
		}
	})
}

func TestMountOperations(t *testing.T) {
	sandbox.Run(t, func(t *testing.T, mount string) {
		m := binfmt.Mount{Dir: mount}
		if ok, err := binfmt.Mounted(mount); !ok || err != nil {
			t.Fatalf("Mounted(%s) = %v, %v", mount, ok, err)
		}
		if ok, _ := binfmt.Mounted(t.TempDir()); ok {
			t.Fatal("a plain directory counted as mounted")
		}
		if mounted, err := binfmt.EnsureMounted(mount); mounted || err != nil {
			t.Fatalf("EnsureMounted on a mount = %v, %v; want false, nil", mounted, err)
		}
		dir, err := os.MkdirTemp("", "binfmt-ensure-") // a mount point: no cleanup, the mount dies with the sandbox
		if err != nil {
			t.Fatal(err)
		}
		if mounted, err := binfmt.EnsureMounted(dir); !mounted || err != nil {
			t.Fatalf("EnsureMounted(%s) = %v, %v", dir, mounted, err)
		}
		if err := (binfmt.Mount{Dir: t.TempDir()}).Check(); !errors.Is(err, binfmt.ErrNotMounted) {
			t.Fatalf("Check of a plain dir = %v", err)
		}

		s := binfmt.Spec{Name: "op", Type: binfmt.Magic, Magic: []byte("\x7fOPS"), Interpreter: "/bin/true", Flags: binfmt.FixBinary}
		if err := m.Register(s); err != nil {
			t.Fatal(err)
		}
		if err := m.Register(s); !errors.Is(err, binfmt.ErrExists) {
			t.Fatalf("second Register = %v, want ErrExists", err)
		}
		for _, step := range []struct {
			do      func(string) error
			enabled bool
		}{{m.Disable, false}, {m.Enable, true}} {
			if err := step.do("op"); err != nil {
				t.Fatal(err)
			}
			if e, _ := m.Entry("op"); e.Enabled != step.enabled {
				t.Fatalf("enabled = %v, want %v", e.Enabled, step.enabled)
			}
		}
		if err := m.SetEnabled(false); err != nil {
			t.Fatal(err)
		}
		if on, _ := m.Enabled(); on {
			t.Fatal("facility still enabled")
		}
		if err := m.SetEnabled(true); err != nil {
			t.Fatal(err)
		}
		es, err := m.Entries()
		if err != nil || len(es) != 1 || !es[0].Spec.Equal(s) {
			t.Fatalf("Entries = %v, %v", es, err)
		}
		if err := m.Remove("op"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Entry("op"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Entry after Remove = %v", err)
		}
		if err := m.Remove("../status"); err == nil {
			t.Fatal("Remove accepted a path")
		}
		bad := s
		bad.Name, bad.Interpreter = "missing", "/nonexistent/qemu"
		if err := m.Register(bad); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Register with a missing F interpreter = %v", err)
		}
		for _, n := range []string{"a", "b", "c"} {
			s.Name = n
			if err := m.Register(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.RemoveAll(); err != nil {
			t.Fatal(err)
		}
		if es, _ := m.Entries(); len(es) != 0 {
			t.Fatalf("entries after RemoveAll: %v", es)
		}
	})
}

// TestMipsABIVersion shows why the table masks byte 8 (EI_ABIVERSION) of
// the mips family with 0x00: a mips64le program of ABI version 5 runs
// under mabd's handler and is refused ("exec format error") under
// Debian's, whose mask 0xfe only lets versions 0 and 1 through.
func TestMipsABIVersion(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"mips64le ok\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=mips64le", "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build mips64le program: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	b[8] = 5 // EI_ABIVERSION
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		m := binfmt.Mount{Dir: mount}
		debian, err := binfmt.ReadConf("/usr/lib/binfmt.d/qemu-mips64el.conf")
		if err != nil {
			t.Fatalf("%v: install qemu-user-static (make deps)", err)
		}
		deb := debian[0]
		deb.Interpreter, deb.Flags = "/usr/bin/qemu-mips64el-static", binfmt.FixBinary
		if err := m.Register(deb); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin).CombinedOutput(); err == nil || !strings.Contains(err.Error(), "exec format error") {
			t.Fatalf("under Debian's mask: %q, %v; want exec format error", out, err)
		}
		if err := m.Remove(deb.Name); err != nil {
			t.Fatal(err)
		}
		a, _ := binfmt.ArchByName("mips64el")
		if err := m.Register(a.Spec("/usr/bin/qemu-mips64el-static", binfmt.FixBinary)); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "mips64le ok" {
			t.Fatalf("under mabd's mask: %q, %v", out, err)
		}
	})
}
