package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
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
	// Rootfs maps arguments of --rootfs: "ARCH=DIR".
	Rootfs []string
	// Bench measures the emulation slowdown of each architecture.
	Bench bool
	// Timeout bounds each probe; 0 means the emulator package's default.
	Timeout time.Duration
}

// VerifyResult is one architecture's line of `mabd verify --json`.
type VerifyResult struct {
	Platform   string  `json:"platform"`
	QEMUArch   string  `json:"qemu_arch"`
	State      string  `json:"state"` // ok, native or failed
	Reason     string  `json:"reason"`
	Fix        string  `json:"fix"`
	Machine    string  `json:"machine"`
	DurationMS float64 `json:"duration_ms"`
	Slowdown   float64 `json:"slowdown,omitempty"`
	// Rootfs and Shell: the foreign root file system of --rootfs and what
	// its sh printed.
	Rootfs string `json:"rootfs,omitempty"`
	Shell  string `json:"shell,omitempty"`
}

// Verification is the outcome of `mabd verify`.
type Verification struct {
	At      time.Time      `json:"at"`
	Mount   string         `json:"mount"`
	Results []VerifyResult `json:"results"`
}

// OK reports whether every result is ok or native.
func (v *Verification) OK() bool {
	for _, r := range v.Results {
		if r.State == "failed" {
			return false
		}
	}
	return true
}

// Verify proves foreign execution: the probe of each architecture runs
// in an empty chroot (so only an F handler can run it) and must report the
// right machine; a --rootfs's real foreign sh must say its machine and ok.
// Probes run in parallel, each with a deadline.
func (h Host) Verify(ctx context.Context, opt VerifyOptions) (*Verification, error) {
	rootfs := map[string]string{}
	var explicit []string
	for _, r := range opt.Rootfs {
		name, dir, ok := strings.Cut(r, "=")
		if !ok || name == "" || dir == "" {
			return nil, inputErr("--rootfs %q: give ARCH=DIR, e.g. arm64=/srv/rootfs/arm64", r)
		}
		a, err := emulator.LookupArch(name)
		if err != nil {
			return nil, &InputError{Err: fmt.Errorf("--rootfs %s: %w", r, err)}
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, inputErr("--rootfs %s: %s is not a directory", r, dir)
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
	popt := emulator.ProbeOptions{Mount: h.Mount, Timeout: opt.Timeout}
	v := &Verification{At: time.Now().UTC(), Mount: h.Mount.Path("")}
	for i, r := range emulator.ProbeAll(ctx, arches, popt) {
		a := arches[i]
		row := VerifyResult{Platform: a.Platform, QEMUArch: a.Name, State: r.State, Reason: r.Reason, Fix: r.Fix,
			Machine: r.Machine, DurationMS: float64(r.Duration.Microseconds()) / 1000}
		if dir, ok := rootfs[a.Name]; ok {
			row.Rootfs = dir
			out, err := emulator.Shell(ctx, a, dir, opt.Timeout)
			row.Shell = strings.TrimSpace(out)
			if err != nil && row.State != "failed" {
				row.State, row.Reason, row.Fix = "failed", err.Error(), "check that "+dir+" is a root file system for "+a.Name+" with /bin/sh"
			}
		}
		if opt.Bench && row.State == "ok" {
			native, emulated, err := emulator.Bench(ctx, a, popt, 0)
			if err == nil && native > 0 {
				row.Slowdown = float64(emulated) / float64(native)
			}
		}
		v.Results = append(v.Results, row)
	}
	if h.StateDir != "-" {
		if err := saveVerification(h.StateDir, v); err != nil {
			return v, err
		}
	}
	return v, nil
}

// verifyArches resolves the names to probe. With none, every
// architecture with a probe whose emulator is installed, and the native
// ones.
func (h Host) verifyArches(names []string) ([]binfmt.Arch, error) {
	if len(names) > 0 && !(len(names) == 1 && names[0] == "all") {
		arches, err := emulator.LookupArches(names)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		for _, a := range arches {
			if !emulator.HasProbe(a.Name) {
				return nil, inputErr("no probe for %s: mabd verifies the architectures Go can build for (amd64, arm64, arm, 386, ppc64le, ppc64, s390x, riscv64, mips64le, mips64, mips, mipsle, loong64); use --rootfs %s=DIR to check it with a real shell", a.Name, a.Name)
			}
		}
		return arches, nil
	}
	var out []binfmt.Arch
	for _, a := range binfmt.Arches() {
		if !emulator.HasProbe(a.Name) {
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
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	return os.Rename(tmp, p)
}

// LastVerification reads what the last `mabd verify` saved in dir; nil
// when there is none.
func LastVerification(dir string) (*Verification, error) {
	p := filepath.Join(stateDir(dir), verifyFile)
	b, err := os.ReadFile(p)
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
