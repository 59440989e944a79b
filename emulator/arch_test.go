package emulator

import (
	"strings"
	"testing"
)

func TestLookupArch(t *testing.T) {
	tests := []struct{ in, want string }{
		{"linux/arm64", "aarch64"}, {"arm64", "aarch64"}, {"aarch64", "aarch64"}, {"linux/arm64/v8", "aarch64"},
		{"armhf", "arm"}, {"linux/arm/v7", "arm"}, {"linux/arm/v6", "arm"}, {"armel", "arm"},
		{"x86_64", "x86_64"}, {"linux/amd64", "x86_64"}, {"amd64", "x86_64"}, {"i386", "i386"}, {"linux/386", "i386"},
		{"linux/ppc64le", "ppc64le"}, {"ppc64el", "ppc64le"}, {"linux/s390x", "s390x"}, {"linux/riscv64", "riscv64"},
		{"linux/mips64le", "mips64el"}, {"mips64el", "mips64el"}, {"linux/mips64", "mips64"}, {"linux/mips", "mips"},
		{"linux/mipsle", "mipsel"}, {"linux/loong64", "loongarch64"}, {"loongarch64", "loongarch64"}, {"linux/ppc64", "ppc64"},
		{"qemu-sparc64", "sparc64"}, {"m68k", "m68k"},
	}
	for _, tt := range tests {
		a, err := LookupArch(tt.in)
		if err != nil || a.Name != tt.want {
			t.Errorf("LookupArch(%q) = %q, %v; want %q", tt.in, a.Name, err, tt.want)
		}
	}
	for _, bad := range []string{"", "vax", "linux/vax", "windows/arm64", "darwin/amd64", "a:b", "linux/arm64:x"} {
		if a, err := LookupArch(bad); err == nil {
			t.Errorf("LookupArch(%q) = %s, want an error", bad, a.Name)
		} else if bad == "vax" && !strings.Contains(err.Error(), "linux/arm64") {
			t.Errorf("error for vax does not show the forms: %v", err)
		}
	}
	got, err := LookupArches([]string{"arm64", "linux/arm64", "aarch64", "riscv64"})
	if err != nil || len(got) != 2 {
		t.Errorf("LookupArches dedup = %v, %v", got, err)
	}
}
