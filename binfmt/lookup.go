package binfmt

import (
	"fmt"
	"strings"
	"unicode"
)

// maxArchName bounds the names Lookup parses, and how much of a name
// its errors quote: no architecture, alias or platform is near as long.
const maxArchName = 64

// UnknownArchError says that a name is no architecture mabd knows.
type UnknownArchError struct{ Name string }

// Error quotes the name as Go would (control characters escaped), cut to
// 64 bytes with its length when it is longer.
func (e *UnknownArchError) Error() string {
	return fmt.Sprintf("unknown architecture %s: give a QEMU name (aarch64, riscv64, s390x, …), an OCI platform (linux/arm64, linux/arm/v7) or an alias (arm64, armhf, x86_64)", quoteName(e.Name))
}

// NotLinuxError says that a platform names an operating system other than
// linux (windows/amd64, darwin/arm64): binfmt_misc hands the kernel's
// handlers Linux programs only.
type NotLinuxError struct {
	Name string // what was asked for
	OS   string // the operating system it names, e.g. "windows"
}

func (e *NotLinuxError) Error() string {
	return fmt.Sprintf("%s: binfmt_misc runs linux binaries only, not %s", quoteName(e.Name), e.OS)
}

// quoteName quotes a name for an error message: escaped by %q, and cut
// to maxArchName bytes (saying how long it was) so that a hostile or
// mistaken argument cannot flood the terminal or the log.
func quoteName(name string) string {
	if len(name) <= maxArchName {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%q… (%d bytes)", name[:maxArchName], len(name))
}

// operatingSystems are the OS names of OCI platforms (Go's GOOS values,
// as containerd/platforms knows them). Only these make a platform "not
// linux"; a first component that is none of them ("aarch64/..") is no
// platform at all.
var operatingSystems = map[string]bool{
	"aix": true, "android": true, "darwin": true, "dragonfly": true, "freebsd": true,
	"hurd": true, "illumos": true, "ios": true, "js": true, "linux": true, "nacl": true,
	"netbsd": true, "openbsd": true, "plan9": true, "solaris": true, "wasip1": true,
	"windows": true, "zos": true,
}

// Lookup resolves what a user typed to an architecture of the table:
// a QEMU name ("aarch64", "mips64el"), a handler name ("qemu-aarch64"), an
// OCI platform ("linux/arm64", "linux/arm/v7", in containerd/platforms'
// syntax) or an alias that containerd/platforms or Debian use ("arm64",
// "armhf", "x86_64", "ppc64el").
//
// A platform of another operating system ("windows/amd64", "darwin") is a
// [*NotLinuxError]. Anything else that is not an architecture — an
// operating system alone ("linux": containerd/platforms would fill in this
// host's architecture), a path ("aarch64/..", "../../etc"), too many
// components, spaces, control characters, a name longer than 64 bytes —
// is an [*UnknownArchError], whose message quotes the name safely.
//
// The platform syntax is read here rather than by containerd/platforms,
// whose regular expressions (and go-digest's, which it links) were a
// tenth of the host agent's start-up; the tests hold Lookup to what
// platforms.Parse and platforms.Normalize make of the same names.
func Lookup(name string) (Arch, error) {
	if len(name) > maxArchName || name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return Arch{}, &UnknownArchError{Name: name}
	}
	if a, ok := ArchByName(name); ok {
		return a, nil
	}
	os, arch, ok := splitPlatform(name)
	switch {
	case !ok:
		return Arch{}, &UnknownArchError{Name: name}
	case os != "linux":
		return Arch{}, &NotLinuxError{Name: name, OS: os}
	}
	if a, ok := archByPlatform(arch); ok {
		return a, nil
	}
	// The spellings containerd/platforms normalizes (aarch64, x86_64,
	// armhf, i386) and Debian's are the table's names and aliases of
	// architectures that have a platform ("linux/sparc" names none).
	if a, ok := ArchByName(arch); ok && a.Platform != "" && !strings.HasPrefix(arch, "qemu-") {
		return a, nil
	}
	return Arch{}, &UnknownArchError{Name: name}
}

// splitPlatform reads an OCI platform specifier, lower-cased:
// os[(version)][/arch[/variant]]. os is the operating system without its
// version, arch the architecture ("" when the specifier names none; the
// variant does not choose an emulator). ok is false unless the first
// component is an operating system and each component is made of the
// characters a specifier may have.
func splitPlatform(name string) (os, arch string, ok bool) {
	parts := strings.Split(strings.ToLower(name), "/")
	if len(parts) > 3 {
		return "", "", false
	}
	os, version, versioned := strings.Cut(parts[0], "(")
	if os == "macos" {
		os = "darwin" // as containerd/platforms spells it
	}
	// An OS version may carry percent-encoded options after '+'
	// ("windows(10.0.17763+win32k)"), as containerd/platforms reads it.
	if !operatingSystems[os] || (versioned && (!strings.HasSuffix(version, ")") || !specifier(strings.TrimSuffix(version, ")"), "+%"))) {
		return "", "", false
	}
	for _, p := range parts[1:] {
		if p == "" || !specifier(p, "") {
			return "", "", false
		}
	}
	if len(parts) > 1 {
		arch = parts[1]
	}
	return os, arch, true
}

// specifier reports whether s has only the characters of a platform
// specifier's component (letters, digits, '_', '.', '-') and extra.
func specifier(s, extra string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' || strings.ContainsRune(extra, r))
	})
}

// LookupAll resolves several names, dropping duplicates and keeping
// their order. The first unknown name is an error.
func LookupAll(names []string) ([]Arch, error) {
	var out []Arch
	seen := map[string]bool{}
	for _, n := range names {
		a, err := Lookup(n)
		if err != nil {
			return nil, err
		}
		if !seen[a.Name] {
			seen[a.Name] = true
			out = append(out, a)
		}
	}
	return out, nil
}
