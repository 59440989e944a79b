package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"mabd/binfmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// tinyDir is the directory of the tiny probes' sources (GNU as, no Go
// files), relative to package mabd/emulator's.
const tinyDir = "internal/tinyprobe"

// linkerScript is the layout of every tiny probe, in tinyDir.
const linkerScript = "probe.ld"

// maxTiny bounds the size of a tiny probe: they are a few hundred bytes,
// and more means the link took something it should not have.
const maxTiny = 1024

// asmTarget is one architecture of binfmt's table that gets a tiny probe:
// its source, assembled and linked by the binutils of triple with the
// flags that select the variant (ABI, byte order, class).
type asmTarget struct {
	arch   string   // QEMU name, the probe's file is <arch>.elf
	triple string   // binutils' target: <triple>-as, <triple>-ld
	src    string   // the source in tinyDir
	as, ld []string // the variant's flags
}

// pkg returns the Debian 12 package that ships t's binutils.
func (t asmTarget) pkg() string {
	return "binutils-" + strings.ReplaceAll(t.triple, "x86_64", "x86-64")
}

// asmTargets are the architectures of binfmt's table for which Debian 12
// ships cross binutils, by QEMU name. One binutils assembles every
// variant of a family (aarch64_be with aarch64's, the six mips ABIs with
// mips64's, ppc and ppc64le with powerpc64's, riscv32 with riscv64's,
// sh4eb with sh4's, sparc and sparc32plus with sparc64's, i386 with
// x86_64's). Every flag that selects byte order, class or ABI is given,
// so nothing depends on the tools' defaults.
//
// Without Debian 12 cross binutils (so still probed by the Go program
// where Go builds for them, or not at all): cris, hexagon, loongarch64
// (Go), microblaze, microblazeel, nios2, or1k, xtensa, xtensaeb.
var asmTargets = []asmTarget{
	{"aarch64", "aarch64-linux-gnu", "aarch64.s", []string{"-EL"}, []string{"-EL", "-m", "aarch64linux"}},
	{"aarch64_be", "aarch64-linux-gnu", "aarch64.s", []string{"-EB"}, []string{"-EB", "-m", "aarch64linuxb"}},
	{"alpha", "alpha-linux-gnu", "alpha.s", nil, []string{"-m", "elf64alpha"}},
	{"arm", "arm-linux-gnueabihf", "arm.s", []string{"-EL", "-march=armv7-a", "-mfloat-abi=hard"}, []string{"-EL", "-m", "armelf_linux_eabi"}},
	{"armeb", "arm-linux-gnueabihf", "arm.s", []string{"-EB"}, []string{"-EB", "-m", "armelfb_linux_eabi"}},
	{"hppa", "hppa-linux-gnu", "hppa.s", nil, []string{"-m", "hppalinux"}},
	{"i386", "x86_64-linux-gnu", "i386.s", []string{"--32"}, []string{"-m", "elf_i386"}},
	{"m68k", "m68k-linux-gnu", "m68k.s", nil, []string{"-m", "m68kelf"}},
	{"mips", "mips64-linux-gnuabi64", "mips.s", []string{"-32", "-EB", "--defsym", "NR=4000"}, []string{"-m", "elf32btsmip"}},
	{"mips64", "mips64-linux-gnuabi64", "mips.s", []string{"-64", "-EB", "--defsym", "NR=5000"}, []string{"-m", "elf64btsmip"}},
	{"mips64el", "mips64-linux-gnuabi64", "mips.s", []string{"-64", "-EL", "--defsym", "NR=5000"}, []string{"-m", "elf64ltsmip"}},
	{"mipsel", "mips64-linux-gnuabi64", "mips.s", []string{"-32", "-EL", "--defsym", "NR=4000"}, []string{"-m", "elf32ltsmip"}},
	{"mipsn32", "mips64-linux-gnuabi64", "mips.s", []string{"-n32", "-EB", "--defsym", "NR=6000"}, []string{"-m", "elf32btsmipn32"}},
	{"mipsn32el", "mips64-linux-gnuabi64", "mips.s", []string{"-n32", "-EL", "--defsym", "NR=6000"}, []string{"-m", "elf32ltsmipn32"}},
	{"ppc", "powerpc64-linux-gnu", "ppc.s", []string{"-a32", "-mbig"}, []string{"-m", "elf32ppclinux"}},
	{"ppc64", "powerpc64-linux-gnu", "ppc.s", []string{"-a64", "-mbig", "--defsym", "PPC64=1"}, []string{"-m", "elf64ppc"}},
	{"ppc64le", "powerpc64-linux-gnu", "ppc.s", []string{"-a64", "-mlittle", "--defsym", "PPC64=1", "--defsym", "ELFV2=1"}, []string{"-m", "elf64lppc"}},
	{"riscv32", "riscv64-linux-gnu", "riscv.s", []string{"-march=rv32gc", "-mabi=ilp32d"}, []string{"-m", "elf32lriscv"}},
	{"riscv64", "riscv64-linux-gnu", "riscv.s", []string{"-march=rv64gc", "-mabi=lp64d"}, []string{"-m", "elf64lriscv"}},
	{"s390x", "s390x-linux-gnu", "s390x.s", []string{"-m64"}, []string{"-m", "elf64_s390"}},
	{"sh4", "sh4-linux-gnu", "sh4.s", []string{"-little"}, []string{"-EL", "-m", "shlelf_linux"}},
	{"sh4eb", "sh4-linux-gnu", "sh4.s", []string{"-big"}, []string{"-EB", "-m", "shlelf_linux"}},
	{"sparc", "sparc64-linux-gnu", "sparc.s", []string{"-32", "-Av8"}, []string{"-m", "elf32_sparc"}},
	{"sparc32plus", "sparc64-linux-gnu", "sparc.s", []string{"-32", "-Av8plus", "--defsym", "V9=1"}, []string{"-m", "elf32_sparc"}},
	{"sparc64", "sparc64-linux-gnu", "sparc.s", []string{"-64", "-Av9", "--defsym", "V9=1", "--defsym", "SPARC64=1"}, []string{"-m", "elf64_sparc"}},
	{"x86_64", "x86_64-linux-gnu", "x86_64.s", []string{"--64"}, []string{"-m", "elf_x86_64"}},
}

// ldFlags are given to every link: the layout of probe.ld, no page
// alignment (-N), no symbols (-s), no build ID (its hash would be
// reproducible, but it is 36 bytes of nothing), and every warning an
// error. GNU ld writes no time stamp into an ELF executable; nothing in
// the output depends on the paths of the inputs.
var ldFlags = []string{"--fatal-warnings", "-N", "-s", "--build-id=none", "-T", linkerScript}

// triples returns the distinct binutils targets of asmTargets, sorted.
func triples() []string {
	var out []string
	for _, t := range asmTargets {
		if !slices.Contains(out, t.triple) {
			out = append(out, t.triple)
		}
	}
	slices.Sort(out)
	return out
}

// checkTools returns the release of each triple's binutils ("2.40"), or
// an error naming every missing tool and the packages to install.
func checkTools() (map[string]string, error) {
	var missing, pkgs []string
	versions := map[string]string{}
	for _, tr := range triples() {
		var pkg string
		for _, t := range asmTargets {
			if t.triple == tr {
				pkg = t.pkg()
				break
			}
		}
		var vs []string
		for _, tool := range []string{tr + "-as", tr + "-ld"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = append(missing, tool)
				if !slices.Contains(pkgs, pkg) {
					pkgs = append(pkgs, pkg)
				}
				continue
			}
			v, err := toolVersion(tool)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		if len(vs) == 2 && vs[0] != vs[1] {
			return nil, fmt.Errorf("%s-as is binutils %s but %s-ld is %s: install one binutils release (%s)", tr, vs[0], tr, vs[1], pkg)
		}
		if len(vs) == 2 {
			versions[tr] = vs[0]
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the tiny probes need Debian's cross binutils: %s not found: install %s (make deps)",
			strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return versions, nil
}

// toolVersion returns the release a GNU binutils tool reports: the last
// word of the first line of --version ("GNU assembler (GNU Binutils for
// Debian) 2.40" gives "2.40").
func toolVersion(tool string) (string, error) {
	cmd := exec.Command(tool, "--version")
	cmd.Env = toolEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", tool, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(line, "GNU ") {
		return "", fmt.Errorf("%s --version: %q is not GNU binutils", tool, line)
	}
	return f[len(f)-1], nil
}

// toolEnv is the environment of as and ld: the caller's PATH, and
// nothing else that could change what they do (a locale, a
// LD_RUN_PATH).
func toolEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
}

// assemble assembles and links t in tmp from the sources in src, checks
// the result against binfmt's table and returns it.
func assemble(src, tmp string, t asmTarget) ([]byte, error) {
	obj := filepath.Join(tmp, t.arch+".o")
	bin := filepath.Join(tmp, t.arch)
	steps := [][]string{
		append(append([]string{t.triple + "-as", "--fatal-warnings"}, t.as...), "-o", obj, t.src),
		append(append(append([]string{t.triple + "-ld"}, ldFlags...), t.ld...), "-o", bin, obj),
	}
	for _, argv := range steps {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = src
		cmd.Env = toolEnv()
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			if err == nil {
				err = errors.New("it warned")
			}
			return nil, fmt.Errorf("the %s probe: %s: %v\n%s", t.arch, strings.Join(argv, " "), err, out)
		}
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if err := checkTiny(t.arch, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// checkTiny checks a tiny probe for arch: a static ELF executable of the
// table's identity for arch, selected by the table's magic and mask,
// with one loadable segment and no interpreter, at most maxTiny bytes.
func checkTiny(arch string, raw []byte) error {
	a, ok := binfmt.ArchByName(arch)
	if !ok {
		return fmt.Errorf("the %s probe: %s is not in binfmt's table", arch, arch)
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("the %s probe: %w", arch, err)
	}
	id := binfmt.ELFIdentity{Class: f.Class, Data: f.Data, Machine: f.Machine}
	if id != a.ELF() || f.Type != elf.ET_EXEC {
		return fmt.Errorf("the %s probe is %v %v, want %v ET_EXEC", arch, id, f.Type, a.ELF())
	}
	if !a.Spec("/qemu", binfmt.FixBinary).Matches(raw[:min(len(raw), 128)]) {
		return fmt.Errorf("the %s probe is not selected by the table's magic and mask for %s", arch, arch)
	}
	var loads int
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP, elf.PT_DYNAMIC:
			return fmt.Errorf("the %s probe is dynamically linked", arch)
		case elf.PT_LOAD:
			loads++
		}
	}
	if loads != 1 {
		return fmt.Errorf("the %s probe has %d loadable segments, want 1 (see %s)", arch, loads, linkerScript)
	}
	if len(raw) > maxTiny {
		return fmt.Errorf("the %s probe is %d bytes, more than %d: check %s", arch, len(raw), maxTiny, linkerScript)
	}
	return nil
}
