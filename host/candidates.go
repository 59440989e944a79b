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
	"sync"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/internal/safefile"
)

// candidatesFile, in the state directory, keeps the last trial of each
// candidate emulator and the last choice of each architecture.
const candidatesFile = "candidates.json"

// candidateState is the content of candidatesFile.
type candidateState struct {
	// Trials are keyed by the candidate's path.
	Trials map[string]Trial `json:"trials"`
	// Choices are keyed by QEMU architecture name.
	Choices map[string]Choice `json:"choices"`
}

// candidatesMu serialises the updates of candidatesFile in this process.
var candidatesMu sync.Mutex

// loadCandidates reads candidatesFile; what cannot be read counts as
// nothing remembered.
func (h Host) loadCandidates() candidateState {
	st := candidateState{Trials: map[string]Trial{}, Choices: map[string]Choice{}}
	if h.StateDir == "-" {
		return st
	}
	b, err := safefile.Read(filepath.Join(stateDir(h.StateDir), candidatesFile), maxStateFile, safefile.Options{NoFollow: true})
	if err != nil {
		return st
	}
	if json.Unmarshal(b, &st) != nil {
		return candidateState{Trials: map[string]Trial{}, Choices: map[string]Choice{}}
	}
	if st.Trials == nil {
		st.Trials = map[string]Trial{}
	}
	if st.Choices == nil {
		st.Choices = map[string]Choice{}
	}
	return st
}

// rememberCandidates adds trials and choices to candidatesFile (the
// choices among several candidates or of a pin; a choice of the only
// candidate forgets the architecture's); trials of files that are gone
// are dropped.
func (h Host) rememberCandidates(trials []Trial, choices map[string]Choice) error {
	if h.StateDir == "-" || len(trials)+len(choices) == 0 {
		return nil
	}
	candidatesMu.Lock()
	defer candidatesMu.Unlock()
	st := h.loadCandidates()
	// Most installs find one candidate per architecture: then nothing
	// changes, nothing is encoded and the file is left as it is.
	changed := len(trials) > 0
	for _, t := range trials {
		st.Trials[t.Path] = t
	}
	for a, c := range choices {
		old, had := st.Choices[a]
		switch {
		case c.Candidates > 1 || c.Pinned:
			changed = changed || !had || old != c
			st.Choices[a] = c
		case had:
			changed = true
			delete(st.Choices, a) // nothing to choose any more
		}
	}
	for p := range st.Trials {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			changed = true
			delete(st.Trials, p)
		}
	}
	if !changed {
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := stateDir(h.StateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save the candidates' trials: %w", err)
	}
	if err := safefile.Write(filepath.Join(dir, candidatesFile), b, 0o644); err != nil {
		return fmt.Errorf("save the candidates' trials: %w", err)
	}
	return nil
}

// current reports whether t is a trial of c as it is now, by the probe
// programs of this mabd, that ran.
func (t Trial) current(c emulator.Candidate) bool {
	return t.Error == "" && t.Path == c.Path && t.ID == c.ID && t.Probes == emulator.ProbesID()
}

// chooseOptions say how chooseEmulators chooses.
type chooseOptions struct {
	// Pins are the pinned emulators, by QEMU name.
	Pins map[string]string
	// How is ChoiceAuto or ChoiceFirst ("": auto).
	How string
	// Retry are the architectures (QEMU names) and the candidate paths
	// that are tried again rather than judged by their remembered trials.
	Retry map[string]bool
	// FixBinary: the handlers take F. Trials need it (the probes run in
	// an empty chroot), and a candidate that is not static is refused.
	FixBinary bool
	Trial     TrialOptions
}

// chooseEmulators finds the candidates of each architecture of names
// (QEMU names) and chooses one per architecture (see [Choose]): with
// several usable candidates (and ChoiceAuto) it tries those whose trial
// it does not remember (see [TryCandidates]), remembers the trials and
// the choices in the state directory, and returns the candidates, the
// choices and warnings. An architecture without candidates has no
// choice.
func (h Host) chooseEmulators(ctx context.Context, names []string, versions *emulator.VersionCache, o chooseOptions) (map[string][]emulator.Candidate, map[string]Choice, []string) {
	cands, err := emulator.FindAllCandidates(ctx, names, h.EmulatorDirs, o.Pins, versions)
	var warnings []string
	if err != nil {
		warnings = append(warnings, err.Error())
	}
	how := o.How
	if how == "" {
		how = ChoiceAuto
	}
	if !o.FixBinary && how == ChoiceAuto {
		how = ChoiceFirst // the probes need F: nothing can be proved
	}
	remembered := h.loadCandidates().Trials
	trials := map[string]Trial{}
	var toTry []emulator.Candidate
	for _, a := range names {
		cs := cands[a]
		usable := 0
		for i := range cs {
			if o.FixBinary && cs[i].Usable() && !cs[i].Static {
				cs[i].Refused = cs[i].CheckFixBinary()
			}
			if cs[i].Warning != nil {
				warnings = append(warnings, cs[i].Warning.Error())
			}
			if cs[i].Usable() {
				usable++
			}
		}
		if usable < 2 || how != ChoiceAuto || (len(cs) > 0 && cs[0].Source == emulator.SourcePin) || !emulator.HasProbe(a) {
			continue // nothing to choose, or nothing to prove it with
		}
		for _, c := range cs {
			if !c.Usable() {
				continue
			}
			if t, ok := remembered[c.Path]; ok && t.current(c) && !o.Retry[a] && !o.Retry[c.Path] {
				trials[c.Path] = t
				continue
			}
			toTry = append(toTry, c)
		}
	}
	tried := TryCandidates(ctx, toTry, o.Trial)
	for _, t := range tried {
		trials[t.Path] = t
	}
	choices := map[string]Choice{}
	for _, a := range names {
		if len(cands[a]) > 0 {
			choices[a] = Choose(a, cands[a], trials, how)
		}
	}
	if err := h.rememberCandidates(tried, choices); err != nil {
		warnings = append(warnings, err.Error())
	}
	return cands, choices, warnings
}

// resolvePins turns pins as the user named them (architecture names,
// platforms or aliases to paths) into pins by QEMU name.
func resolvePins(pins map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range slices.Sorted(maps.Keys(pins)) {
		a, err := binfmt.Lookup(n)
		if err != nil {
			return nil, &InputError{Err: fmt.Errorf("emulator pinned for %q: %w", n, err)}
		}
		if prev, ok := out[a.Name]; ok && prev != pins[n] {
			return nil, inputErr("two emulators pinned for %s: %s and %s", a.Name, prev, pins[n])
		}
		out[a.Name] = pins[n]
	}
	return out, nil
}
