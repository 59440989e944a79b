package binfmt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Spec
	}{
		{"debian aarch64", `:qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF`,
			Spec{Name: "qemu-aarch64", Type: Magic, Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"),
				Mask:        []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
				Interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", Flags: OpenBinary | PreserveArgv0 | FixBinary}},
		{"literal magic chars", `:qemu-hexagon:M::\x7fELF\x01:\xff\xff\xff\xff\xff:/x:`,
			Spec{Name: "qemu-hexagon", Type: Magic, Magic: []byte("\x7fELF\x01"), Mask: []byte{0xff, 0xff, 0xff, 0xff, 0xff}, Interpreter: "/x"}},
		{"offset no mask", ":dos:M:2:MZ::/usr/bin/wine:", Spec{Name: "dos", Type: Magic, Offset: 2, Magic: []byte("MZ"), Interpreter: "/usr/bin/wine"}},
		{"extension", ":py:E::py::/usr/bin/python3:", Spec{Name: "py", Type: Extension, Magic: []byte("py"), Interpreter: "/usr/bin/python3"}},
		{"extension ignores offset and mask", ":py:E:9:py:zz:/usr/bin/python3:F", Spec{Name: "py", Type: Extension, Magic: []byte("py"), Interpreter: "/usr/bin/python3", Flags: FixBinary}},
		{"trailing newline", ":a:M::x::/i:P\n", Spec{Name: "a", Type: Magic, Magic: []byte("x"), Interpreter: "/i", Flags: PreserveArgv0}},
		{"other delimiter allows colon in magic", "|a|M||a:b||/bin/true|", Spec{Name: "a", Type: Magic, Magic: []byte("a:b"), Interpreter: "/bin/true"}},
		{"C implies O", ":a:M::x::/i:C", Spec{Name: "a", Type: Magic, Magic: []byte("x"), Interpreter: "/i", Flags: Credentials | OpenBinary}},
		{"backslash not x kept", `:a:M::\\x41::/i:`, Spec{Name: "a", Type: Magic, Magic: []byte(`\\x41`), Interpreter: "/i"}},
		{"uppercase hex", `:a:M::\xAB::/i:`, Spec{Name: "a", Type: Magic, Magic: []byte{0xab}, Interpreter: "/i"}},
		{"offset 127 minus magic", ":a:M:126:x::/i:", Spec{Name: "a", Type: Magic, Offset: 126, Magic: []byte("x"), Interpreter: "/i"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.line)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.line, err)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("Parse(%q)\n got %#v\nwant %#v", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	long := ":a:M::x::/" + strings.Repeat("a", 127) + ":"
	tests := []struct {
		name, line, field, reason string
	}{
		{"line too long", ":a:E::x::/" + strings.Repeat("b", MaxLineLen) + ":", "line", "at most 1920"},
		{"too short", ":a:M::x", "line", "too short"},
		{"no flags field", ":a:M::x::/bin/true", "line", "needs 7"},
		{"no interpreter", ":abc:M::xyz:::", "interpreter", "empty"},
		{"slash in name", ":a/b:M::x::/i:", "name", `contains '/'`},
		{"dot name", ":..:M::x::/i:", "name", "reserved"},
		{"reserved name", ":status:M::x::/i:", "name", "reserved"},
		{"empty name", "::M::x::/bin/true:", "name", "empty"},
		{"bad type", ":a:X::x::/i:", "type", "not M"},
		{"long type", ":a:MM::x::/i:", "type", "not M"},
		{"offset not number", ":a:M:1a:x::/i:", "offset", "not a decimal"},
		{"offset plus magic 128", ":a:M:127:x::/i:", "magic", "under 128"},
		{"offset huge", ":a:M:99999999999999999999:x::/i:", "offset", "under 128"},
		{"empty magic", ":a:M::::/i:", "magic", "empty"},
		{"short escape", `:a:M::a\x4::/i:`, "magic", "two hex digits"},
		{"bad escape", `:a:M::\xzz::/i:`, "magic", "two hex digits"},
		{"mask length", `:a:M::\x01\x02:\xff:/i:`, "mask", "same length"},
		{"relative interpreter", ":a:M::x::bin/true:", "interpreter", "relative"},
		{"long interpreter", long, "interpreter", "at most 127"},
		{"unknown flag", ":a:M::x::/i:FX", "flags", "unknown flag 'X'"},
		{"text after flags", ":a:M::x::/i:F:", "flags", "after the flags"},
		{"two newlines", ":a:M::x::/i:F\n\n", "", "newline"},
		{"newline in name", ":a\nb:M::x::/i:", "name", "newline"},
		{"colon in name with other delimiter", "|a:b|M||x||/i|", "name", "':'"},
		{"extension with slash", ":a:E::x/y::/i:", "magic", "contains '/'"},
		{"nul byte", ":a:M::x::/i\x00:", "line", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.line)
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("Parse(%q) = %v, want a *LineError", tt.line, err)
			}
			if tt.field != "" && le.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", le.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}

func TestLineRoundTripsEveryArch(t *testing.T) {
	for _, a := range Arches() {
		for _, f := range []Flags{0, FixBinary, FixBinary | PreserveArgv0, OpenBinary | Credentials | FixBinary} {
			s := a.Spec("/usr/bin/qemu-"+a.Name+"-static", f)
			if err := s.Validate(); err != nil {
				t.Fatalf("%s: %v", a.Name, err)
			}
			got, err := Parse(s.Line())
			if err != nil {
				t.Fatalf("Parse(%q): %v", s.Line(), err)
			}
			if !got.Equal(s) {
				t.Fatalf("round trip of %s:\n got %#v\nwant %#v", a.Name, got, s)
			}
		}
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		in, out string
		err     bool
	}{
		{"", "", false}, {"F", "F", false}, {"FP", "PF", false}, {"OPF", "POF", false},
		{"C", "OC", false}, {"FFPP", "PF", false}, {"f", "", true}, {" F", "", true},
	}
	for _, tt := range tests {
		f, err := ParseFlags(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseFlags(%q) error = %v", tt.in, err)
			continue
		}
		if err == nil && f.String() != tt.out {
			t.Errorf("ParseFlags(%q) = %q, want %q", tt.in, f, tt.out)
		}
	}
}

func TestSameFilesAndMatches(t *testing.T) {
	a, _ := ArchByName("aarch64")
	ours := a.Spec("/usr/bin/qemu-aarch64-static", FixBinary)
	debian, err := Parse(`:qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF`)
	if err != nil {
		t.Fatal(err)
	}
	if !ours.SameFiles(debian) || ours.Equal(debian) {
		t.Fatalf("ours and Debian's select the same files but differ")
	}
	r, _ := ArchByName("riscv64")
	if ours.SameFiles(r.Spec("/x", 0)) {
		t.Fatalf("aarch64 and riscv64 must not select the same files")
	}
	hdr := append([]byte(nil), a.Magic...)
	hdr[16] = 3 // ET_DYN: a PIE
	if !ours.Matches(hdr) {
		t.Fatalf("aarch64 PIE header not matched")
	}
	if ours.Matches(r.Magic) {
		t.Fatalf("riscv64 header matched aarch64")
	}
}

func TestArchLookup(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"aarch64", "aarch64"}, {"arm64", "aarch64"}, {"qemu-aarch64", "aarch64"}, {"ARMHF", "arm"},
		{"x86_64", "x86_64"}, {"amd64", "x86_64"}, {"ppc64el", "ppc64le"}, {"loong64", "loongarch64"}, {"mips64le", "mips64el"},
	} {
		a, ok := ArchByName(tt.in)
		if !ok || a.Name != tt.want {
			t.Errorf("ArchByName(%q) = %q, %v; want %q", tt.in, a.Name, ok, tt.want)
		}
	}
	if _, ok := ArchByName("vax"); ok {
		t.Errorf("vax found")
	}
	if got := Native("amd64"); len(got) != 2 || got[0] != "x86_64" || got[1] != "i386" {
		t.Errorf("Native(amd64) = %v", got)
	}
	if got := Native("arm64"); len(got) != 1 || got[0] != "aarch64" {
		t.Errorf("Native(arm64) = %v", got)
	}
	if got := Native("arm"); len(got) != 1 || got[0] != "arm" {
		t.Errorf("Native(arm) = %v", got)
	}
}

func TestTableIsComplete(t *testing.T) {
	want := strings.Fields(`aarch64 aarch64_be alpha arm armeb cris hexagon hppa i386 loongarch64 m68k
		microblaze microblazeel mips mips64 mips64el mipsel mipsn32 mipsn32el nios2 or1k ppc ppc64 ppc64le
		riscv32 riscv64 s390x sh4 sh4eb sparc sparc32plus sparc64 x86_64 xtensa xtensaeb`)
	got := Arches()
	if len(got) != len(want) {
		t.Fatalf("table has %d arches, want the %d of qemu-user-static", len(got), len(want))
	}
	seen := map[string]bool{}
	for i, a := range got {
		if a.Name != want[i] {
			t.Errorf("arch %d = %s, want %s (sorted)", i, a.Name, want[i])
		}
		if !bytes.HasPrefix(a.Magic, []byte("\x7fELF")) || len(a.Mask) != len(a.Magic) {
			t.Errorf("%s: bad magic/mask", a.Name)
		}
		if a.Platform != "" {
			if seen[a.Platform] {
				t.Errorf("platform %s twice", a.Platform)
			}
			seen[a.Platform] = true
		}
	}
	for _, p := range []string{"linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64", "linux/386", "linux/amd64",
		"linux/mips64le", "linux/mips64", "linux/loong64", "linux/ppc64", "linux/mips", "linux/mipsle"} {
		if !seen[p] {
			t.Errorf("no arch for %s", p)
		}
	}
}
