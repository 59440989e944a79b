package audit

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/platforms"

	"mabd/binfmt"
)

// Identity is what an ELF header says about the machine a file is for:
// its class (32 or 64 bits), byte order and e_machine.
type Identity struct {
	Class   elf.Class   `json:"class"`
	Data    elf.Data    `json:"data"`
	Machine elf.Machine `json:"machine"`
}

// archELF maps the architecture of each Linux platform Go builds for to the
// identity of its ELF files, read from the start of the magic that mabd's
// binfmt_misc table registers for it: one source for both.
var archELF = func() map[string]Identity {
	m := map[string]Identity{}
	for _, a := range binfmt.Arches() {
		parts := strings.Split(a.Platform, "/")
		if len(parts) < 2 {
			continue
		}
		if id, _, ok := ParseHeader(a.Magic); ok {
			m[parts[1]] = id
		}
	}
	return m
}()

// archNames are the names binaries of each architecture go by (as file(1)
// and uname -m say them), for messages.
var archNames = map[string]string{
	"amd64":    "x86-64",
	"arm64":    "aarch64",
	"arm":      "arm",
	"386":      "i386",
	"ppc64le":  "ppc64le",
	"ppc64":    "ppc64",
	"s390x":    "s390x",
	"riscv64":  "riscv64",
	"mips64le": "mips64el",
	"mips64":   "mips64",
	"mipsle":   "mipsel",
	"mips":     "mips",
	"loong64":  "loongarch64",
}

// Architectures returns the architectures [Expected] knows, sorted.
func Architectures() []string {
	out := make([]string, 0, len(archELF))
	for a := range archELF {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Expected returns the identity of the ELF files of an OCI platform
// ("linux/arm64", "linux/arm/v7"; aliases such as aarch64 are normalized).
func Expected(platform string) (Identity, error) {
	p, err := platforms.Parse(platform)
	if err != nil {
		return Identity{}, err
	}
	p = platforms.Normalize(p)
	id, ok := archELF[p.Architecture]
	if !ok {
		return Identity{}, fmt.Errorf("no ELF identity known for architecture %q (known: %s)", p.Architecture, strings.Join(Architectures(), ", "))
	}
	return id, nil
}

// String names the architecture of the identity: "x86-64", "aarch64",
// "ppc64le"; or, for one no platform has, "ELF32 big-endian EM_SPARC".
func (id Identity) String() string {
	for a, want := range archELF {
		if id == want {
			return archNames[a]
		}
	}
	bits := map[elf.Class]string{elf.ELFCLASS32: "ELF32", elf.ELFCLASS64: "ELF64"}[id.Class]
	order := map[elf.Data]string{elf.ELFDATA2LSB: "little-endian", elf.ELFDATA2MSB: "big-endian"}[id.Data]
	return fmt.Sprintf("%s %s %s", bits, order, id.Machine)
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
