package main

// The workload: what real builds stress in an emulator, in a few seconds.
//
// Each step prints one line that is the same on every architecture and
// every run (package emulator compares the whole output with what it
// expects), or fails: a wrong result or a failed system call prints
// "probe: …" on standard error and exits with status 1. A broken emulator
// usually kills the program instead (a signal, or a fatal error of the Go
// runtime), which the caller tells apart from its exit status and stderr.
//
//   - threads: sha256 of 32 MiB in 8 goroutines on 4 threads, while the
//     runtime preempts them with signals (SIGURG) — Go programs under QEMU
//     7.2's qemu-i386 die of this;
//   - sort: 2 Mi int64s with slices.Sort;
//   - futex: handoffs between two goroutines locked to their own threads,
//     and 8 goroutines contending for one mutex (threads park and wake
//     through futex(2));
//   - signals: nil dereferences on 4 threads, each a SIGSEGV that the
//     runtime turns into a panic that is recovered;
//   - fork/exec: the program runs itself ("child N") 4 times at once and
//     checks what each prints and that it exits 0, then runs one that
//     waits and kills it with SIGTERM, which must be its death;
//   - memory: a 64 MiB anonymous mmap and 16 MiB of brk growth, every page
//     written and read back. On 32-bit architectures Go places its heap
//     right after the break, so there the kernel (or the emulator) may
//     refuse to grow it, which must leave the break where it was.
//
// The program runs itself by the path in its argv[0]: mabd runs it as
// /probe in an otherwise empty chroot, where that is the only program (and
// /proc is not mounted), so every child goes through binfmt_misc again.

import (
	"crypto/sha256"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"unsafe"
)

// The sizes of the steps.
const (
	hashBytes   = 32 << 20 // bytes hashed
	hashParts   = 8        // goroutines hashing them
	sortInts    = 2 << 20  // int64s sorted
	handoffs    = 2000     // round trips between two threads
	counterAdds = 80000    // mutex-protected increments by 8 goroutines
	faults      = 64       // nil dereferences recovered, on 4 goroutines
	children    = 4        // copies of itself run at once
	mmapBytes   = 64 << 20 // anonymous mapping
	brkBytes    = 16 << 20 // heap growth through brk(2)
	pageSize    = 4096     // the smallest page of every architecture
)

// nilPtr is dereferenced by fault; a package variable, so the compiler
// cannot prove it nil.
var nilPtr *int32

// workload runs the steps; self is the program's own path (argv[0]).
func workload(self string) {
	runtime.GOMAXPROCS(4)
	hashStep()
	sortStep()
	futexStep()
	signalStep()
	forkStep(self)
	memoryStep()
}

// say prints the concatenation of parts and a newline.
func say(parts ...string) {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	write(append(b, '\n'))
}

// wrong reports a wrong result on standard error and exits with 1.
func wrong(msg string) {
	syscall.Write(2, []byte("probe: "+msg+"\n"))
	syscall.Exit(1)
}

// xorshift returns the next state of a xorshift64 generator.
func xorshift(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

func hashStep() {
	buf := make([]byte, hashBytes)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < len(buf); i += 8 {
		x = xorshift(x)
		for j := 0; j < 8; j++ {
			buf[i+j] = byte(x >> (8 * j))
		}
	}
	sums := make([][sha256.Size]byte, hashParts)
	part := len(buf) / hashParts
	var wg sync.WaitGroup
	for i := range sums {
		wg.Go(func() { sums[i] = sha256.Sum256(buf[i*part : (i+1)*part]) })
	}
	wg.Wait()
	h := sha256.New()
	for _, s := range sums {
		h.Write(s[:])
	}
	say("threads: sha256 of 32 MiB in 8 parts ", hexString(h.Sum(nil)))
}

func sortStep() {
	xs := make([]int64, sortInts)
	x := uint64(0x2545f4914f6cdd1d)
	for i := range xs {
		x = xorshift(x)
		xs[i] = int64(x)
	}
	slices.Sort(xs)
	sum := uint64(0xcbf29ce484222325)
	for i, v := range xs {
		if i > 0 && xs[i-1] > v {
			wrong("sort: the result is not sorted")
		}
		sum = (sum ^ uint64(v)) * 0x100000001b3
	}
	say("sort: ", itoa(sortInts), " ints ", string(hex(sum)))
}

func futexStep() {
	ping, pong, done := make(chan int), make(chan int), make(chan int)
	go func() {
		runtime.LockOSThread()
		n := 0
		for v := range ping {
			n += v
			pong <- v
		}
		done <- n
	}()
	runtime.LockOSThread()
	for i := 0; i < handoffs; i++ {
		ping <- 1
		<-pong
	}
	close(ping)
	n := <-done
	runtime.UnlockOSThread()

	var mu sync.Mutex
	var wg sync.WaitGroup
	counter := 0
	for range 8 {
		wg.Go(func() {
			for i := 0; i < counterAdds/8; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	say("futex: ", itoa(n), " handoffs between 2 threads, counter ", itoa(counter))
}

func signalStep() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	recovered := 0
	for range 4 {
		wg.Go(func() {
			for i := 0; i < faults/4; i++ {
				if fault() {
					mu.Lock()
					recovered++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	say("signals: ", itoa(recovered), " faults recovered")
}

// fault dereferences nil and reports whether the panic the SIGSEGV
// became was recovered.
func fault() (ok bool) {
	defer func() { ok = recover() != nil }()
	*nilPtr = 1
	return false
}

func forkStep(self string) {
	type kid struct{ pid, out int }
	var kids []kid
	for i := 0; i < children; i++ {
		pid, out := spawn(self, itoa(i))
		kids = append(kids, kid{pid, out})
	}
	for i, k := range kids {
		got := readAll(k.out)
		if ws := wait(k.pid); !ws.Exited() || ws.ExitStatus() != 0 {
			wrong("fork/exec: child " + itoa(i) + " did not exit with status 0")
		}
		if want := childLine(i); string(got) != want {
			wrong("fork/exec: child " + itoa(i) + " printed " + quote(got) + ", want " + quote([]byte(want)))
		}
	}
	pid, out := spawn(self, "wait")
	var b [6]byte
	if n, _ := syscall.Read(out, b[:]); string(b[:n]) != "ready\n" {
		wrong("fork/exec: the waiting child did not say it was ready")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		fail("kill: ", err)
	}
	ws := wait(pid)
	syscall.Close(out)
	if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		wrong("fork/exec: SIGTERM did not kill the waiting child")
	}
	say("fork/exec: ", itoa(children), " children ok, 1 killed by SIGTERM")
}

// spawn runs self with the arguments "child" and arg, its standard output
// a pipe; it returns the child's pid and the pipe's read end.
func spawn(self, arg string) (pid, out int) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		fail("pipe: ", err)
	}
	pid, err := syscall.ForkExec(self, []string{self, "child", arg}, &syscall.ProcAttr{
		Env:   syscall.Environ(),
		Files: []uintptr{0, uintptr(p[1]), 2},
	})
	syscall.Close(p[1])
	if err != nil {
		fail("fork/exec "+self+": ", err)
	}
	return pid, p[0]
}

// wait waits for the child pid to end.
func wait(pid int) syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fail("wait4: ", err)
		}
		return ws
	}
}

// readAll reads fd to its end and closes it.
func readAll(fd int) []byte {
	var out []byte
	var b [512]byte
	for {
		n, err := syscall.Read(fd, b[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			fail("read: ", err)
		case n == 0:
			syscall.Close(fd)
			return out
		}
		out = append(out, b[:n]...)
	}
}

// childLine is what child i prints: the start of the sha256 of 64 KiB
// that depend on i.
func childLine(i int) string {
	buf := make([]byte, 64<<10)
	for j := range buf {
		buf[j] = byte(j * (i + 3))
	}
	s := sha256.Sum256(buf)
	return "child " + itoa(i) + " " + hexString(s[:8]) + "\n"
}

// child is the program run as its own child: "wait" says ready and waits
// to be killed; a digit from 0 to children-1 prints childLine.
func child(arg string) {
	if arg == "wait" {
		write([]byte("ready\n"))
		for {
			syscall.Nanosleep(&syscall.Timespec{Sec: 3600}, nil)
		}
	}
	if len(arg) != 1 || arg[0] < '0' || int(arg[0]-'0') >= children {
		usage()
	}
	write([]byte(childLine(int(arg[0] - '0'))))
}

func memoryStep() {
	m, err := syscall.Mmap(-1, 0, mmapBytes, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		fail("mmap: ", err)
	}
	touch(m, "mmap")
	if err := syscall.Munmap(m); err != nil {
		fail("munmap: ", err)
	}

	cur, _, _ := syscall.RawSyscall(syscall.SYS_BRK, 0, 0, 0)
	grown, _, _ := syscall.RawSyscall(syscall.SYS_BRK, cur+brkBytes, 0, 0)
	switch {
	case grown == cur+brkBytes:
		// The new memory starts at the old break (a uintptr the kernel
		// gave, not a Go pointer: converted without arithmetic).
		touch(unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&cur))), brkBytes), "brk")
		if back, _, _ := syscall.RawSyscall(syscall.SYS_BRK, cur, 0, 0); back != cur {
			wrong("brk: the heap did not shrink back")
		}
	case grown == cur && unsafe.Sizeof(cur) == 4:
		// Refused, cleanly: Go's heap follows the break on 32-bit.
	default:
		wrong("brk: growing the heap by 16 MiB moved the break by " + itoa(int(grown-cur)))
	}
	say("memory: mmap 64 MiB, brk ok")
}

// touch writes a byte into every page of m and reads them back.
func touch(m []byte, what string) {
	for i := 0; i < len(m); i += pageSize {
		m[i] = byte(i / pageSize)
	}
	for i := 0; i < len(m); i += pageSize {
		if m[i] != byte(i/pageSize) {
			wrong(what + ": a page does not hold what was written to it")
		}
	}
}

// itoa formats n in decimal.
func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append(b, byte('0'+n%10))
	}
	if neg {
		b = append(b, '-')
	}
	slices.Reverse(b)
	return string(b)
}

// hexString formats b as lower-case hexadecimal digits.
func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}

// quote returns b in double quotes, for a message.
func quote(b []byte) string { return "\"" + string(b) + "\"" }
