package host

// Trials: each candidate emulator proved in a private binfmt_misc
// instance of its own, before any table that matters holds it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/internal/userns"
)

// envTrial marks the re-executed binary as a trial; its value is the
// JSON trialRequest. MaybeRunTrial reads and removes it.
const envTrial = "MABD_TRIAL"

// trialArgs are the re-executed binary's arguments. A binary that does
// not call MaybeRunTrial runs with them as itself: mabd refuses the
// unknown flag, a test binary runs no test, and the trial reports that.
var trialArgs = []string{"mabd-trial", "-test.run=^$"}

// maxTrialReport bounds what a trial's process may write.
const maxTrialReport = 1 << 20

// Trial is what one candidate emulator did when mabd proved it: its
// architecture's probe, the workload probe and the bench workload, run
// in a private binfmt_misc instance (a new user and mount namespace)
// where it alone was registered, with F (and P when it honours it), so
// that the host's table is never touched before the choice is made.
type Trial struct {
	Arch    string          `json:"qemu_arch"`
	Path    string          `json:"path"`
	Version string          `json:"version,omitempty"`
	ID      emulator.FileID `json:"id"`
	// Probes is emulator.ProbesID of the programs that proved it.
	Probes string    `json:"probes"`
	At     time.Time `json:"at"`
	// Probe and Workload are the results of the probe and the workload
	// probe (see emulator.Workload); nil when the trial did not run.
	Probe    *emulator.Result `json:"probe,omitempty"`
	Workload *emulator.Result `json:"workload,omitempty"`
	// BenchMS is the emulated time of the bench workload (the fastest of
	// its runs, see emulator.Bench) and Slowdown that over the native
	// time; 0 when it was not measured (a probe failed).
	BenchMS  float64 `json:"bench_ms,omitempty"`
	Slowdown float64 `json:"slowdown,omitempty"`
	// Error says why the trial could not run (no private namespace here,
	// the process died); the candidate is then neither proved nor
	// disproved.
	Error string `json:"error,omitempty"`
}

// Passed reports whether the candidate ran the probe and the workload
// probe right.
func (t Trial) Passed() bool {
	return t.Error == "" && t.Probe != nil && t.Probe.State == emulator.StateOK && t.Workload != nil && t.Workload.State == emulator.StateOK
}

// Verdict says in a few words how the trial went, the workload probe's
// failure before the probe's: "passed the workload probe (bench 4.2x)",
// "crashed (SIGTRAP) in the workload probe", "failed the probe: wrong
// machine", "not tried: …".
func (t Trial) Verdict() string {
	switch {
	case t.Error != "":
		return "not tried: " + t.Error
	case t.Workload != nil && t.Workload.State == emulator.StateFailed:
		if strings.HasPrefix(t.Workload.Reason, emulator.ReasonCrashed) {
			return shortReason(t.Workload.Reason) + " in the workload probe"
		}
		return "failed the workload probe: " + shortReason(t.Workload.Reason)
	case t.Probe != nil && t.Probe.State == emulator.StateFailed:
		return "failed the probe: " + shortReason(t.Probe.Reason)
	case t.Passed() && t.Slowdown > 0:
		return fmt.Sprintf("passed the workload probe (bench %.1fx)", t.Slowdown)
	case t.Passed():
		return "passed the workload probe"
	}
	return "not tried"
}

// Reason is the failure of the trial in full: the workload probe's or
// the probe's reason (the workload's first: it says more), or why it did
// not run; "" when it passed.
func (t Trial) Reason() string {
	switch {
	case t.Error != "":
		return t.Error
	case t.Workload != nil && t.Workload.State == emulator.StateFailed:
		return "workload probe: " + t.Workload.Reason
	case t.Probe != nil && t.Probe.State == emulator.StateFailed:
		return "probe: " + t.Probe.Reason
	}
	return ""
}

var killedBy = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`killed by (SIG[A-Z0-9]+)`) })

// shortReason shortens a probe's reason to its kind: "crashed
// (SIGTRAP)", "crashed (its Go runtime: \"fatal: bad g in signal
// handler\")", "wrong output".
func shortReason(reason string) string {
	if rest, ok := strings.CutPrefix(reason, emulator.ReasonCrashed); ok {
		if m := killedBy().FindStringSubmatch(rest); m != nil {
			return "crashed (" + m[1] + ")"
		}
		if _, quote, ok := strings.Cut(rest, `): "`); ok {
			return `crashed (its Go runtime: "` + quote + ")"
		}
		return "crashed"
	}
	kind, _, _ := strings.Cut(reason, ":")
	return kind
}

// TrialOptions bound the runs of a trial.
type TrialOptions struct {
	// ProbeTimeout bounds each run of the probe and of the bench
	// workload; 0 means emulator.DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// WorkloadTimeout bounds the workload probe; 0 means
	// emulator.DefaultWorkloadTimeout.
	WorkloadTimeout time.Duration
}

// trialRequest is what the trial's process is told.
type trialRequest struct {
	Arch            string        `json:"qemu_arch"`
	ProbeTimeout    time.Duration `json:"probe_timeout"`
	WorkloadTimeout time.Duration `json:"workload_timeout"`
}

// trialReport is what it answers on its standard output.
type trialReport struct {
	Probe    emulator.Result `json:"probe"`
	Workload emulator.Result `json:"workload"`
	BenchMS  float64         `json:"bench_ms,omitempty"`
	Slowdown float64         `json:"slowdown,omitempty"`
}

// MaybeRunTrial turns this process into a trial when [TryCandidates]
// started it so — it proves the one handler of its private binfmt_misc
// instance, reports on its standard output and exits — and otherwise
// returns at once. A binary whose processes call TryCandidates (or
// [Host.Plan], which does) must call it first thing: from an init
// function of the main package, or of a _test.go file of a test binary.
// It calls [userns.MaybeRunChild] first, which sets the namespace up.
func MaybeRunTrial() {
	userns.MaybeRunChild()
	raw, ok := os.LookupEnv(envTrial)
	if !ok {
		return
	}
	os.Unsetenv(envTrial)
	os.Exit(runTrial(raw))
}

// runTrial is the trial's process, in the new namespaces: it runs the
// probe, the workload probe and, when both pass, the bench workload
// through the private instance on /proc/sys/fs/binfmt_misc, and writes
// the results as JSON.
func runTrial(raw string) int {
	var req trialRequest
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		fmt.Fprintf(os.Stderr, "trial: %s: %v\n", envTrial, err)
		return 125
	}
	a, ok := binfmt.ArchByName(req.Arch)
	if !ok {
		fmt.Fprintf(os.Stderr, "trial: unknown architecture %q\n", req.Arch)
		return 125
	}
	opt := emulator.ProbeOptions{Mount: binfmt.Mount{}, Timeout: req.ProbeTimeout, WorkloadTimeout: req.WorkloadTimeout}
	ctx := context.Background()
	var rep trialReport
	rep.Probe = emulator.Probe(ctx, a, opt)
	rep.Workload = emulator.Workload(ctx, a, opt)
	if rep.Probe.State == emulator.StateOK && rep.Workload.State == emulator.StateOK {
		if native, emulated, err := emulator.Bench(ctx, a, opt, 0); err == nil && native > 0 {
			rep.BenchMS = float64(emulated.Microseconds()) / 1000
			rep.Slowdown = float64(emulated) / float64(native)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "trial:", err)
		return 125
	}
	return 0
}

// TryCandidates proves each candidate (usable ones: see
// emulator.Candidate.Usable) in a private binfmt_misc instance of its
// own, several at a time (at most the number of CPUs), and returns the
// trials in the order of cands. The host's binfmt_misc table is neither
// read nor changed. Private instances need Linux 6.7 and user
// namespaces; where they are not available each trial says so in its
// Error. ctx cancels them all.
func TryCandidates(ctx context.Context, cands []emulator.Candidate, opt TrialOptions) []Trial {
	out := make([]Trial, len(cands))
	sem := make(chan struct{}, max(runtime.NumCPU(), 1))
	var wg sync.WaitGroup
	for i, c := range cands {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = tryOne(ctx, c, opt)
		})
	}
	wg.Wait()
	return out
}

// tryOne runs the trial of one candidate.
func tryOne(ctx context.Context, c emulator.Candidate, opt TrialOptions) Trial {
	t := Trial{Arch: c.Arch, Path: c.Path, Version: c.Version, ID: c.ID, Probes: emulator.ProbesID(), At: time.Now().UTC()}
	a, ok := binfmt.ArchByName(c.Arch)
	switch {
	case !ok:
		t.Error = fmt.Sprintf("unknown architecture %q", c.Arch)
		return t
	case !c.Usable():
		t.Error = c.Refused.Error()
		return t
	case !emulator.HasProbe(a.Name):
		t.Error = "mabd has no probe program for " + a.Name
		return t
	}
	flags := binfmt.FixBinary
	if emulator.PreservesArgv0(c.Version) {
		flags |= binfmt.PreserveArgv0
	}
	probe, workload := opt.ProbeTimeout, opt.WorkloadTimeout
	if probe <= 0 {
		probe = emulator.DefaultProbeTimeout
	}
	if workload <= 0 {
		workload = emulator.DefaultWorkloadTimeout
	}
	raw, err := json.Marshal(trialRequest{Arch: a.Name, ProbeTimeout: probe, WorkloadTimeout: workload})
	if err != nil {
		t.Error = err.Error()
		return t
	}
	// The probe, the workload, and the bench's 3 native and 3 emulated
	// runs, each at most its timeout.
	ctx, cancel := context.WithTimeout(ctx, 7*probe+workload+30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = trialArgs
	cmd.Env = append(os.Environ(), envTrial+"="+string(raw))
	cmd.Stdout = &capped{b: &stdout}
	cmd.Stderr = &capped{b: &stderr}
	cmd.WaitDelay = time.Second
	if err := userns.Start(cmd, userns.Spec{Handlers: []binfmt.Spec{a.Spec(c.Path, flags)}}); err != nil {
		t.Error = "could not try it in a private binfmt_misc instance: " + err.Error()
		return t
	}
	err = cmd.Wait()
	var rep trialReport
	switch {
	case ctx.Err() != nil:
		t.Error = fmt.Sprintf("the trial did not end in time: %v", ctx.Err())
		return t
	case err != nil:
		t.Error = fmt.Sprintf("the trial failed: %v%s", err, quoted(stderr.String()))
		return t
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Error = fmt.Sprintf("the trial ended without a report (does this program call host.MaybeRunTrial first thing?): %v%s", err, quoted(stderr.String()))
		return t
	}
	t.Probe, t.Workload, t.BenchMS, t.Slowdown = &rep.Probe, &rep.Workload, rep.BenchMS, rep.Slowdown
	return t
}

// quoted is `: "the first line of s"`, or "".
func quoted(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if line == "" {
		return ""
	}
	if len(line) > 200 {
		line = strings.ToValidUTF8(line[:200], "") + "..."
	}
	return fmt.Sprintf(": %q", line)
}

// capped writes to b up to maxTrialReport bytes and drops the rest.
type capped struct{ b *bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxTrialReport - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
