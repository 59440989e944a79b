package host

import (
	"fmt"
	"strings"
	"time"

	"mabd/emulator"
)

// How the emulator of an architecture is chosen among its candidates
// (InstallOptions.Choice; the daemon's emulator key).
const (
	// ChoiceAuto proves every candidate (see [TryCandidates]) and takes
	// one that passes the workload probe, the fastest on the bench
	// workload. One candidate alone is taken without a trial.
	ChoiceAuto = "auto"
	// ChoiceFirst takes the first candidate found, in the order of the
	// emulator directories, without a trial.
	ChoiceFirst = "first"
)

// Choice is the emulator chosen for one architecture, and why.
type Choice struct {
	Arch string `json:"qemu_arch"`
	// Path is the emulator to register; "" when no candidate may be.
	Path    string          `json:"path"`
	Version string          `json:"version,omitempty"`
	ID      emulator.FileID `json:"id"`
	// Reason says why, naming each candidate and how it did:
	// "/opt/mabd/qemu-debian13/usr/bin/qemu-i386 10.0.13: passed the
	// workload probe (bench 4.1x); /usr/bin/qemu-i386-static 7.2.22:
	// crashed (SIGTRAP) in the workload probe".
	Reason string `json:"reason"`
	// Candidates is how many candidates it was chosen from.
	Candidates int `json:"candidates"`
	// Pinned: the configuration (or --emulator) named it.
	Pinned bool      `json:"pinned,omitempty"`
	At     time.Time `json:"at"`
}

// Choose picks the emulator for the architecture arch from its
// candidates (in the order they were found, a pinned one first: see
// emulator.FindAllCandidates), the trials of those that were tried
// (keyed by path; made of the candidate's current file) and how (see
// ChoiceAuto, ChoiceFirst). It decides only; it runs nothing.
//
//   - A pinned candidate is taken whatever its trial says; a pin that
//     may not be registered gives no emulator, with the pin's refusal as
//     the reason (the others are not taken in its place).
//   - Refused candidates are never taken.
//   - One usable candidate, or ChoiceFirst: the first usable one.
//   - ChoiceAuto with several: of those whose trial passed, the one with
//     the shortest bench time (shorter by more than 5%, the noise between
//     runs: a tie goes to the one found first; a passed one not benched
//     comes after the benched ones). When none passed, the first usable
//     one, and the reason says that none did. An architecture mabd has no
//     probe program for cannot be proved: the first usable one.
func Choose(arch string, cands []emulator.Candidate, trials map[string]Trial, how string) Choice {
	c := Choice{Arch: arch, Candidates: len(cands), At: time.Now().UTC()}
	var usable []emulator.Candidate
	for _, x := range cands {
		if x.Usable() {
			usable = append(usable, x)
		}
	}
	take := func(x emulator.Candidate, why string) Choice {
		c.Path, c.Version, c.ID = x.Path, x.Version, x.ID
		c.Reason = describe(x) + ": " + why + others(cands, x, trials)
		return c
	}
	switch {
	case len(cands) > 0 && cands[0].Source == emulator.SourcePin:
		c.Pinned = true
		if !cands[0].Usable() {
			c.Reason = cands[0].Refused.Error()
			return c
		}
		return take(cands[0], "pinned")
	case len(usable) == 0:
		var why []string
		for _, x := range cands {
			why = append(why, x.Refused.Error())
		}
		c.Reason = strings.Join(why, "; ")
		return c
	case len(usable) == 1:
		return take(usable[0], "the only usable candidate")
	case how == ChoiceFirst:
		return take(usable[0], "the first found")
	case !emulator.HasProbe(arch):
		return take(usable[0], "the first found (mabd has no probe program to prove "+arch+" emulators with)")
	}
	best := -1
	for i, x := range usable {
		t, ok := trials[x.Path]
		if !ok || !t.Passed() {
			continue
		}
		if best < 0 || faster(t, trials[usable[best].Path]) {
			best = i
		}
	}
	if best < 0 {
		return take(usable[0], "no candidate passed the workload probe, so the first found ("+verdict(usable[0], trials)+")")
	}
	return take(usable[best], verdict(usable[best], trials))
}

// benchNoise is how much shorter a bench time must be to count as
// faster: less is within what the same emulator varies by between runs.
const benchNoise = 0.05

// faster reports whether trial a was faster on the bench than b, by more
// than benchNoise: a time beats none.
func faster(a, b Trial) bool {
	switch {
	case a.BenchMS <= 0:
		return false
	case b.BenchMS <= 0:
		return true
	}
	return a.BenchMS < b.BenchMS*(1-benchNoise)
}

// describe names a candidate: its path and version.
func describe(x emulator.Candidate) string {
	if x.Version == "" {
		return x.Path
	}
	return x.Path + " " + x.Version
}

// verdict says how x's trial went.
func verdict(x emulator.Candidate, trials map[string]Trial) string {
	if t, ok := trials[x.Path]; ok {
		return t.Verdict()
	}
	return "not tried"
}

// others describes the candidates other than the chosen one, each
// after "; ".
func others(cands []emulator.Candidate, chosen emulator.Candidate, trials map[string]Trial) string {
	var b strings.Builder
	for _, x := range cands {
		if x.Path == chosen.Path {
			continue
		}
		what := verdict(x, trials)
		switch {
		case !x.Usable():
			what = "refused: " + x.Refused.Error()
		case chosen.Source == emulator.SourcePin:
			what = "not taken (another is pinned)"
		}
		fmt.Fprintf(&b, "; %s: %s", describe(x), what)
	}
	return b.String()
}
