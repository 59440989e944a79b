package emulator

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"mabd/binfmt"
)

// DefaultBenchN is the size of the benchmark workload [Bench] runs when n
// is 0 or less: about 20 ms natively on a current x86-64 core.
const DefaultBenchN = 2000

// benchRuns is how many times Bench runs each side; the fastest run counts.
const benchRuns = 3

// Bench measures how much slower architecture a runs than the host: it
// runs the probe programs' fixed CPU workload (an integer hash over a
// 32 KiB buffer, n times; n <= 0 means DefaultBenchN) with the host's own
// probe, natively, and with a's probe, the way [Probe] runs it: through
// binfmt_misc, chrooted into an otherwise empty temporary directory, so
// the time is what programs in containers see, emulator start-up
// included. Both sides run benchRuns (3) times, alternately; each
// duration returned is the fastest run of its side (wall-clock time of the
// process). The caller reports slowdown = emulated / native.
//
// Both sides must print the same checksum: an emulator that computes a
// different one is an error. A run that fails is an error too, which
// carries the Reason and Fix that Probe would give; each run is bounded by
// opt.Timeout. For an architecture the host runs natively, both sides run
// natively and the slowdown is about 1.
func Bench(ctx context.Context, a binfmt.Arch, opt ProbeOptions, n int) (native, emulated time.Duration, err error) {
	if n <= 0 {
		n = DefaultBenchN
	}
	fail := func(format string, args ...any) (time.Duration, time.Duration, error) {
		return 0, 0, fmt.Errorf("bench %s: "+format, append([]any{a.Name}, args...)...)
	}
	hostBin, err := probeForGoarch(runtime.GOARCH)
	if err != nil {
		return fail("no native probe for %s: %w", runtime.GOARCH, err)
	}
	bin, err := probeProgram(a.Name)
	if err != nil {
		return fail("%w", err)
	}
	args := []string{"bench", strconv.Itoa(n)}
	var sum string
	for i := 0; i < benchRuns; i++ {
		for _, side := range []struct {
			emulated bool
			bin      []byte
			best     *time.Duration
		}{{false, hostBin, &native}, {true, bin, &emulated}} {
			run := runProbe(ctx, side.bin, args, nil, opt.timeout())
			if run.err != nil {
				r := Result{Arch: a.Name, Platform: a.Platform}
				classify(&r, a, opt, newTable(opt.Mount), run)
				what := "the emulated run"
				if !side.emulated {
					what = "the native run (" + runtime.GOARCH + ")"
				}
				fix := strings.Trim(r.Remedy.Describe(a.Name)+"; "+r.Fix, "; ")
				return fail("%s failed: %s (fix: %s)", what, r.Reason, orNone(fix))
			}
			got := firstLine(run.stdout)
			switch {
			case got == "":
				return fail("the probe printed no checksum")
			case sum == "":
				sum = got
			case got != sum && side.emulated:
				return fail("the emulated workload's checksum %q differs from the native %q: the emulator computes wrongly", got, sum)
			case got != sum:
				return fail("the native workload's checksum changed from %q to %q", sum, got)
			}
			if *side.best == 0 || run.elapsed < *side.best {
				*side.best = run.elapsed
			}
		}
	}
	return native, emulated, nil
}

func orNone(s string) string {
	if s == "" {
		return "none known"
	}
	return s
}
