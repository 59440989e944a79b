package emulator

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// realStatic is the emulator Debian's qemu-user-static installs; tests that
// need a real emulator fail (not skip) when it is missing.
const realStatic = "/usr/bin/qemu-aarch64-static"

func requireQEMU(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(realStatic); err != nil {
		t.Fatalf("%s is missing (%v): install qemu-user-static (apt-get install qemu-user-static)", realStatic, err)
	}
	return realStatic
}

// minimalELF returns a tiny little-endian x86-64 ELF image of type typ with a
// PT_LOAD header and, if interp, a PT_INTERP header. It is never run, only
// parsed by debug/elf.
func minimalELF(typ elf.Type, interp bool) []byte {
	const interpPath = "/lib64/ld-linux-x86-64.so.2\x00"
	nph := 1
	if interp {
		nph = 2
	}
	const ehsize, phsize = 64, 56
	dataOff := uint64(ehsize + phsize*nph)
	size := dataOff + uint64(len(interpPath))

	var buf bytes.Buffer
	hdr := elf.Header64{
		Type:      uint16(typ),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     0x400000,
		Phoff:     ehsize,
		Ehsize:    ehsize,
		Phentsize: phsize,
		Phnum:     uint16(nph),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&buf, binary.LittleEndian, hdr)
	binary.Write(&buf, binary.LittleEndian, elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
		Vaddr: 0x400000, Paddr: 0x400000, Filesz: size, Memsz: size, Align: 0x1000,
	})
	if interp {
		binary.Write(&buf, binary.LittleEndian, elf.Prog64{
			Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: dataOff,
			Vaddr: 0x400000 + dataOff, Paddr: 0x400000 + dataOff,
			Filesz: uint64(len(interpPath)), Memsz: uint64(len(interpPath)), Align: 1,
		})
	}
	buf.WriteString(interpPath)
	return buf.Bytes()
}

var (
	staticELF  = minimalELF(elf.ET_EXEC, false)
	dynamicELF = minimalELF(elf.ET_EXEC, true)
	staticPIE  = minimalELF(elf.ET_DYN, false)
	objectELF  = minimalELF(elf.ET_REL, false)
	script     = []byte("#!/bin/sh\necho hello\n")
)

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	qemu := requireQEMU(t)

	type file struct {
		path string // relative to the test's root; "dir/" makes a directory
		data []byte
		mode os.FileMode
		link string // if set, a symlink to this target instead of a file
	}
	tests := []struct {
		name       string
		files      []file
		dirs       []string // relative to the test's root
		wantPath   string   // relative to the test's root; "" means not found
		wantStatic bool
		wantErr    error // for errors other than not found
	}{
		{
			name: "static wins over plain in one dir",
			files: []file{
				{path: "a/qemu-foo", data: dynamicELF, mode: 0o755},
				{path: "a/qemu-foo-static", data: staticELF, mode: 0o755},
			},
			dirs: []string{"a"}, wantPath: "a/qemu-foo-static", wantStatic: true,
		},
		{
			name:  "plain only",
			files: []file{{path: "a/qemu-foo", data: dynamicELF, mode: 0o755}},
			dirs:  []string{"a"}, wantPath: "a/qemu-foo", wantStatic: false,
		},
		{
			name:  "static-pie plain counts as static",
			files: []file{{path: "a/qemu-foo", data: staticPIE, mode: 0o755}},
			dirs:  []string{"a"}, wantPath: "a/qemu-foo", wantStatic: true,
		},
		{
			name: "earlier dir wins",
			files: []file{
				{path: "a/qemu-foo-static", data: staticELF, mode: 0o755},
				{path: "b/qemu-foo-static", data: staticELF, mode: 0o755},
			},
			dirs: []string{"b", "a"}, wantPath: "b/qemu-foo-static", wantStatic: true,
		},
		{
			name: "plain in earlier dir wins over static in later dir",
			files: []file{
				{path: "a/qemu-foo", data: dynamicELF, mode: 0o755},
				{path: "b/qemu-foo-static", data: staticELF, mode: 0o755},
			},
			dirs: []string{"a", "b"}, wantPath: "a/qemu-foo", wantStatic: false,
		},
		{
			name: "missing first dir skipped",
			files: []file{
				{path: "b/qemu-foo-static", data: staticELF, mode: 0o755},
			},
			dirs: []string{"nonexistent", "b"}, wantPath: "b/qemu-foo-static", wantStatic: true,
		},
		{
			name: "non-executable file skipped",
			files: []file{
				{path: "a/qemu-foo-static", data: staticELF, mode: 0o644},
				{path: "a/qemu-foo", data: dynamicELF, mode: 0o755},
			},
			dirs: []string{"a"}, wantPath: "a/qemu-foo", wantStatic: false,
		},
		{
			name: "directory named like the binary skipped",
			files: []file{
				{path: "a/qemu-foo-static/"},
				{path: "b/qemu-foo-static", data: staticELF, mode: 0o755},
			},
			dirs: []string{"a", "b"}, wantPath: "b/qemu-foo-static", wantStatic: true,
		},
		{
			name: "symlink to real static emulator, path not resolved",
			files: []file{
				{path: "a/qemu-foo-static", link: qemu},
			},
			dirs: []string{"a"}, wantPath: "a/qemu-foo-static", wantStatic: true,
		},
		{
			name: "relative symlink to static binary",
			files: []file{
				{path: "real/qemu-bin", data: staticELF, mode: 0o755},
				{path: "a/qemu-foo-static", link: "../real/qemu-bin"},
			},
			dirs: []string{"a"}, wantPath: "a/qemu-foo-static", wantStatic: true,
		},
		{
			name: "dangling symlink skipped",
			files: []file{
				{path: "a/qemu-foo-static", link: "does-not-exist"},
				{path: "a/qemu-foo", data: dynamicELF, mode: 0o755},
			},
			dirs: []string{"a"}, wantPath: "a/qemu-foo", wantStatic: false,
		},
		{
			name: "symlink to directory skipped",
			files: []file{
				{path: "d/"},
				{path: "a/qemu-foo-static", link: "../d"},
			},
			dirs: []string{"a"}, wantPath: "",
		},
		{
			name:  "other arch not matched",
			files: []file{{path: "a/qemu-foobar-static", data: staticELF, mode: 0o755}},
			dirs:  []string{"a"}, wantPath: "",
		},
		{
			name:  "nothing found",
			files: nil,
			dirs:  []string{"a", "b"}, wantPath: "",
		},
		{
			name:    "executable script is an error, not skipped",
			files:   []file{{path: "a/qemu-foo-static", data: script, mode: 0o755}},
			dirs:    []string{"a"},
			wantErr: ErrNotELF,
		},
		{
			name:    "ELF object file is an error",
			files:   []file{{path: "a/qemu-foo-static", data: objectELF, mode: 0o755}},
			dirs:    []string{"a"},
			wantErr: ErrNotELF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f.path)
				switch {
				case strings.HasSuffix(f.path, "/"):
					if err := os.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
				case f.link != "":
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(f.link, p); err != nil {
						t.Fatal(err)
					}
				default:
					writeFile(t, p, f.data, f.mode)
				}
			}
			var dirs []string
			for _, d := range tt.dirs {
				dirs = append(dirs, filepath.Join(root, d))
			}

			e, err := Find("foo", dirs)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Find: got (%+v, %v), want error wrapping %v", e, err, tt.wantErr)
				}
				if errors.Is(err, ErrNotFound) {
					t.Errorf("Find: error %v must not match ErrNotFound", err)
				}
				if !strings.Contains(err.Error(), filepath.Join(root, "a/qemu-foo-static")) {
					t.Errorf("Find: error %q does not name the file", err)
				}
			case tt.wantPath == "":
				var nf *NotFoundError
				if !errors.As(err, &nf) || !errors.Is(err, ErrNotFound) {
					t.Fatalf("Find: got (%+v, %v), want *NotFoundError", e, err)
				}
				if nf.Arch != "foo" || strings.Join(nf.Dirs, "|") != strings.Join(dirs, "|") {
					t.Errorf("NotFoundError = %+v, want Arch foo, Dirs %v", nf, dirs)
				}
			default:
				if err != nil {
					t.Fatalf("Find: %v", err)
				}
				want := Emulator{Arch: "foo", Path: filepath.Join(root, tt.wantPath), Static: tt.wantStatic}
				if *e != want {
					t.Errorf("Find = %+v, want %+v", *e, want)
				}
			}
		})
	}
}

func TestFindRelativeDirGivesAbsolutePath(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "bin/qemu-foo-static"), staticELF, 0o755)
	t.Chdir(root)
	e, err := Find("foo", []string{"bin"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "bin/qemu-foo-static"); e.Path != want {
		t.Errorf("Path = %q, want %q", e.Path, want)
	}
}

func TestFindInvalidArch(t *testing.T) {
	for _, arch := range []string{"", "../aarch64", "a/b", "x\x00y"} {
		_, err := Find(arch, []string{t.TempDir()})
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Find(%q): err = %v, want invalid architecture error", arch, err)
		}
	}
}

func TestFindReal(t *testing.T) {
	want := requireQEMU(t)
	for _, dirs := range [][]string{nil, {}, {"/usr/bin"}} {
		e, err := Find("aarch64", dirs)
		if err != nil {
			t.Fatalf("Find(aarch64, %q): %v (install qemu-user-static)", dirs, err)
		}
		if e.Path != want || !e.Static || e.Arch != "aarch64" || e.Version != "" {
			t.Errorf("Find(aarch64, %q) = %+v, want Path %s, Static true, no Version", dirs, *e, want)
		}
		if err := e.CheckFixBinary(); err != nil {
			t.Errorf("CheckFixBinary: %v", err)
		}
	}
}

func TestNotFoundError(t *testing.T) {
	tests := []struct {
		arch string
		dirs []string
		want string
	}{
		{
			arch: "aarch64", dirs: []string{"/usr/bin", "/usr/local/bin"},
			want: "qemu-aarch64-static not found in /usr/bin, /usr/local/bin: install qemu-user-static (apt-get install qemu-user-static)",
		},
		{
			arch: "riscv64", dirs: []string{"/opt/qemu/bin"},
			want: "qemu-riscv64-static not found in /opt/qemu/bin: install qemu-user-static (apt-get install qemu-user-static)",
		},
	}
	for _, tt := range tests {
		err := error(&NotFoundError{Arch: tt.arch, Dirs: tt.dirs})
		if got := err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("errors.Is(%v, ErrNotFound) = false", err)
		}
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is(%v, fs.ErrNotExist) = true", err)
		}
	}

	// Through Find with the default directories.
	_, err := Find("nosucharch", nil)
	want := "qemu-nosucharch-static not found in /usr/bin, /usr/local/bin: install qemu-user-static (apt-get install qemu-user-static)"
	if err == nil || err.Error() != want {
		t.Errorf("Find(nosucharch, nil) error = %v, want %q", err, want)
	}
}

func TestIsStatic(t *testing.T) {
	qemu := requireQEMU(t)
	dir := t.TempDir()
	path := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data, 0o755)
		return p
	}
	link := filepath.Join(dir, "link-to-qemu")
	if err := os.Symlink(qemu, link); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		want    bool
		wantErr error // wrapped error; nil with anyErr means any error
		anyErr  bool
	}{
		{name: "real static emulator", path: qemu, want: true},
		{name: "symlink to real static emulator", path: link, want: true},
		{name: "dynamic /bin/ls", path: "/bin/ls", want: false},
		{name: "synthetic static", path: path("static", staticELF), want: true},
		{name: "synthetic static-pie", path: path("static-pie", staticPIE), want: true},
		{name: "synthetic dynamic", path: path("dynamic", dynamicELF), want: false},
		{name: "shell script", path: path("script.sh", script), wantErr: ErrNotELF},
		{name: "empty file", path: path("empty", nil), wantErr: ErrNotELF},
		{name: "short file", path: path("short", []byte("\x7fE")), wantErr: ErrNotELF},
		{name: "truncated ELF", path: path("truncated", staticELF[:20]), wantErr: ErrNotELF},
		{name: "ELF magic only", path: path("magic", []byte(elf.ELFMAG)), wantErr: ErrNotELF},
		{name: "ELF object", path: path("object.o", objectELF), wantErr: ErrNotELF},
		{name: "missing file", path: filepath.Join(dir, "missing"), wantErr: fs.ErrNotExist},
		{name: "directory", path: dir, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IsStatic(tt.path)
			if tt.wantErr == nil && !tt.anyErr {
				if err != nil || got != tt.want {
					t.Errorf("IsStatic(%s) = %v, %v; want %v, nil", tt.path, got, err, tt.want)
				}
				return
			}
			if err == nil || got {
				t.Fatalf("IsStatic(%s) = %v, %v; want false and an error", tt.path, got, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("IsStatic(%s) error %v does not wrap %v", tt.path, err, tt.wantErr)
			}
			if want := "inspect " + tt.path + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("IsStatic error %q does not start with %q", err, want)
			}
		})
	}
}

func TestIsStaticScriptMessage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script.sh")
	writeFile(t, p, script, 0o755)
	_, err := IsStatic(p)
	if want := "inspect " + p + ": not an ELF executable"; err == nil || err.Error() != want {
		t.Errorf("IsStatic(script) error = %v, want %q", err, want)
	}
}

func TestCheckFixBinary(t *testing.T) {
	if err := (&Emulator{Arch: "aarch64", Path: "/usr/bin/qemu-aarch64-static", Static: true}).CheckFixBinary(); err != nil {
		t.Errorf("static: %v", err)
	}
	err := (&Emulator{Arch: "aarch64", Path: "/usr/bin/qemu-aarch64"}).CheckFixBinary()
	want := "/usr/bin/qemu-aarch64 is dynamically linked: the F flag opens it at registration and runs it inside chroots and containers, where its shared libraries are missing; install the static build (qemu-user-static) or drop F from the flags"
	if err == nil || err.Error() != want {
		t.Errorf("dynamic: err = %v, want %q", err, want)
	}
}

func TestInspect(t *testing.T) {
	qemu := requireQEMU(t)
	e := &Emulator{Arch: "aarch64", Path: qemu}
	if err := e.Inspect(context.Background()); err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if !e.Static || !versionPattern.MatchString(e.Version) {
		t.Errorf("Inspect: got %+v, want Static and a version", *e)
	}

	s := &Emulator{Arch: "foo", Path: filepath.Join(t.TempDir(), "missing"), Version: "1.0"}
	if err := s.Inspect(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Inspect(missing) = %v, want fs.ErrNotExist", err)
	}
	if s.Version != "1.0" {
		t.Errorf("Inspect(missing) changed Version to %q", s.Version)
	}
}

func TestFindAll(t *testing.T) {
	requireQEMU(t)
	arches := []string{"aarch64", "arm", "riscv64", "nosucharch", "aarch64"}
	for _, withVersion := range []bool{false, true} {
		m, err := FindAll(context.Background(), arches, nil, withVersion)
		if err != nil {
			t.Fatalf("FindAll(withVersion=%v): %v", withVersion, err)
		}
		if len(m) != 3 {
			t.Errorf("FindAll(withVersion=%v) found %d emulators, want 3: %v", withVersion, len(m), m)
		}
		if _, ok := m["nosucharch"]; ok {
			t.Errorf("FindAll: nosucharch present")
		}
		for _, a := range []string{"aarch64", "arm", "riscv64"} {
			e := m[a]
			if e == nil {
				t.Errorf("FindAll: %s missing (install qemu-user-static)", a)
				continue
			}
			if e.Arch != a || e.Path != "/usr/bin/qemu-"+a+"-static" || !e.Static {
				t.Errorf("FindAll: %s = %+v", a, *e)
			}
			if withVersion && !versionPattern.MatchString(e.Version) {
				t.Errorf("FindAll: %s version %q does not match %v", a, e.Version, versionPattern)
			}
			if !withVersion && e.Version != "" {
				t.Errorf("FindAll without versions: %s version %q", a, e.Version)
			}
		}
	}
}

func TestFindAllErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "qemu-good-static"), staticELF, 0o755)
	writeFile(t, filepath.Join(dir, "qemu-bad-static"), script, 0o755)

	m, err := FindAll(context.Background(), []string{"good", "bad", "missing", "a/b"}, []string{dir}, false)
	if m["good"] == nil || !m["good"].Static || len(m) != 1 {
		t.Errorf("FindAll map = %v, want only good", m)
	}
	if !errors.Is(err, ErrNotELF) {
		t.Errorf("FindAll error = %v, want it to wrap ErrNotELF", err)
	}
	if err != nil && (strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "invalid architecture")) {
		t.Errorf("FindAll error = %q, want invalid-name and not-ELF errors only", err)
	}
}

func TestFindAllVersionError(t *testing.T) {
	// /bin/echo is an ELF executable whose --version output is not QEMU's:
	// the emulator stays in the map without a version, and the error says why.
	dir := t.TempDir()
	if err := os.Symlink("/bin/echo", filepath.Join(dir, "qemu-echo")); err != nil {
		t.Fatal(err)
	}
	m, err := FindAll(context.Background(), []string{"echo"}, []string{dir}, true)
	e := m["echo"]
	if e == nil || e.Version != "" || e.Static || e.Path != filepath.Join(dir, "qemu-echo") {
		t.Errorf("FindAll map = %v, want echo without version", m)
	}
	if err == nil || !strings.Contains(err.Error(), "cannot parse version") {
		t.Errorf("FindAll error = %v, want a parse error", err)
	}
}
