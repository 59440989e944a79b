package emulator

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"mabd/binfmt"
	"mabd/internal/parallel"
)

// DefaultWorkloadTimeout bounds one run of the workload probe when
// [ProbeOptions.WorkloadTimeout] is 0. A run takes 1 to 3 s under QEMU
// on a current x86-64 core.
const DefaultWorkloadTimeout = time.Minute

// WorkloadOutput is what the workload probe prints when every step gave
// the right result, on every architecture (see
// internal/probe/workload.go): the digest of 32 MiB hashed by 8 threads,
// a checksum of 2 Mi sorted integers, futex handoffs and a mutex counter,
// recovered faults, the children run and killed, and the memory grown.
const WorkloadOutput = `threads: sha256 of 32 MiB in 8 parts f97e0426fb66827eea1d4f6e3c3a89dc3e0e7b033ce20ccc2c6aea7459950252
sort: 2097152 ints 17fafc93bea8fd9d
futex: 2000 handoffs between 2 threads, counter 80000
signals: 64 faults recovered
fork/exec: 4 children ok, 1 killed by SIGTERM
memory: mmap 64 MiB, brk ok
`

// workloadEnv is the workload probe's environment: a fatal error of its
// Go runtime kills it with SIGABRT (rather than exit status 2), so that
// what a broken emulator does to it shows as the signal it is.
var workloadEnv = []string{"GOTRACEBACK=crash"}

// Workload is [Probe] with the workload probe: a's probe program, alone
// in an empty chroot (so only an F handler can run it), exercises what
// real builds stress — threads and futexes, signals, fork and exec of
// itself (through binfmt_misc again), large mmap and brk growth, and a
// few seconds of CPU (sha256 of 32 MiB, a sort of 2 Mi integers) — and
// must print [WorkloadOutput]. An emulator that passes Probe may still
// fail here: QEMU 7.2's qemu-i386 kills Go programs as soon as the
// runtime preempts a thread with a signal.
//
// The run is bounded by opt.WorkloadTimeout. The result's State, Reason
// and Fix are Probe's (see classify.go), with [ReasonWrongOutput] for a
// run that printed something else, and Machine "". Duration is the
// run's wall-clock time, emulator start-up and the children included.
func Workload(ctx context.Context, a binfmt.Arch, opt ProbeOptions) Result {
	r, bin := loadProbe(a)
	if bin == nil {
		return r
	}
	run := runProbe(ctx, bin, []string{"workload"}, workloadEnv, opt.workloadTimeout())
	run.workload = true
	r.Duration = run.elapsed
	classify(&r, a, opt, newTable(opt.Mount), run)
	return r
}

// WorkloadAll runs [Workload] for each architecture, several at a time
// (at most the number of CPUs), and returns the results in the order of
// arches.
func WorkloadAll(ctx context.Context, arches []binfmt.Arch, opt ProbeOptions) []Result {
	return forEachArch(arches, func(a binfmt.Arch) Result { return Workload(ctx, a, opt) })
}

// forEachArch runs f for each architecture, at most runtime.NumCPU() at
// a time, and returns the results in the order of arches.
func forEachArch(arches []binfmt.Arch, f func(binfmt.Arch) Result) []Result {
	out := make([]Result, len(arches))
	parallel.Run(len(arches), runtime.NumCPU(), func(i int) { out[i] = f(arches[i]) })
	return out
}

// outputDiff says where the workload's output first differs from
// WorkloadOutput.
func outputDiff(got string) string {
	want := strings.Split(strings.TrimSuffix(WorkloadOutput, "\n"), "\n")
	lines := strings.Split(got, "\n")
	for i, w := range want {
		switch {
		case i >= len(lines) || lines[i] == "" && i == len(lines)-1:
			return fmt.Sprintf("the output ends before %q", w)
		case lines[i] != w:
			return fmt.Sprintf("%q where every correct run prints %q", trimOutput(lines[i]), w)
		}
	}
	return fmt.Sprintf("%q after the expected output", trimOutput(strings.Join(lines[len(want):], "\n")))
}
