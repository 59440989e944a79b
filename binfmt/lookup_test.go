package binfmt

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/platforms"
)

func TestLookup(t *testing.T) {
	tests := []struct{ in, want string }{
		{"linux/arm64", "aarch64"}, {"arm64", "aarch64"}, {"aarch64", "aarch64"}, {"linux/arm64/v8", "aarch64"},
		{"armhf", "arm"}, {"linux/arm/v7", "arm"}, {"linux/arm/v6", "arm"}, {"armel", "arm"},
		{"x86_64", "x86_64"}, {"linux/amd64", "x86_64"}, {"amd64", "x86_64"}, {"i386", "i386"}, {"linux/386", "i386"},
		{"linux/ppc64le", "ppc64le"}, {"ppc64el", "ppc64le"}, {"linux/s390x", "s390x"}, {"linux/riscv64", "riscv64"},
		{"linux/mips64le", "mips64el"}, {"mips64el", "mips64el"}, {"linux/mips64", "mips64"}, {"linux/mips", "mips"},
		{"linux/mipsle", "mipsel"}, {"linux/loong64", "loongarch64"}, {"loongarch64", "loongarch64"}, {"linux/ppc64", "ppc64"},
		{"qemu-sparc64", "sparc64"}, {"m68k", "m68k"}, {"Linux/ARM64", "aarch64"},
	}
	for _, tt := range tests {
		a, err := Lookup(tt.in)
		if err != nil || a.Name != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.in, a.Name, err, tt.want)
		}
	}
	got, err := LookupAll([]string{"arm64", "linux/arm64", "aarch64", "riscv64"})
	if err != nil || len(got) != 2 {
		t.Errorf("LookupAll dedup = %v, %v", got, err)
	}
}

// TestLookupArchRefuses: what is no Linux architecture is refused with the
// right error, and the message quotes the input safely: escaped, and cut
// when long.
func TestLookupArchRefuses(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	tests := []struct {
		in       string
		notLinux string // the OS a *NotLinuxError names; "" means *UnknownArchError
		says     string // the message contains this
	}{
		{in: "", says: `unknown architecture ""`},
		{in: "vax", says: `unknown architecture "vax": give a QEMU name (aarch64, riscv64, s390x, …), an OCI platform (linux/arm64`},
		{in: "linux/vax", says: `unknown architecture "linux/vax"`},
		{in: "linux/sparc", says: `unknown architecture "linux/sparc"`},
		{in: "linux/qemu-aarch64", says: `unknown architecture "linux/qemu-aarch64"`},
		{in: "aarch64/..", says: `unknown architecture "aarch64/.."`},
		{in: "aarch64/arm64", says: `unknown architecture "aarch64/arm64"`},
		{in: "../../etc", says: `unknown architecture "../../etc"`},
		{in: "linux/..", says: `unknown architecture "linux/.."`},
		{in: "/", says: `unknown architecture "/"`},
		{in: "linux/arm64/v8/extra", says: `unknown architecture "linux/arm64/v8/extra"`},
		{in: "linux", says: `unknown architecture "linux"`},
		{in: "a:b", says: `unknown architecture "a:b"`},
		{in: "linux/arm64:x", says: `unknown architecture "linux/arm64:x"`},
		{in: "arm64 ", says: `unknown architecture "arm64 "`},
		{in: "arm64\n", says: `unknown architecture "arm64\n"`},
		{in: "arm\x1b[2J64", says: `unknown architecture "arm\x1b[2J64"`},
		{in: "arm64\x00", says: `unknown architecture "arm64\x00"`},
		{in: "\xff\xfe", says: `unknown architecture "\xff\xfe"`},
		{in: "arm64\u202e", says: `unknown architecture "arm64\u202e"`},
		{in: long, says: `unknown architecture "` + long[:64] + `"… (1048576 bytes)`},
		{in: "windows/amd64", notLinux: "windows", says: `"windows/amd64": binfmt_misc runs linux binaries only, not windows`},
		{in: "windows/arm64", notLinux: "windows"},
		{in: "darwin/amd64", notLinux: "darwin"},
		{in: "freebsd/riscv64", notLinux: "freebsd"},
		{in: "windows", notLinux: "windows"},
		{in: "windows(10.0.17763)/amd64", notLinux: "windows"},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 30 {
			name = name[:30] + "…"
		}
		t.Run(name, func(t *testing.T) {
			a, err := Lookup(tt.in)
			if err == nil {
				t.Fatalf("Lookup(%q) = %s, want an error", name, a.Name)
			}
			var ua *UnknownArchError
			var nl *NotLinuxError
			switch {
			case tt.notLinux == "" && !errors.As(err, &ua):
				t.Errorf("error %v (%T), want *UnknownArchError", err, err)
			case tt.notLinux != "" && (!errors.As(err, &nl) || nl.OS != tt.notLinux):
				t.Errorf("error %v (%T), want *NotLinuxError for %s", err, err, tt.notLinux)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.says) {
				t.Errorf("error %q does not say %q", msg, tt.says)
			}
			if len(msg) > 400 || !utf8.ValidString(msg) || strings.ContainsFunc(msg, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0x202e }) {
				t.Errorf("error of %d bytes carries the input raw: %q", len(msg), msg[:min(len(msg), 400)])
			}
		})
	}
}

// byPlatforms is what containerd/platforms makes of name, the way Lookup
// used it before it read the syntax itself: the architecture, the
// operating system of a non-Linux platform, or neither.
func byPlatforms(name string) (arch, notLinux string) {
	p, err := platforms.Parse(name)
	if err != nil || !operatingSystems[p.OS] || (p.OS == "linux" && !strings.Contains(name, "/")) {
		return "", ""
	}
	if p.OS != "linux" {
		return "", p.OS
	}
	if a, ok := archByPlatform(platforms.Normalize(p).Architecture); ok {
		return a.Name, ""
	}
	return "", ""
}

// checkAgainstPlatforms holds Lookup(name) to byPlatforms(name): the same
// architecture, the same operating system refused; where containerd's
// parser knows no architecture, Lookup may know it only by the table's
// own aliases (Debian's "ppc64el").
func checkAgainstPlatforms(t *testing.T, name string) {
	t.Helper()
	if _, ok := ArchByName(name); ok || len(name) > maxArchName || strings.ContainsFunc(name, func(r rune) bool {
		return r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return // decided before any platform syntax
	}
	want, wantOS := byPlatforms(name)
	a, err := Lookup(name)
	var nl *NotLinuxError
	switch {
	case want != "":
		if err != nil || a.Name != want {
			t.Fatalf("Lookup(%q) = %q, %v; containerd/platforms says %q", name, a.Name, err, want)
		}
	case wantOS != "":
		if !errors.As(err, &nl) || nl.OS != wantOS {
			t.Fatalf("Lookup(%q) = %q, %v; containerd/platforms says the OS is %q", name, a.Name, err, wantOS)
		}
	case err == nil:
		_, arch, _ := splitPlatform(name)
		if al, ok := ArchByName(arch); !ok || al.Name != a.Name || a.Platform == "" {
			t.Fatalf("Lookup(%q) = %q; containerd/platforms knows no such architecture, nor do the table's aliases of a platform", name, a.Name)
		}
	}
}

// TestLookupAgreesWithPlatforms: every platform of the table, its aliases
// and spellings, variants, OS versions and malformed specifiers.
func TestLookupAgreesWithPlatforms(t *testing.T) {
	names := []string{
		"linux/arm64/v8", "linux/arm64/v9", "linux/amd64/v3", "linux/arm/v5", "linux/arm/v6", "linux/arm/7",
		"linux/aarch64", "linux/x86_64", "linux/x86-64", "linux/armhf", "linux/armel", "linux/i386", "linux/i686",
		"linux/ppc64el", "linux/sparc", "linux/sparc64", "linux/m68k", "linux/wasm", "linux/riscv", "linux/s390", "windows(10.0.17763)/amd64", "windows(10.0+win32k)/arm64", "windows(10.0%2B1)/amd64", "windows(0+0%000000000000)",
		"windows(", "windows(10.0", "linux()/arm64", "LINUX/Arm64", "darwin/arm64/v8", "linux/", "linux//", "/arm64",
		"linux/arm64/", "linux/arm64/v8/x", "linux/*", "linux/qemu-aarch64", "plan9/386", "wasip1/wasm", "js/wasm", "macos/arm64",
	}
	for _, a := range Arches() {
		if a.Platform != "" {
			names = append(names, a.Platform, strings.ToUpper(a.Platform))
		}
		for _, al := range append([]string{a.Name}, a.Aliases...) {
			names = append(names, "linux/"+al, "linux/"+al+"/v7")
		}
	}
	for _, n := range names {
		checkAgainstPlatforms(t, n)
	}
}

// FuzzLookup: Lookup never panics, and agrees with containerd/platforms.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"linux/arm64", "linux/arm/v7", "windows(10.0.17763)/amd64", "armhf", "linux/ppc64el", "aarch64/..", "linux"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		checkAgainstPlatforms(t, name)
	})
}
