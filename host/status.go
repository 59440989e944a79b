package host

import (
	"context"
	"fmt"
	"strings"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
)

// Handler states in Status.
const (
	StateOK         = "ok"          // registered and enabled, mabd's or another tool's that serves it, nothing shadows it
	StateFailing    = "failing"     // registered, but its last verification failed
	StateMissing    = "missing"     // an emulator is installed but no handler is registered
	StateDisabled   = "disabled"    // registered but disabled
	StateConflict   = "conflict"    // another tool's entry under its name that does not serve it, or another entry for its files
	StateNoEmulator = "no-emulator" // no emulator installed, or the registered interpreter is gone
	StateNative     = "native"      // the host runs it without an emulator
)

// HandlerStatus is one architecture's line in Status.
type HandlerStatus struct {
	Name        string `json:"name"`
	QEMUArch    string `json:"qemu_arch"`
	Platform    string `json:"platform"`
	Interpreter string `json:"interpreter"`
	Flags       string `json:"flags"`
	Enabled     bool   `json:"enabled"`
	State       string `json:"state"`
	Detail      string `json:"detail"`
	// Static is whether the interpreter is statically linked (false when
	// it does not exist).
	Static bool `json:"static"`
	// Registered is whether an entry named Name exists.
	Registered bool `json:"registered"`
	// Owner says who registered the entry: "mabd", "systemd-binfmt
	// (/usr/lib/binfmt.d/qemu-aarch64.conf)", "update-binfmts (…)" or
	// "another tool"; "" when none is registered.
	Owner string `json:"owner,omitempty"`
	// Verified is the last verification's result for it, if any.
	Verified *LastCheck `json:"verified,omitempty"`
	// Choice is the last choice of its emulator among several
	// candidates (or a pin), with why; nil when there was none.
	Choice *Choice `json:"choice,omitempty"`
}

// CandidateStatus is one candidate emulator in Status: where it came
// from, its version, whether it may be registered, whether the entry
// runs it now, and its last trial.
type CandidateStatus struct {
	QEMUArch string `json:"qemu_arch"`
	Path     string `json:"path"`
	// Version is "" when it is not known yet (status does not run
	// emulators: install and the daemon ask them).
	Version string `json:"version,omitempty"`
	// Source is the emulator directory it was found in, or "pin".
	Source string `json:"source"`
	// Refused says why it may not be registered; "" when it may.
	Refused string `json:"refused,omitempty"`
	// Registered: the entry qemu-<arch> runs it now.
	Registered bool `json:"registered"`
	// Last is its last trial (see TryCandidates), nil when it was never
	// tried as the file it is now.
	Last *Trial `json:"last,omitempty"`
	// Result is the last trial in a few words ("passed the workload
	// probe (bench 4.1x)", "crashed (SIGTRAP) in the workload probe"),
	// "not tried" without one.
	Result string `json:"result"`
}

// LastCheck is an architecture's result in the last verification.
type LastCheck struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	Fix    string `json:"fix,omitempty"`
	// Remedy is what mabd can do about the failure, for the caller to
	// word.
	Remedy emulator.Remedy `json:"remedy,omitempty"`
	At     time.Time       `json:"at"`
	// Stale: the handler changed since, so the result no longer says
	// anything about it (and does not count).
	Stale bool `json:"stale,omitempty"`
}

// StatusOptions narrow and feed [Host.Status].
type StatusOptions struct {
	// Only are the architectures health counts (names as the user typed
	// them); none means every one.
	Only []string
	// Verification is the last verification; nil means the one saved in
	// the state directory.
	Verification *Verification
	// Candidates are the architectures (names as the user typed them,
	// or "all") whose candidate emulators Status lists; none lists none.
	Candidates []string
	// Emulators are the pinned emulators, as InstallOptions.Emulators.
	Emulators map[string]string
}

// Status is the health of binfmt_misc on the host, per architecture of
// the table; `mabd status --json` prints it.
type Status struct {
	// Enabled is the facility's state (false when not mounted).
	Enabled bool `json:"enabled"`
	// Mount is the binfmt_misc directory inspected.
	Mount string `json:"mount"`
	// Mounted is false when binfmt_misc is not mounted there.
	Mounted bool `json:"mounted"`
	// Supported lists the OCI platforms this host can run: its own and
	// those with a handler in state ok.
	Supported []string        `json:"supported"`
	Handlers  []HandlerStatus `json:"handlers"`
	// Candidates are the candidate emulators of the architectures
	// StatusOptions.Candidates names, by architecture in the table's
	// order, each architecture's in the order they are preferred.
	Candidates []CandidateStatus `json:"candidates,omitempty"`
	// Health is "healthy" or "degraded".
	Health string `json:"health"`
	// Problems says, one line each, what makes it degraded.
	Problems []string `json:"problems,omitempty"`
	// Source is "host": inspected directly.
	Source string `json:"source"`
}

// Healthy reports whether Health is "healthy".
func (s *Status) Healthy() bool { return s.Health == "healthy" }

// needsHandlers reports whether what a status is about (focus; empty:
// every architecture) needs binfmt_misc: something other than what the
// kernel runs itself. Where nothing does, an unmounted binfmt_misc is no
// problem (a daemon that only builds leaves it unmounted).
func needsHandlers(focus map[string]bool, isNative func(string) bool) bool {
	if len(focus) == 0 {
		return true
	}
	for n := range focus {
		if !isNative(n) {
			return true
		}
	}
	return false
}

// Status inspects the mount, the emulators and the table. When
// opt.Only is non-empty, health counts just those architectures; every
// architecture is listed either way. An entry of another tool that serves
// its architecture (see [Host.Judge]) is ok; one that does not is a
// conflict. A handler whose last verification failed, made through the
// entry registered now, is failing: not supported, and the host degraded.
// An unreadable mount is an error (the CLI exits 2); a missing mount is a
// degraded status, unless health counts only architectures the kernel
// runs itself.
func (h Host) Status(ctx context.Context, opt StatusOptions) (*Status, error) {
	focus := map[string]bool{}
	for _, n := range opt.Only {
		a, err := binfmt.Lookup(n)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		focus[a.Name] = true
	}
	st := &Status{Mount: h.Mount.Path(""), Source: "host", Health: "healthy"}
	var err error
	if st.Mounted, err = binfmt.Mounted(st.Mount); err != nil {
		return nil, fmt.Errorf("inspect %s: %w", st.Mount, err)
	}
	entries := map[string]binfmt.Entry{}
	var all []binfmt.Entry
	if st.Mounted {
		if st.Enabled, err = h.Mount.Enabled(); err != nil {
			return nil, err
		}
		if all, err = h.Mount.Entries(); err != nil {
			return nil, err
		}
		for _, e := range all {
			entries[e.Name] = e
		}
	} else if needsHandlers(focus, h.isNative) {
		st.Problems = append(st.Problems, fmt.Sprintf("binfmt_misc is not mounted at %s: run `mabd install` (it mounts it) or `mount -t binfmt_misc binfmt_misc %s`", st.Mount, st.Mount))
	}
	if st.Mounted && !st.Enabled {
		st.Problems = append(st.Problems, fmt.Sprintf("binfmt_misc is disabled: no handler runs; enable it with `echo 1 > %s`", h.Mount.Path("status")))
	}
	arches := binfmt.Arches()
	names := make([]string, len(arches))
	for i, a := range arches {
		names[i] = a.Name
	}
	found, _ := emulator.FindAll(ctx, names, h.EmulatorDirs, false)
	last := opt.Verification
	if last == nil {
		if v, err := LastVerification(h.StateDir); err == nil {
			last = v
		}
	}
	if last != nil && last.Mount != st.Mount {
		last = nil
	}
	remembered := h.loadCandidates()
	supported := map[string]bool{}
	for _, a := range arches {
		hs := h.handlerStatus(a, entries, all, found[a.Name], last)
		if c, ok := remembered.Choices[a.Name]; ok {
			hs.Choice = &c
		}
		if hs.State == StateNative || (hs.State == StateOK && st.Enabled) {
			if a.Platform != "" {
				supported[a.Platform] = true
			}
		}
		counted := len(focus) == 0 || focus[a.Name]
		bad := hs.State == StateMissing || hs.State == StateDisabled || hs.State == StateConflict || hs.State == StateFailing ||
			(hs.State == StateNoEmulator && (hs.Registered || focus[a.Name]))
		if counted && bad && (st.Mounted || hs.State == StateFailing) {
			st.Problems = append(st.Problems, hs.Name+": "+hs.State+": "+hs.Detail)
		}
		st.Handlers = append(st.Handlers, hs)
	}
	st.Supported = sortedKeys(supported)
	if len(opt.Candidates) > 0 {
		if st.Candidates, err = h.candidateStatuses(ctx, opt.Candidates, opt.Emulators, entries, remembered); err != nil {
			return nil, err
		}
	}
	if len(st.Problems) > 0 {
		st.Health = "degraded"
	}
	return st, nil
}

func (h Host) handlerStatus(a binfmt.Arch, entries map[string]binfmt.Entry, all []binfmt.Entry, emu *emulator.Emulator, last *Verification) HandlerStatus {
	hs := HandlerStatus{Name: a.HandlerName(), QEMUArch: a.Name, Platform: a.Platform}
	e, registered := entries[hs.Name]
	var cur *binfmt.Entry
	if registered {
		hs.Registered, hs.Interpreter, hs.Flags, hs.Enabled = true, e.Interpreter, e.Flags.String(), e.Enabled
		hs.Static, _ = emulator.IsStatic(e.Interpreter)
		cur = &e
	} else if emu != nil {
		hs.Interpreter, hs.Static = emu.Path, emu.Static
	}
	verified := last.current(a, cur)
	hs.Verified = lastCheck(last, a, verified)
	switch {
	case h.isNative(a.Name):
		hs.State, hs.Detail = StateNative, "runs without an emulator on this host"
		switch {
		case registered && IsOurs(e.Spec, a):
			hs.Detail = "runs natively, but mabd's " + hs.Name + " is registered (install --emulate-native) and sends these programs through " + e.Interpreter + "; `mabd uninstall " + a.Name + "` removes it"
		case registered:
			hs.Detail = "runs natively, but " + hs.Name + " is registered and sends these programs through " + e.Interpreter + "; remove it with `mabd uninstall --force " + a.Name + "`"
		}
		if verified != nil && verified.State == emulator.StateFailed {
			hs.State, hs.Detail = StateFailing, "the kernel does not run these programs natively: "+verified.Reason
		}
	case !registered && emu == nil:
		hs.State, hs.Detail = StateNoEmulator, fmt.Sprintf("no qemu-%s-static or qemu-%s in %v: install qemu-user-static", a.Name, a.Name, dirsOrDefault(h.EmulatorDirs))
	case !registered:
		hs.State, hs.Detail = StateMissing, fmt.Sprintf("%s is installed but not registered: run `mabd install %s`", emu.Path, a.Name)
	default:
		hs.State, hs.Detail, hs.Owner = h.entryState(a, e, all, last)
	}
	return hs
}

// lastCheck is what status shows of the last verification of a: the
// current result, or the stale one marked so.
func lastCheck(last *Verification, a binfmt.Arch, cur *VerifyResult) *LastCheck {
	if last == nil {
		return nil
	}
	r, stale := cur, false
	if r == nil {
		for i := range last.Results {
			if last.Results[i].QEMUArch == a.Name {
				r, stale = &last.Results[i], true
			}
		}
	}
	if r == nil {
		return nil
	}
	return &LastCheck{State: r.State, Reason: r.Reason, Fix: r.Fix, Remedy: r.Remedy, At: last.At, Stale: stale}
}

func (h Host) entryState(a binfmt.Arch, e binfmt.Entry, all []binfmt.Entry, last *Verification) (state, detail, owner string) {
	j := h.Judge(a, e, last)
	replace := "replace it with `mabd install --replace " + a.Name + "` (the daemon: conflict = \"repair\")"
	switch {
	case strings.HasPrefix(j.Reason, DefectMissing):
		how := "install qemu-user-static, then `mabd install --replace " + a.Name + "`"
		if e.Flags.Has(binfmt.FixBinary) {
			return StateNoEmulator, "interpreter " + e.Interpreter + " was deleted; the kernel still holds the file it opened (F) until the entry is replaced: " + how, j.Owner
		}
		return StateNoEmulator, "interpreter " + e.Interpreter + " does not exist, so every " + a.Name + " program fails: " + how, j.Owner
	case j.Reason == DefectDisabled:
		return StateDisabled, fmt.Sprintf("registered by %s but disabled: enable it with `echo 1 > %s` or `mabd install %s`", j.Owner, h.Mount.Path(e.Name), a.Name), j.Owner
	case strings.HasPrefix(j.Reason, DefectFailedVerify) && j.Ours:
		r := last.current(a, &e)
		return StateFailing, r.Reason + fixSuffix(r.Fix), j.Owner
	case !j.Serves:
		return StateConflict, j.Detail + "; " + replace, j.Owner
	}
	for _, o := range all {
		if o.Name != e.Name && o.Enabled && o.SameFiles(e.Spec) {
			return StateConflict, fmt.Sprintf("entry %s also selects %s programs (interpreter %s); the kernel uses the newer of the two: remove one", o.Name, a.Name, o.Interpreter), j.Owner
		}
	}
	if !j.Ours {
		return StateOK, j.Detail, j.Owner
	}
	if !e.Flags.Has(binfmt.FixBinary) {
		return StateOK, "works on the host, but without the F flag programs in chroots and containers cannot reach " + e.Interpreter + "; `mabd install --replace " + a.Name + "` adds it", j.Owner
	}
	return StateOK, "", j.Owner
}

// fixSuffix is " — fix: FIX", or "" without a fix.
func fixSuffix(fix string) string {
	if fix == "" {
		return ""
	}
	return " — fix: " + fix
}

func dirsOrDefault(d []string) []string {
	if len(d) == 0 {
		return emulator.DefaultDirs
	}
	return d
}

// candidateStatuses lists the candidates of the architectures names
// ("all": every one), without running any of them: versions come from
// the version cache, results from the remembered trials.
func (h Host) candidateStatuses(ctx context.Context, names []string, pins map[string]string, entries map[string]binfmt.Entry, remembered candidateState) ([]CandidateStatus, error) {
	var arches []string
	for a := range binfmt.All() {
		arches = append(arches, a.Name)
	}
	if !(len(names) == 1 && names[0] == "all") {
		as, err := binfmt.LookupAll(names)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		arches = arches[:0]
		for _, a := range as {
			arches = append(arches, a.Name)
		}
	}
	qpins, err := resolvePins(pins)
	if err != nil {
		return nil, err
	}
	versions, _ := h.versionCache()
	cands, _ := emulator.FindAllCandidates(ctx, arches, h.EmulatorDirs, qpins, versions.CachedOnly())
	var out []CandidateStatus
	for _, a := range arches {
		for _, c := range cands[a] {
			cs := CandidateStatus{QEMUArch: a, Path: c.Path, Version: c.Version, Source: c.Source, Result: "not tried"}
			if c.Refused != nil {
				cs.Refused = c.Refused.Error()
			}
			if e, ok := entries["qemu-"+a]; ok && e.Interpreter == c.Path {
				cs.Registered = true
			}
			if t, ok := remembered.Trials[c.Path]; ok && t.ID == c.ID {
				cs.Last, cs.Result = &t, t.Verdict()
				if cs.Version == "" {
					cs.Version = t.Version
				}
			}
			out = append(out, cs)
		}
	}
	return out, nil
}
