package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// loongarch64 has no cross binutils in Debian 12 (binutils-loongarch64-
// linux-gnu arrives with Debian 13), and its Go probe costs an emulated Go
// runtime start (about 35 ms, the longest of a `mabd verify`). So its tiny
// probe is made here: the program below, encoded by a few lines of Go from
// the LoongArch Reference Manual (volume 1, v1.10: the 2RI12, 3R, 1RI21
// and I26 formats), in a minimal ELF64 executable of the same shape as the
// linked ones (one read-and-execute PT_LOAD at 0x10000 holding the
// headers and the code; no section headers). The tests run it under
// qemu-loongarch64 like every probe.

// loongTarget is the QEMU name of the architecture loong64Probe is for.
const loongTarget = "loongarch64"

// LoongArch registers (LP64 ABI names).
const (
	rZero = 0
	rSP   = 3
	rA0   = 4
	rA1   = 5
	rA2   = 6
	rA7   = 11
	rT0   = 12
)

// loongAsm assembles LoongArch64 instructions, with labels for the
// branches.
type loongAsm struct {
	code   []uint32
	labels map[string]int // label -> instruction index
	fixups []loongFixup
}

// loongFixup is a branch whose offset is known once its label is.
type loongFixup struct {
	at    int
	label string
	enc   func(offs int32) uint32
}

func (a *loongAsm) emit(w uint32) { a.code = append(a.code, w) }

func (a *loongAsm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.code)
}

// 2RI12: opcode[31:22] si12[21:10] rj[9:5] rd[4:0].
func ri12(op uint32, rd, rj int, si12 int32) uint32 {
	return op | uint32(si12)&0xfff<<10 | uint32(rj)<<5 | uint32(rd)
}

func (a *loongAsm) addiD(rd, rj int, si12 int32) { a.emit(ri12(0x02c00000, rd, rj, si12)) }
func (a *loongAsm) ldBU(rd, rj int, si12 int32)  { a.emit(ri12(0x2a000000, rd, rj, si12)) }
func (a *loongAsm) stB(rd, rj int, si12 int32)   { a.emit(ri12(0x29000000, rd, rj, si12)) }

// 3R: opcode[31:15] rk[14:10] rj[9:5] rd[4:0].
func (a *loongAsm) or(rd, rj, rk int) {
	a.emit(0x00150000 | uint32(rk)<<10 | uint32(rj)<<5 | uint32(rd))
}
func (a *loongAsm) subD(rd, rj, rk int) {
	a.emit(0x00118000 | uint32(rk)<<10 | uint32(rj)<<5 | uint32(rd))
}

func (a *loongAsm) move(rd, rj int)        { a.or(rd, rj, rZero) }
func (a *loongAsm) li(rd int, si12 int32)  { a.addiD(rd, rZero, si12) }
func (a *loongAsm) syscall()               { a.emit(0x002b0000) }
func (a *loongAsm) beqz(rj int, to string) { a.branch21(0x40000000, rj, to) }
func (a *loongAsm) bnez(rj int, to string) { a.branch21(0x44000000, rj, to) }

// 1RI21: opcode[31:26] offs[15:0] at [25:10], rj[9:5], offs[20:16] at
// [4:0]; offs counts instructions from this one.
func (a *loongAsm) branch21(op uint32, rj int, to string) {
	a.fixups = append(a.fixups, loongFixup{len(a.code), to, func(offs int32) uint32 {
		o := uint32(offs)
		return op | (o&0xffff)<<10 | uint32(rj)<<5 | (o>>16)&0x1f
	}})
	a.emit(0)
}

// I26 (b): opcode[31:26] offs[15:0] at [25:10], offs[25:16] at [9:0].
func (a *loongAsm) b(to string) {
	a.fixups = append(a.fixups, loongFixup{len(a.code), to, func(offs int32) uint32 {
		o := uint32(offs)
		return 0x50000000 | (o&0xffff)<<10 | (o>>16)&0x3ff
	}})
	a.emit(0)
}

// bytes resolves the branches and returns the code, little-endian.
func (a *loongAsm) bytes() ([]byte, error) {
	for _, f := range a.fixups {
		to, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("loongarch64: no label %q", f.label)
		}
		a.code[f.at] = f.enc(int32(to - f.at))
	}
	out := make([]byte, 4*len(a.code))
	for i, w := range a.code {
		binary.LittleEndian.PutUint32(out[4*i:], w)
	}
	return out, nil
}

// loong64Code is the tiny probe's program, the same as the assembled
// ones': uname(2) into a buffer on the stack, then write(1, machine +
// "\n"), exit. System calls: number in a7, arguments in a0, a1, a2,
// result in a0; syscall 0.
func loong64Code() ([]byte, error) {
	var a loongAsm
	a.addiD(rSP, rSP, -400) // struct new_utsname (390 bytes)
	a.move(rA0, rSP)
	a.li(rA7, 160) // uname
	a.syscall()
	a.bnez(rA0, "fail")
	a.addiD(rA1, rSP, 260) // its machine field
	a.move(rA2, rA1)
	a.label("loop")
	a.ldBU(rT0, rA2, 0) // find the NUL
	a.beqz(rT0, "done")
	a.addiD(rA2, rA2, 1)
	a.b("loop")
	a.label("done")
	a.li(rT0, 10) // and make it "\n"
	a.stB(rT0, rA2, 0)
	a.addiD(rA2, rA2, 1)
	a.subD(rA2, rA2, rA1)
	a.li(rA0, 1)
	a.li(rA7, 64) // write
	a.syscall()
	a.li(rA0, 0)
	a.b("exit")
	a.label("fail")
	a.li(rA0, 1)
	a.label("exit")
	a.li(rA7, 93) // exit
	a.syscall()
	return a.bytes()
}

// ELF constants of the loongarch64 probe.
const (
	emLoongArch = 258
	// e_flags: the LP64D ABI (EF_LOONGARCH_ABI_DOUBLE_FLOAT) and object
	// ABI v1, what GCC and binutils write.
	loongFlags = 0x43
	loongBase  = 0x10000
)

// loong64Probe returns the loongarch64 tiny probe: an ELF64 header, one
// program header and the code, the entry point right after the headers.
func loong64Probe() ([]byte, error) {
	code, err := loong64Code()
	if err != nil {
		return nil, err
	}
	const ehsize, phsize = 64, 56
	size := uint64(ehsize + phsize + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2 /* ELFCLASS64 */, 1 /* ELFDATA2LSB */, 1 /* EV_CURRENT */, 0 /* ELFOSABI_NONE */})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, struct {
		Type, Machine              uint16
		Version                    uint32
		Entry, Phoff, Shoff        uint64
		Flags                      uint32
		Ehsize, Phentsize, Phnum   uint16
		Shentsize, Shnum, Shstrndx uint16
	}{2 /* ET_EXEC */, emLoongArch, 1, loongBase + ehsize + phsize, ehsize, 0, loongFlags, ehsize, phsize, 1, 0, 0, 0})
	binary.Write(&b, le, struct {
		Type, Flags                         uint32
		Offset, Vaddr, Paddr, Filesz, Memsz uint64
		Align                               uint64
	}{1 /* PT_LOAD */, 5 /* PF_R|PF_X */, 0, loongBase, loongBase, size, size, 4})
	b.Write(code)
	return b.Bytes(), nil
}
