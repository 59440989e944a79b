package binfmt

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"iter"
	"runtime"
	"strings"
)

// Arch is one architecture QEMU's user-mode emulators can run.
type Arch struct {
	// Name is QEMU's name for it: the emulator is qemu-<Name>[-static] and
	// mabd's handler is named qemu-<Name>.
	Name string
	// Platform is its OCI platform ("linux/arm64", "linux/arm/v7"), or ""
	// when OCI has none.
	Platform string
	// Machine is what `uname -m` prints under the emulator, where known.
	Machine string
	// Aliases are other names users give it (Debian's, Go's, uname's).
	Aliases []string
	// Magic and Mask select its ELF files: the ELF identification, class,
	// byte order and e_machine, as QEMU's qemu-binfmt-conf.sh has them.
	Magic, Mask []byte
}

// GOARCH returns the Go architecture of a's programs ("arm64", "arm",
// "386"): the architecture of its OCI platform, which OCI names as Go
// does; "" when a has no platform (Go builds for none of those).
func (a Arch) GOARCH() string {
	parts := strings.Split(a.Platform, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// ELFIdentity is what an ELF header says about the machine a program is
// for: its class (32 or 64 bits), byte order and e_machine.
type ELFIdentity struct {
	Class   elf.Class   `json:"class"`
	Data    elf.Data    `json:"data"`
	Machine elf.Machine `json:"machine"`
}

// ELF returns the identity of a's programs, read from the start of the
// magic that selects them (the ELF header's e_ident class and byte order,
// and e_machine).
func (a Arch) ELF() ELFIdentity {
	id := ELFIdentity{Class: elf.Class(a.Magic[elf.EI_CLASS]), Data: elf.Data(a.Magic[elf.EI_DATA])}
	var bo binary.ByteOrder = binary.LittleEndian
	if id.Data == elf.ELFDATA2MSB {
		bo = binary.BigEndian
	}
	id.Machine = elf.Machine(bo.Uint16(a.Magic[18:20]))
	return id
}

// String names the architecture of an identity as mabd does everywhere,
// by its QEMU name ("x86_64", "aarch64", "ppc64le"); or, for one no
// architecture of the table has, "ELF32 big-endian EM_VAX".
func (id ELFIdentity) String() string {
	if a, ok := ArchByELF(id); ok {
		return a.Name
	}
	bits := map[elf.Class]string{elf.ELFCLASS32: "ELF32", elf.ELFCLASS64: "ELF64"}[id.Class]
	order := map[elf.Data]string{elf.ELFDATA2LSB: "little-endian", elf.ELFDATA2MSB: "big-endian"}[id.Data]
	return fmt.Sprintf("%s %s %s", bits, order, id.Machine)
}

// ArchByELF returns the architecture of the table whose programs have the
// identity id; of several, the first by name (mips and mipsn32 share one,
// told apart only by e_flags: mips).
func ArchByELF(id ELFIdentity) (Arch, bool) {
	for _, a := range arches {
		if a.ELF() == id {
			return a, true
		}
	}
	return Arch{}, false
}

// HandlerName returns the entry name mabd gives the handler: qemu-<Name>.
func (a Arch) HandlerName() string { return "qemu-" + a.Name }

// Spec returns the handler that runs a's files with interpreter.
func (a Arch) Spec(interpreter string, flags Flags) Spec {
	return Spec{
		Name:        a.HandlerName(),
		Type:        Magic,
		Magic:       append([]byte(nil), a.Magic...),
		Mask:        append([]byte(nil), a.Mask...),
		Interpreter: interpreter,
		Flags:       flags.normalize(),
	}
}

// Arches returns the table: every target of Debian's qemu-user-static,
// sorted by name. The caller may modify the result.
func Arches() []Arch {
	out := make([]Arch, len(arches))
	copy(out, arches)
	return out
}

// All yields the architectures of [Arches] in its order without copying
// the table, for a caller that only looks through it.
func All() iter.Seq[Arch] {
	return func(yield func(Arch) bool) {
		for _, a := range arches {
			if !yield(a) {
				return
			}
		}
	}
}

// ArchByName finds an architecture by one of the table's own names: its
// QEMU name, its handler name (qemu-<name>) or an alias, ignoring case.
// [Lookup] takes those and OCI platforms, and says what is wrong with a
// name it does not know: use it for what people type.
func ArchByName(name string) (Arch, bool) {
	n := strings.TrimPrefix(strings.ToLower(name), "qemu-")
	for _, a := range arches {
		if a.Name == n {
			return a, true
		}
		for _, al := range a.Aliases {
			if al == n {
				return a, true
			}
		}
	}
	return Arch{}, false
}

// archByPlatform finds the architecture that runs an OCI platform's
// binaries, given the platform architecture as containerd/platforms
// normalises it ("arm64", "arm"). Every 32-bit arm variant runs under
// qemu-arm.
func archByPlatform(arch string) (Arch, bool) {
	for _, a := range arches {
		p := strings.Split(a.Platform, "/")
		if len(p) >= 2 && p[1] == arch {
			return a, true
		}
	}
	return Arch{}, false
}

// Native returns the QEMU names of the architectures a kernel for the Go
// architecture goarch (runtime.GOARCH when "") runs without an emulator
// by default: its own first, and i386 on amd64, whose kernels run 32-bit
// x86 unless built or booted without IA32 emulation. Registering a
// handler for those would send native programs through QEMU. What this
// host's kernel does run is proved by emulator.Native.
func Native(goarch string) []string {
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	switch goarch {
	case "amd64":
		return []string{"x86_64", "i386"}
	case "386":
		return []string{"i386"}
	}
	for _, a := range arches {
		if strings.HasPrefix(a.Platform, "linux/"+goarch) && (len(a.Platform) == len("linux/"+goarch) || a.Platform[len("linux/"+goarch)] == '/') {
			return []string{a.Name}
		}
	}
	return nil
}

// arches is the table. Magic and mask follow Debian's
// /usr/lib/binfmt.d/qemu-*.conf (TestTableMatchesDebian checks that) and, for
// the targets Debian has no file for on amd64, QEMU's qemu-binfmt-conf.sh
// (nios2, which has none there, is built the same way from its e_machine, 113).
// One deliberate difference: byte 8 of the mips family (EI_ABIVERSION) is
// masked with 0x00 as current QEMU does, not 0xfe as Debian's QEMU 7.2, which
// rejects binaries of ABI version 2 and above.
var arches = []Arch{
	{Name: "aarch64", Platform: "linux/arm64", Machine: "aarch64", Aliases: []string{"arm64"},
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "aarch64_be", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "alpha", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x26\x90"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "arm", Platform: "linux/arm/v7", Machine: "armv7l", Aliases: []string{"armhf", "armel", "armv7", "armv7l", "armv6l"},
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "armeb", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "cris", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x4c\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "hexagon", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xa4\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "hppa", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x0f"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "i386", Platform: "linux/386", Machine: "i686", Aliases: []string{"386", "i686", "x86"},
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "loongarch64", Platform: "linux/loong64", Machine: "loongarch64", Aliases: []string{"loong64"},
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "m68k", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x04"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "microblaze", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\xba\xab"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "microblazeel", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xab\xba"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "mips", Platform: "linux/mips", Machine: "mips", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20")},
	{Name: "mips64", Platform: "linux/mips64", Machine: "mips64", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "mips64el", Platform: "linux/mips64le", Machine: "mips64", Aliases: []string{"mips64le"},
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "mipsel", Platform: "linux/mipsle", Machine: "mips", Aliases: []string{"mipsle"},
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20")},
	{Name: "mipsn32", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20")},
	{Name: "mipsn32el", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20")},
	{Name: "nios2", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x71\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "or1k", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x5c"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "ppc", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x14"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "ppc64", Platform: "linux/ppc64", Machine: "ppc64", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "ppc64le", Platform: "linux/ppc64le", Machine: "ppc64le", Aliases: []string{"ppc64el"},
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00")},
	{Name: "riscv32", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "riscv64", Platform: "linux/riscv64", Machine: "riscv64", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "s390x", Platform: "linux/s390x", Machine: "s390x", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "sh4", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x2a\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "sh4eb", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x2a"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "sparc", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "sparc32plus", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x12"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "sparc64", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x2b"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
	{Name: "x86_64", Platform: "linux/amd64", Machine: "x86_64", Aliases: []string{"amd64", "x86-64"},
		Magic: []byte("\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "xtensa", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x5e\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")},
	{Name: "xtensaeb", Platform: "", Machine: "", Aliases: nil,
		Magic: []byte("\x7f\x45\x4c\x46\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x5e"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff")},
}
