package binfmt

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
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
