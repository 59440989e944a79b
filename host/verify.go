package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/internal/safefile"
)

// DefaultStateDir holds what mabd remembers between runs, such as the
// last verification.
const DefaultStateDir = "/var/lib/mabd"

const verifyFile = "verify.json"

// VerifyOptions are the arguments of `mabd verify`.
type VerifyOptions struct {
	// Arches are names as the user typed them; none means every
	// architecture with a probe whose emulator is installed, and the
	// host's own.
	Arches []string
	// Rootfs maps architectures (names as the user typed them) to
	// foreign root file systems whose sh must run too.
	Rootfs map[string]string
	// Bench measures the emulation slowdown of each architecture.
	Bench bool
	// Deep also runs the workload probe (see emulator.Workload) of each
	// architecture whose probe passed: threads and futexes, signals,
	// fork and exec, mmap and brk growth and a few seconds of CPU.
	Deep bool
	// Timeout bounds each probe; 0 means the emulator package's default.
	Timeout time.Duration
}

// VerifyResult is one architecture's line of `mabd verify --json`.
type VerifyResult struct {
	Platform string `json:"platform"`
	QEMUArch string `json:"qemu_arch"`
	State    string `json:"state"` // ok, native or failed
	Reason   string `json:"reason"`
	Fix      string `json:"fix"`
	// Remedy is what mabd can do about a failure (register or replace
	// the handler), for the CLI and the daemon to word.
	Remedy     emulator.Remedy `json:"remedy,omitempty"`
	Machine    string          `json:"machine"`
	DurationMS float64         `json:"duration_ms"`
	Slowdown   float64         `json:"slowdown,omitempty"`
	// Workload is the workload probe's result (Deep), nil without it. A
	// failure there makes the row failed with its Reason and Fix.
	Workload *emulator.Result `json:"workload,omitempty"`
	// Rootfs and Shell: the foreign root file system of --rootfs and what
	// its sh printed.
	Rootfs string `json:"rootfs,omitempty"`
	Shell  string `json:"shell,omitempty"`
	// Handler is the entry qemu-<arch> as it was when the probe ran (its
	// register line, "disabled " first when it was disabled), "" when none
	// was registered. A later status uses the result only while the entry
	// is still the same: after it changes, the result is stale. "none": no
	// entry was registered; "": not recorded (an older mabd).
	Handler string `json:"handler,omitempty"`
}

// handlerKey is what VerifyResult.Handler records of an entry: nil (no
// entry) gives "".
func handlerKey(e *binfmt.Entry) string {
	switch {
	case e == nil:
		return "none"
	case e.Enabled:
		return e.Line()
	}
	return "disabled " + e.Line()
}

// Verification is the outcome of `mabd verify`.
type Verification struct {
	At      time.Time      `json:"at"`
	Mount   string         `json:"mount"`
	Results []VerifyResult `json:"results"`
	// Warnings are what went wrong besides the probes, such as the
	// result not being saved. They are not saved.
	Warnings []string `json:"warnings,omitempty"`
}

// OK reports whether every result is ok or native.
func (v *Verification) OK() bool {
	for _, r := range v.Results {
		if r.State == emulator.StateFailed {
			return false
		}
	}
	return true
}

// Failed returns the results that failed.
func (v *Verification) Failed() []VerifyResult {
	var out []VerifyResult
	if v == nil {
		return out
	}
	for _, r := range v.Results {
		if r.State == emulator.StateFailed {
			out = append(out, r)
		}
	}
	return out
}

// current returns v's result for a if it still describes the handler:
// made on this mount, with qemu-<arch> the entry e (nil: none) it was. A
// result saved without the entry (by an older mabd) counts as current.
func (v *Verification) current(a binfmt.Arch, e *binfmt.Entry) *VerifyResult {
	if v == nil {
		return nil
	}
	for i := range v.Results {
		r := &v.Results[i]
		if r.QEMUArch != a.Name {
			continue
		}
		if r.Handler == handlerKey(e) || (r.Handler == "" && e != nil) {
			return r
		}
		return nil
	}
	return nil
}

// Verify proves foreign execution: the probe of each architecture runs
// in an empty chroot (so only an F handler can run it) and must report the
// right machine; a --rootfs's real foreign sh must say its machine and ok.
// Probes run in parallel, each with a deadline.
func (h Host) Verify(ctx context.Context, opt VerifyOptions) (*Verification, error) {
	rootfs := map[string]string{}
	var explicit []string
	for _, name := range slices.Sorted(maps.Keys(opt.Rootfs)) {
		dir := opt.Rootfs[name]
		a, err := binfmt.Lookup(name)
		if err != nil {
			return nil, &InputError{Err: fmt.Errorf("rootfs %s: %w", name, err)}
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, inputErr("rootfs %s: %s is not a directory", name, dir)
		}
		rootfs[a.Name] = dir
		explicit = append(explicit, a.Name)
	}
	arches, err := h.verifyArches(opt.Arches)
	if err != nil {
		return nil, err
	}
	for _, name := range explicit {
		if !slices.ContainsFunc(arches, func(a binfmt.Arch) bool { return a.Name == name }) {
			a, _ := binfmt.ArchByName(name)
			arches = append(arches, a)
		}
	}
	if opt.Timeout < 0 {
		return nil, inputErr("timeout %s: give a duration above 0", opt.Timeout)
	}
	if err := canChroot(); err != nil {
		return nil, err
	}
	popt := emulator.ProbeOptions{Mount: h.Mount, Timeout: opt.Timeout}
	v := &Verification{At: time.Now().UTC(), Mount: h.Mount.Path("")}
	before := h.handlers(arches)
	probes := emulator.ProbeAll(ctx, arches, popt)
	workloads := make([]*emulator.Result, len(arches))
	if opt.Deep {
		var deep []binfmt.Arch
		var at []int
		for i, r := range probes {
			// The workload probe is a Go program: the architectures Go
			// builds for.
			if r.State != emulator.StateFailed && emulator.HasProbe(arches[i].Name) {
				deep, at = append(deep, arches[i]), append(at, i)
			}
		}
		for j, w := range emulator.WorkloadAll(ctx, deep, popt) {
			workloads[at[j]] = &w
		}
	}
	for i, r := range probes {
		a := arches[i]
		row := VerifyResult{Platform: a.Platform, QEMUArch: a.Name, State: r.State, Reason: r.Reason, Fix: r.Fix, Remedy: r.Remedy,
			Machine: r.Machine, DurationMS: float64(r.Duration.Microseconds()) / 1000, Handler: before[i], Workload: workloads[i]}
		if w := workloads[i]; w != nil && w.State == emulator.StateFailed {
			row.State, row.Reason, row.Fix, row.Remedy = w.State, w.Reason, w.Fix, w.Remedy
		}
		if dir, ok := rootfs[a.Name]; ok {
			row.Rootfs = dir
			out, err := emulator.Shell(ctx, a, dir, opt.Timeout)
			row.Shell = strings.TrimSpace(out)
			if err != nil && row.State != emulator.StateFailed {
				row.State, row.Reason, row.Fix = emulator.StateFailed, err.Error(), "check that "+dir+" is a root file system for "+a.Name+" with /bin/sh"
			}
		}
		if opt.Bench && row.State == "ok" && emulator.HasProbe(a.Name) {
			native, emulated, err := emulator.Bench(ctx, a, popt, 0)
			if err == nil && native > 0 {
				row.Slowdown = float64(emulated) / float64(native)
			}
		}
		v.Results = append(v.Results, row)
	}
	// A handler that changed while it was probed makes its result
	// worthless: mark it stale at once.
	for i, k := range h.handlers(arches) {
		if k != before[i] {
			v.Results[i].Handler = "changed during verification"
		}
	}
	if h.StateDir != "-" {
		if err := saveVerification(h.StateDir, v); err != nil {
			v.Warnings = append(v.Warnings, "the result was not saved, so `mabd status` will not show it: "+err.Error())
		}
	}
	return v, nil
}

// handlers returns the handlerKey of each architecture's entry.
func (h Host) handlers(arches []binfmt.Arch) []string {
	out := make([]string, len(arches))
	for i, a := range arches {
		var e *binfmt.Entry
		if x, err := h.Mount.Entry(a.HandlerName()); err == nil {
			e = &x
		}
		out[i] = handlerKey(e)
	}
	return out
}

// NeedRootError says that verification cannot run: the probes chroot
// into an empty directory, which needs CAP_SYS_CHROOT.
type NeedRootError struct{}

func (*NeedRootError) Error() string {
	return "could not check: the probes run in an empty chroot, which needs root (CAP_SYS_CHROOT)"
}

// canChroot returns a *NeedRootError unless this process has
// CAP_SYS_CHROOT in its effective set.
func canChroot() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // cannot tell: let the probes say
	}
	if data[0].Effective&(1<<unix.CAP_SYS_CHROOT) == 0 {
		return &NeedRootError{}
	}
	return nil
}

// verifyArches resolves the names to probe. With none, every
// architecture with a probe whose emulator is installed, and the native
// ones.
func (h Host) verifyArches(names []string) ([]binfmt.Arch, error) {
	if len(names) > 0 && !(len(names) == 1 && names[0] == "all") {
		arches, err := binfmt.LookupAll(names)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		for _, a := range arches {
			if !emulator.CanProbe(a.Name) {
				return nil, inputErr("no probe for %s: mabd has probes for %s; use --rootfs %s=DIR to check it with a real shell", a.Name, strings.Join(emulator.ProbeableArches(), ", "), a.Name)
			}
		}
		return arches, nil
	}
	var out []binfmt.Arch
	for a := range binfmt.All() {
		if !emulator.CanProbe(a.Name) {
			continue
		}
		if h.isNative(a.Name) {
			out = append(out, a)
			continue
		}
		if _, err := emulator.Find(a.Name, h.EmulatorDirs); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

func stateDir(d string) string {
	if d == "" {
		return DefaultStateDir
	}
	return d
}

func saveVerification(dir string, v *Verification) error {
	dir = stateDir(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, verifyFile)
	if err := safefile.Write(p, b, 0o644); err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	return nil
}

// LastVerification reads what the last `mabd verify` saved in dir; nil
// when there is none.
func LastVerification(dir string) (*Verification, error) {
	p := filepath.Join(stateDir(dir), verifyFile)
	b, err := safefile.Read(p, maxStateFile, safefile.Options{})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v Verification
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &v, nil
}

// maxStateFile bounds what mabd reads back from its state directory.
const maxStateFile = 1 << 20

// Stale reports whether v no longer describes one of the handlers in
// specs: the entry registered under its name now is not the one v probed
// (another tool registered its own since, or the entry changed), so the
// handler needs verifying again.
func (h Host) Stale(v *Verification, specs []binfmt.Spec) bool {
	for _, s := range specs {
		a, ok := binfmt.ArchByName(s.Name)
		if !ok || !emulator.CanProbe(a.Name) {
			continue
		}
		var e *binfmt.Entry
		if x, err := h.Mount.Entry(s.Name); err == nil {
			e = &x
		}
		if v.current(a, e) == nil {
			return true
		}
	}
	return false
}
