// Command probe is the program mabd runs under an emulator to check that
// foreign execution works. It is built for every architecture Go can target
// that mabd's table has (see ../genprobes) and embedded in package emulator.
//
// Without arguments it prints the machine field of uname(2) and a newline:
// under QEMU that is the emulated machine ("aarch64", "armv7l"), natively
// the host kernel's.
//
// With the arguments "bench N" it runs a fixed, deterministic integer
// workload N times instead and prints a checksum of it as 16 hexadecimal
// digits and a newline. The checksum is the same on every architecture, so
// the caller can check that the emulated result equals the native one.
//
// With the argument "workload" it exercises what real builds stress (see
// workload.go): threads, futexes, signals, fork and exec of itself, large
// mmap and brk growth and a few seconds of CPU, printing one line per step
// that is the same on every architecture. "child ARG" is what it runs as
// its own children there.
//
// It imports no fmt and no os (only syscall, the runtime, sync, slices and
// crypto/sha256, plus unsafe) to stay small. Exit status 0 is success, 1 a
// failed system call or a wrong result, 2 bad arguments.
package main

import (
	"syscall"
	_ "unsafe" // for go:linkname
)

// runtimeArgs returns the command line. The runtime provides it to package
// os under this name; using it directly avoids linking os.
//
//go:linkname runtimeArgs os.runtime_args
func runtimeArgs() []string

// words is the size of the workload's buffer in 64-bit words (32 KiB, so
// it stays in the L1 or L2 cache everywhere).
const words = 4096

func main() {
	args := runtimeArgs()
	switch {
	case len(args) <= 1:
		var u syscall.Utsname
		if err := syscall.Uname(&u); err != nil {
			fail("uname: ", err)
		}
		out := make([]byte, 0, len(u.Machine)+1)
		for _, c := range u.Machine {
			if c == 0 {
				break
			}
			out = append(out, byte(c))
		}
		write(append(out, '\n'))
	case len(args) == 2 && args[1] == "workload":
		workload(args[0])
	case len(args) == 3 && args[1] == "child":
		child(args[2])
	case len(args) == 3 && args[1] == "bench":
		n, ok := atoi(args[2])
		if !ok {
			usage()
		}
		write(append(hex(bench(n)), '\n'))
	default:
		usage()
	}
}

// bench runs the workload n times: xorshift64 over a buffer of words,
// folding every word into a checksum. It uses only fixed-size unsigned
// integer arithmetic, so the result does not depend on the architecture.
func bench(n int) uint64 {
	buf := make([]uint64, words)
	for i := range buf {
		buf[i] = uint64(i)*0x9e3779b97f4a7c15 + 1
	}
	x := uint64(0x2545f4914f6cdd1d)
	var sum uint64
	for r := 0; r < n; r++ {
		for i := range buf {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			v := buf[i] ^ x
			v = (v ^ v>>31) * 0xbf58476d1ce4e5b9
			buf[i] = v
			sum = (sum ^ v) * 0x100000001b3
		}
		sum += uint64(r)
	}
	return sum
}

// atoi parses a positive decimal number of at most 9 digits.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0
}

// hex formats v as 16 lower-case hexadecimal digits.
func hex(v uint64) []byte {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return b
}

// write writes b to standard output or exits with status 1.
func write(b []byte) {
	for len(b) > 0 {
		n, err := syscall.Write(1, b)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			fail("write: ", err)
		}
		b = b[n:]
	}
}

// fail reports a failed system call on standard error and exits with 1.
func fail(op string, err error) {
	syscall.Write(2, []byte("probe: "+op+err.Error()+"\n"))
	syscall.Exit(1)
}

// usage reports bad arguments and exits with 2.
func usage() {
	syscall.Write(2, []byte("usage: probe [bench N | workload]\n"))
	syscall.Exit(2)
}
