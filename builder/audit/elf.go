package audit

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"mabd/binfmt"
)

// Identity is what an ELF header says about the machine a file is for:
// its class (32 or 64 bits), byte order and e_machine. It is binfmt's,
// which knows the identity of every architecture's programs.
type Identity = binfmt.ELFIdentity

// Architectures returns the architectures of the OCI platforms [Expected]
// knows (Go's names, which OCI uses), sorted.
func Architectures() []string {
	var out []string
	for a := range binfmt.All() {
		if g := a.GOARCH(); g != "" {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

// Expected returns the identity of the ELF files of an OCI platform
// ("linux/arm64", "linux/arm/v7"; aliases such as aarch64 are normalized).
func Expected(platform string) (Identity, error) {
	a, err := binfmt.Lookup(platform)
	if err != nil || a.GOARCH() == "" {
		return Identity{}, fmt.Errorf("no ELF identity known for platform %q (known: %s)", platform, strings.Join(Architectures(), ", "))
	}
	return a.ELF(), nil
}

// HeaderSize is how much of a file [ParseHeader] looks at: the size of an
// ELF64 header (an ELF32 header is 52 bytes).
const HeaderSize = 64

// ParseHeader reads the identity and type of an ELF file from its first
// bytes (at least 20; [HeaderSize] is the whole header). ok is false for
// anything that is not an ELF file: a script, data, a short file.
func ParseHeader(b []byte) (id Identity, typ elf.Type, ok bool) {
	if len(b) < 20 || string(b[:4]) != elf.ELFMAG || b[elf.EI_VERSION] != byte(elf.EV_CURRENT) {
		return Identity{}, 0, false
	}
	class, data := elf.Class(b[elf.EI_CLASS]), elf.Data(b[elf.EI_DATA])
	var bo binary.ByteOrder
	switch data {
	case elf.ELFDATA2LSB:
		bo = binary.LittleEndian
	case elf.ELFDATA2MSB:
		bo = binary.BigEndian
	default:
		return Identity{}, 0, false
	}
	if class != elf.ELFCLASS32 && class != elf.ELFCLASS64 {
		return Identity{}, 0, false
	}
	return Identity{Class: class, Data: data, Machine: elf.Machine(bo.Uint16(b[18:20]))}, elf.Type(bo.Uint16(b[16:18])), true
}
