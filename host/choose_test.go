package host

import (
	"errors"
	"testing"

	"mabd/emulator"
)

func TestChoose(t *testing.T) {
	cand := func(path, version string) emulator.Candidate {
		return emulator.Candidate{Emulator: emulator.Emulator{Arch: "i386", Path: path, Static: true, Version: version, Target: "i386"}, Source: "/dir"}
	}
	old, newer, third := cand("/usr/bin/qemu-i386-static", "7.2.22"), cand("/opt/q/qemu-i386", "10.0.13"), cand("/usr/local/bin/qemu-i386", "9.2.0")
	pin := newer
	pin.Source = emulator.SourcePin
	refused := third
	refused.Refused = errors.New("/usr/local/bin/qemu-i386 is writable by everyone")
	badPin := cand("/opt/missing", "")
	badPin.Source, badPin.Refused = emulator.SourcePin, &emulator.PinError{Arch: "i386", Path: "/opt/missing", Err: errors.New("no such file or directory")}
	ok := func(path string, benchMS, slowdown float64) Trial {
		return Trial{Path: path, Probe: &emulator.Result{State: emulator.StateOK}, Workload: &emulator.Result{State: emulator.StateOK}, BenchMS: benchMS, Slowdown: slowdown}
	}
	crashed := func(path string) Trial {
		return Trial{Path: path, Probe: &emulator.Result{State: emulator.StateOK}, Workload: &emulator.Result{State: emulator.StateFailed,
			Reason: `emulator crashed: killed by SIGTRAP (trace/breakpoint trap) (entry qemu-i386, interpreter /usr/bin/qemu-i386-static, flags "PF"): "fatal: morestack on gsignal"`}}
	}
	trials := func(ts ...Trial) map[string]Trial {
		m := map[string]Trial{}
		for _, t := range ts {
			m[t.Path] = t
		}
		return m
	}
	sparc := func(c emulator.Candidate) emulator.Candidate { c.Arch = "sparc64"; return c }
	for _, tc := range []struct {
		name   string
		cands  []emulator.Candidate
		trials map[string]Trial
		how    string
		path   string
		reason string
	}{
		{"the one that passes", []emulator.Candidate{old, newer}, trials(crashed(old.Path), ok(newer.Path, 90, 4.1)), ChoiceAuto, newer.Path,
			"/opt/q/qemu-i386 10.0.13: passed the workload probe (bench 4.1x); /usr/bin/qemu-i386-static 7.2.22: crashed (SIGTRAP) in the workload probe"},
		{"the faster of two that pass", []emulator.Candidate{newer, old}, trials(ok(old.Path, 60, 3.0), ok(newer.Path, 90, 4.5)), ChoiceAuto, old.Path,
			"/usr/bin/qemu-i386-static 7.2.22: passed the workload probe (bench 3.0x); /opt/q/qemu-i386 10.0.13: passed the workload probe (bench 4.5x)"},
		{"a tie goes to the first found", []emulator.Candidate{newer, old}, trials(ok(old.Path, 60, 3.0), ok(newer.Path, 60, 3.0)), ChoiceAuto, newer.Path, ""},
		{"within 5% is a tie", []emulator.Candidate{newer, old}, trials(ok(old.Path, 58, 2.9), ok(newer.Path, 60, 3.0)), ChoiceAuto, newer.Path, ""},
		{"no probe program: the first found", []emulator.Candidate{sparc(old), sparc(newer)}, nil, ChoiceAuto, old.Path,
			"/usr/bin/qemu-i386-static 7.2.22: the first found (mabd has no probe program to prove sparc64 emulators with); /opt/q/qemu-i386 10.0.13: not tried"},
		{"benched before not benched", []emulator.Candidate{newer, old}, trials(ok(newer.Path, 0, 0), ok(old.Path, 60, 3.0)), ChoiceAuto, old.Path, ""},
		{"none passes: the first found", []emulator.Candidate{old, newer}, trials(crashed(old.Path), crashed(newer.Path)), ChoiceAuto, old.Path,
			"/usr/bin/qemu-i386-static 7.2.22: no candidate passed the workload probe, so the first found (crashed (SIGTRAP) in the workload probe); /opt/q/qemu-i386 10.0.13: crashed (SIGTRAP) in the workload probe"},
		{"not tried: the first found", []emulator.Candidate{old, newer}, trials(Trial{Path: old.Path, Error: "could not try it in a private binfmt_misc instance: no"}), ChoiceAuto, old.Path,
			"/usr/bin/qemu-i386-static 7.2.22: no candidate passed the workload probe, so the first found (not tried: could not try it in a private binfmt_misc instance: no); /opt/q/qemu-i386 10.0.13: not tried"},
		{"first", []emulator.Candidate{old, newer}, trials(crashed(old.Path), ok(newer.Path, 90, 4.1)), ChoiceFirst, old.Path, ""},
		{"the only usable one", []emulator.Candidate{refused, old}, nil, ChoiceAuto, old.Path,
			"/usr/bin/qemu-i386-static 7.2.22: the only usable candidate; /usr/local/bin/qemu-i386 9.2.0: refused: /usr/local/bin/qemu-i386 is writable by everyone"},
		{"pinned, even when it crashes", []emulator.Candidate{pin, old}, trials(crashed(newer.Path), ok(old.Path, 60, 3)), ChoiceAuto, newer.Path,
			"/opt/q/qemu-i386 10.0.13: pinned; /usr/bin/qemu-i386-static 7.2.22: not taken (another is pinned)"},
		{"a pin that may not be registered: none", []emulator.Candidate{badPin, old}, nil, ChoiceAuto, "",
			"the emulator pinned for i386, /opt/missing: no such file or directory"},
		{"every one refused: none", []emulator.Candidate{refused}, nil, ChoiceAuto, "", "/usr/local/bin/qemu-i386 is writable by everyone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arch := tc.cands[0].Arch
			c := Choose(arch, tc.cands, tc.trials, tc.how)
			if c.Path != tc.path || c.Arch != arch || c.Candidates != len(tc.cands) {
				t.Errorf("chose %q of %d (%s), want %q of %d", c.Path, c.Candidates, c.Reason, tc.path, len(tc.cands))
			}
			if tc.reason != "" && c.Reason != tc.reason {
				t.Errorf("reason\n%s\nwant\n%s", c.Reason, tc.reason)
			}
		})
	}
}

func TestTrialVerdict(t *testing.T) {
	res := func(state, reason string) *emulator.Result { return &emulator.Result{State: state, Reason: reason} }
	ok := res(emulator.StateOK, "")
	for _, tc := range []struct {
		trial Trial
		want  string
	}{
		{Trial{Probe: ok, Workload: ok, Slowdown: 4.25}, "passed the workload probe (bench 4.2x)"},
		{Trial{Probe: ok, Workload: ok}, "passed the workload probe"},
		{Trial{Probe: ok, Workload: res(emulator.StateFailed, `emulator crashed: exit status 2 after a fatal error of the probe's Go runtime (entry qemu-i386, interpreter /x, flags "F"): "fatal: bad g in signal handler"`)},
			`crashed (its Go runtime: "fatal: bad g in signal handler") in the workload probe`},
		{Trial{Probe: ok, Workload: res(emulator.StateFailed, `wrong output: "sort: 1" where every correct run prints "sort: 2"`)}, "failed the workload probe: wrong output"},
		{Trial{Probe: res(emulator.StateFailed, "emulator crashed: killed by SIGSEGV (segmentation fault)"), Workload: ok}, "failed the probe: crashed (SIGSEGV)"},
		{Trial{Error: "the trial did not end in time"}, "not tried: the trial did not end in time"},
	} {
		if got := tc.trial.Verdict(); got != tc.want {
			t.Errorf("Verdict() = %q, want %q", got, tc.want)
		}
		if passed := tc.trial.Passed(); passed != (tc.trial.Reason() == "") {
			t.Errorf("%q: Passed() = %v but Reason() = %q", tc.want, passed, tc.trial.Reason())
		}
	}
}
