package emulator

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"

	"mabd/binfmt"
)

// UnknownArchError says that a name is no architecture mabd knows.
type UnknownArchError struct{ Name string }

func (e *UnknownArchError) Error() string {
	return fmt.Sprintf("unknown architecture %q: give a QEMU name (aarch64, riscv64, s390x, …), an OCI platform (linux/arm64, linux/arm/v7) or an alias (arm64, armhf, x86_64); `mabd status` lists them all", e.Name)
}

// LookupArch resolves what a user typed to an architecture of the table:
// a QEMU name ("aarch64", "mips64el"), a handler name ("qemu-aarch64"), an
// OCI platform ("linux/arm64", "linux/arm/v7") or an alias that
// containerd/platforms or Debian use ("arm64", "armhf", "x86_64", "ppc64el").
// Operating systems other than linux are refused.
func LookupArch(name string) (binfmt.Arch, error) {
	if a, ok := binfmt.ArchByName(name); ok {
		return a, nil
	}
	if name == "" || strings.ContainsAny(name, " \t\n:") {
		return binfmt.Arch{}, &UnknownArchError{Name: name}
	}
	p, err := platforms.Parse(name)
	if err != nil {
		return binfmt.Arch{}, &UnknownArchError{Name: name}
	}
	if p.OS != "linux" {
		return binfmt.Arch{}, fmt.Errorf("%q: binfmt_misc runs linux binaries only, not %s", name, p.OS)
	}
	p = platforms.Normalize(p)
	if a, ok := binfmt.ArchByPlatform(p.Architecture); ok {
		return a, nil
	}
	return binfmt.Arch{}, &UnknownArchError{Name: name}
}

// LookupArches resolves several names, dropping duplicates and keeping
// their order. The first unknown name is an error.
func LookupArches(names []string) ([]binfmt.Arch, error) {
	var out []binfmt.Arch
	seen := map[string]bool{}
	for _, n := range names {
		a, err := LookupArch(n)
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
