package build

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"mabd/binfmt"
)

// Report is the emulation report of a build: how long each Dockerfile step
// took on each platform, which runs went through an emulator, how much
// slower they were than the same step on the build platform, and what to
// change when emulation dominates the build. It is made from BuildKit's
// own progress events (each step's start and completion as buildkitd
// reports them), so it costs the build nothing.
//
// A step is identified across platforms by its stage and its position in
// it ("build 2/3"), the way BuildKit's progress display names it
// ("[linux/arm64 build 2/3] RUN …"). Only RUN steps execute the target's
// programs; the others (FROM, COPY, …) run in buildkitd itself and are
// never emulated. A RUN step of a stage built FROM --platform=$BUILDPLATFORM
// runs on the build platform whatever its target ("[linux/amd64->arm64
// …]"): that is the rewrite the advice proposes.
type Report struct {
	// Version is the version of this format: 1.
	Version int `json:"version"`
	// BuildPlatform is the builder's own platform ("linux/amd64"): the
	// one that runs without an emulator, $BUILDPLATFORM in a Dockerfile.
	BuildPlatform string `json:"build_platform"`
	// Platforms are the target platforms, in the build's order.
	Platforms []PlatformTotal `json:"platforms"`
	// WallSeconds is the time from the first step's start to the last
	// one's end.
	WallSeconds float64 `json:"wall_seconds"`
	// Steps are the Dockerfile steps, the slowest first (by their slowest
	// run).
	Steps []Step `json:"steps"`
	// Advice says how to avoid the emulated runs that dominate the build.
	Advice []Advice `json:"advice,omitempty"`
}

// PlatformTotal sums the steps of one target platform.
type PlatformTotal struct {
	Platform string `json:"platform"`
	// Emulated says that its RUN steps run through an emulator, unless
	// their stage runs on the build platform.
	Emulated bool `json:"emulated"`
	// Seconds is the time of its steps that were not cached (they may
	// overlap).
	Seconds float64 `json:"seconds"`
	// EmulatedSeconds is the part of Seconds spent in emulated RUN steps.
	EmulatedSeconds float64 `json:"emulated_seconds"`
}

// Step is one Dockerfile instruction and its runs, one per target
// platform it was built for.
type Step struct {
	// Name is the instruction as the progress display shows it, without
	// its prefix ("RUN go build ./..."), as run for the build platform
	// when it was.
	Name string `json:"name"`
	// Stage is the stage's name as BuildKit shows it ("build", "stage-1");
	// "" in a Dockerfile of one stage.
	Stage string `json:"stage,omitempty"`
	// Position is its position in its stage ("2/3").
	Position string `json:"position"`
	Runs     []Run  `json:"runs"`
}

// Run is a step built for one target platform.
type Run struct {
	// Platform is the target platform.
	Platform string `json:"platform"`
	// RanOn is the platform that executed it: Platform, or the build
	// platform for a stage FROM --platform=$BUILDPLATFORM.
	RanOn string `json:"ran_on"`
	// Emulated says that a RUN step ran through an emulator (RanOn is a
	// foreign platform).
	Emulated bool `json:"emulated"`
	// Cached says that BuildKit took the result from its cache.
	Cached bool `json:"cached"`
	// Seconds is its time, from BuildKit's start and completion events.
	Seconds float64 `json:"seconds"`
	// Slowdown is Seconds divided by the time of the same step on the
	// build platform, for an emulated run when both ran (not cached); 0
	// otherwise.
	Slowdown float64 `json:"slowdown,omitempty"`
}

// Advice is the rewrite that avoids one emulated run that dominates the
// build.
type Advice struct {
	Step     string  `json:"step"`
	Stage    string  `json:"stage,omitempty"`
	Platform string  `json:"platform"`
	Seconds  float64 `json:"seconds"`
	// Slowdown is the run's, 0 when the step did not also run natively.
	Slowdown float64 `json:"slowdown,omitempty"`
	// Share is the run's part of the build's wall-clock time (0 to 1).
	Share float64 `json:"share"`
	// Rewrite are the Dockerfile lines that run the step on
	// $BUILDPLATFORM and cross-compile for TARGETOS/TARGETARCH.
	Rewrite []string `json:"rewrite"`
	// NativeNode names a node of the fleet that runs Platform natively
	// ([BuildOptions.NativeNode]), "" when there is none.
	NativeNode string `json:"native_node,omitempty"`
}

// Thresholds of the advice: an emulated run dominates a build when it
// takes at least dominantShare of its wall-clock time and at least
// dominantMin.
const (
	dominantShare = 0.25
	dominantMin   = time.Second
	// maxAdvice bounds the advice given for one build.
	maxAdvice = 3
	// slowestPerPlatform is how many steps of each platform the text
	// report lists (the JSON has them all), minListed how long a run
	// must have taken to be listed.
	slowestPerPlatform = 5
	minListed          = 0.05
)

// progressLog collects the vertices of BuildKit's progress events.
type progressLog struct {
	mu    sync.Mutex
	byDig map[digest.Digest]*client.Vertex
	order []digest.Digest
}

// add records the vertices of one status update: the latest of each
// field wins, Started and Completed once known stay known.
func (l *progressLog) add(s *client.SolveStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byDig == nil {
		l.byDig = map[digest.Digest]*client.Vertex{}
	}
	for _, v := range s.Vertexes {
		old, ok := l.byDig[v.Digest]
		if !ok {
			c := *v
			l.byDig[v.Digest] = &c
			l.order = append(l.order, v.Digest)
			continue
		}
		if v.Name != "" {
			old.Name = v.Name
		}
		if v.Started != nil {
			old.Started = v.Started
		}
		if v.Completed != nil {
			old.Completed = v.Completed
		}
		old.Cached = old.Cached || v.Cached
		if v.Error != "" {
			old.Error = v.Error
		}
	}
}

// vertices returns the vertices in the order they first appeared.
func (l *progressLog) vertices() []client.Vertex {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]client.Vertex, 0, len(l.order))
	for _, d := range l.order {
		out = append(out, *l.byDig[d])
	}
	return out
}

// stepName matches a Dockerfile step's name in BuildKit's progress
// display: "[linux/arm64 build 2/3] RUN …", "[linux/amd64->arm64 2/3]
// COPY …", "[build 2/3] RUN …", "[2/2] RUN …".
var stepName = regexp.MustCompile(`^\[(?:([^\s/]+/\S+?)(?:->(\S+))? )?(?:(\S+) )?\s*(\d+/\d+)\] (.+)$`)

// parsedStep is a step's name taken apart.
type parsedStep struct {
	platform, target, stage, position, text string
}

func parseStepName(s string) (parsedStep, bool) {
	m := stepName.FindStringSubmatch(s)
	if m == nil {
		return parsedStep{}, false
	}
	return parsedStep{platform: m[1], target: m[2], stage: m[3], position: m[4], text: m[5]}, true
}

// knownOS are the operating systems a "->" target of a step's name may
// start with (a target of the same OS shows only its architecture).
var knownOS = []string{"linux", "windows", "darwin", "freebsd"}

// normPlatform formats p normalized ("aarch64" → "linux/arm64"), p itself
// when it does not parse.
func normPlatform(p string) string {
	pl, err := platforms.Parse(p)
	if err != nil {
		return p
	}
	return platforms.FormatAll(platforms.Normalize(pl))
}

// emulatedOn returns whether a platform runs emulated on a builder whose
// own platform is build: its architecture is none of those build's
// architecture runs natively (amd64 runs 386).
func emulatedOn(build string) func(string) bool {
	native := map[string]bool{}
	bp, err := platforms.Parse(build)
	if err == nil {
		for _, n := range binfmt.Native(platforms.Normalize(bp).Architecture) {
			native[n] = true
		}
	}
	return func(p string) bool {
		if normPlatform(p) == normPlatform(build) {
			return false
		}
		a, err := binfmt.Lookup(p)
		if err != nil || a.Name == "" {
			return true
		}
		return !native[a.Name]
	}
}

// reportInput is what a report is made of.
type reportInput struct {
	vertices []client.Vertex
	// built are the target platforms.
	built []string
	// buildPlatform is the builder's own.
	buildPlatform string
	// stages are the Dockerfile's, nil when it did not parse.
	stages []stage
	// target is the stage built ("" for the last).
	target string
	// nativeNode is [BuildOptions.NativeNode].
	nativeNode func(platform string) string
}

// newReport makes the report of a build from its progress.
func newReport(in reportInput) *Report {
	r := &Report{Version: 1, BuildPlatform: normPlatform(in.buildPlatform)}
	emulated := emulatedOn(in.buildPlatform)
	built := make([]string, len(in.built))
	for i, p := range in.built {
		built[i] = normPlatform(p)
		r.Platforms = append(r.Platforms, PlatformTotal{Platform: built[i], Emulated: emulated(built[i])})
	}
	var first, last time.Time
	byKey := map[string]*Step{}
	var keys []string
	for _, v := range in.vertices {
		if v.Started != nil && (first.IsZero() || v.Started.Before(first)) {
			first = *v.Started
		}
		if v.Completed != nil && v.Completed.After(last) {
			last = *v.Completed
		}
		ps, ok := parseStepName(v.Name)
		if !ok || v.Started == nil || v.Completed == nil {
			continue
		}
		run := Run{Cached: v.Cached, Seconds: v.Completed.Sub(*v.Started).Seconds()}
		switch {
		case ps.platform == "" && len(built) == 1:
			// One platform: BuildKit names no platform.
			run.Platform, run.RanOn = built[0], built[0]
		case ps.platform == "":
			continue
		default:
			run.RanOn = normPlatform(ps.platform)
			run.Platform = run.RanOn
			if t := ps.target; t != "" {
				os, _, _ := strings.Cut(t, "/")
				if !slices.Contains(knownOS, os) {
					ranOS, _, _ := strings.Cut(run.RanOn, "/")
					t = ranOS + "/" + t
				}
				run.Platform = normPlatform(t)
			}
		}
		run.Emulated = strings.HasPrefix(ps.text, "RUN ") && emulated(run.RanOn)
		key := ps.stage + " " + ps.position
		st := byKey[key]
		if st == nil {
			st = &Step{Name: ps.text, Stage: ps.stage, Position: ps.position}
			byKey[key] = st
			keys = append(keys, key)
		}
		if run.RanOn == r.BuildPlatform && run.Platform == r.BuildPlatform {
			st.Name = ps.text
		}
		st.Runs = append(st.Runs, run)
	}
	if !first.IsZero() && last.After(first) {
		r.WallSeconds = last.Sub(first).Seconds()
	}
	for _, k := range keys {
		st := byKey[k]
		slices.SortStableFunc(st.Runs, func(a, b Run) int {
			return cmp.Compare(slices.Index(built, a.Platform), slices.Index(built, b.Platform))
		})
		var native *Run
		for i := range st.Runs {
			if ru := &st.Runs[i]; ru.RanOn == r.BuildPlatform && !ru.Cached && ru.Seconds > 0 {
				native = ru
			}
		}
		for i := range st.Runs {
			ru := &st.Runs[i]
			if ru.Emulated && !ru.Cached && native != nil {
				ru.Slowdown = ru.Seconds / native.Seconds
			}
			if j := slices.Index(built, ru.Platform); j >= 0 && !ru.Cached {
				r.Platforms[j].Seconds += ru.Seconds
				if ru.Emulated {
					r.Platforms[j].EmulatedSeconds += ru.Seconds
				}
			}
		}
		r.Steps = append(r.Steps, *st)
	}
	slices.SortStableFunc(r.Steps, func(a, b Step) int { return cmp.Compare(b.slowest(), a.slowest()) })
	r.Advice = advise(r, in)
	return r
}

// slowest is the time of the step's slowest run that was not cached.
func (s Step) slowest() float64 {
	var m float64
	for _, ru := range s.Runs {
		if !ru.Cached {
			m = max(m, ru.Seconds)
		}
	}
	return m
}

// advise proposes, for each emulated run that dominates the build (the
// slowest first, at most maxAdvice), the rewrite that takes it off the
// emulator.
func advise(r *Report, in reportInput) []Advice {
	var out []Advice
	for _, st := range r.Steps {
		// One piece of advice per step, for its slowest emulated run: the
		// same rewrite serves every platform.
		var worst *Run
		for i, ru := range st.Runs {
			if ru.Emulated && !ru.Cached && ru.Seconds >= dominantMin.Seconds() && r.WallSeconds > 0 &&
				ru.Seconds/r.WallSeconds >= dominantShare && (worst == nil || ru.Seconds > worst.Seconds) {
				worst = &st.Runs[i]
			}
		}
		if worst == nil {
			continue
		}
		a := Advice{Step: st.Name, Stage: st.Stage, Platform: worst.Platform, Seconds: worst.Seconds, Slowdown: worst.Slowdown, Share: worst.Seconds / r.WallSeconds}
		a.Rewrite = rewrite(st, in.stages, in.target)
		if in.nativeNode != nil {
			a.NativeNode = in.nativeNode(worst.Platform)
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b Advice) int { return cmp.Compare(b.Seconds, a.Seconds) })
	if len(out) > maxAdvice {
		out = out[:maxAdvice]
	}
	return out
}

// rewrite returns the Dockerfile lines that run step on the build platform
// and cross-compile for the target: its stage FROM
// --platform=$BUILDPLATFORM with TARGETOS and TARGETARCH declared, and,
// when the step is in the stage the image is made of, that stage split in
// two so that the image is still the target platform's.
func rewrite(st Step, stages []stage, target string) []string {
	cmd := strings.TrimPrefix(st.Name, "RUN ")
	s, i := stageOf(st.Stage, stages)
	base := s.Base
	if i < 0 || base == "" {
		base = "<the stage's base image>"
	}
	final := i >= 0 && (target == "" && i == len(stages)-1 || target != "" && strings.EqualFold(s.Name, target))
	name := s.Name
	if final || name == "" {
		name = "build"
	}
	out := []string{
		"FROM --platform=$BUILDPLATFORM " + base + " AS " + name,
		"ARG TARGETOS TARGETARCH",
	}
	if cross, ok := goCrossCompile(cmd); ok {
		out = append(out, "RUN "+cross)
	} else {
		out = append(out,
			"# build for $TARGETOS/$TARGETARCH with a cross compiler (or the tool's target option), not for the build host:",
			"RUN "+cmd)
	}
	if final || i < 0 {
		out = append(out,
			"FROM "+base,
			"COPY --from="+name+" <what the RUN step made> <where the image wants it>")
	}
	return out
}

// goCmd finds a go build or go install command.
var goCmd = regexp.MustCompile(`(^|[;&|(]\s*|\s)(go (?:build|install)\b)`)

// goCrossCompile rewrites the go build or go install commands of a RUN
// step to cross-compile for the target (Go turns cgo off by itself when
// it cross-compiles).
func goCrossCompile(cmd string) (string, bool) {
	if !goCmd.MatchString(cmd) || strings.Contains(cmd, "GOARCH=") {
		return cmd, false
	}
	return goCmd.ReplaceAllString(cmd, "${1}GOOS=$$TARGETOS GOARCH=$$TARGETARCH ${2}"), true
}

// Interesting says whether the report says something worth printing after
// a build: it built several platforms, or an emulated one.
func (r *Report) Interesting() bool {
	if len(r.Platforms) > 1 {
		return true
	}
	for _, p := range r.Platforms {
		if p.Emulated {
			return true
		}
	}
	return false
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: the slowest steps of each
// platform, one line each with every platform's time, emulated runs
// marked with their slowdown ("RUN go build ./...  linux/amd64 6.1s
// linux/arm64 41.8s (emulated, 6.9×)"); the time by platform; then the
// advice, each with the lines to write in the Dockerfile.
func (r *Report) WriteText(w io.Writer) error {
	var emu []string
	for _, p := range r.Platforms {
		if p.Emulated {
			emu = append(emu, p.Platform)
		}
	}
	head := "emulation report: build platform " + r.BuildPlatform
	if len(emu) > 0 {
		head += "; emulated: " + strings.Join(emu, ", ")
	} else {
		head += "; nothing emulated"
	}
	fmt.Fprintln(w, head)
	rows := r.slowestSteps()
	if len(rows) == 0 {
		fmt.Fprintln(w, "  no step took measurable time: everything was cached")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, st := range rows {
		line := "  " + shorten(st.label(), 60)
		for _, ru := range st.Runs {
			line += "\t" + ru.Platform + " " + ru.describe()
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var totals []string
	for _, p := range r.Platforms {
		t := fmt.Sprintf("%s %s", p.Platform, seconds(p.Seconds))
		if p.EmulatedSeconds > 0 {
			t += fmt.Sprintf(" (%s emulated)", seconds(p.EmulatedSeconds))
		}
		totals = append(totals, t)
	}
	fmt.Fprintf(w, "  step time: %s; the build took %s\n", strings.Join(totals, ", "), seconds(r.WallSeconds))
	for _, a := range r.Advice {
		how := ""
		if a.Slowdown > 0 {
			how = fmt.Sprintf(", %s the build platform's time", times(a.Slowdown))
		}
		fmt.Fprintf(w, "advice: %q ran under emulation for %s for %s (%.0f%% of the build%s).\n",
			shorten(a.Step, 60), a.Platform, seconds(a.Seconds), 100*a.Share, how)
		fmt.Fprintln(w, "  Run it on the build platform ($BUILDPLATFORM) and cross-compile for TARGETOS/TARGETARCH instead:")
		for _, l := range a.Rewrite {
			fmt.Fprintln(w, "    "+l)
		}
		if a.NativeNode != "" {
			fmt.Fprintf(w, "  Or build %s on %s, a node of the fleet that runs it natively.\n", a.Platform, a.NativeNode)
		}
	}
	return nil
}

// slowestSteps are the steps the text report lists: each platform's
// slowestPerPlatform slowest runs that were not cached, the slowest step
// first.
func (r *Report) slowestSteps() []Step {
	keep := map[int]bool{}
	for _, p := range r.Platforms {
		type ranked struct {
			step int
			secs float64
		}
		var rs []ranked
		for i, st := range r.Steps {
			for _, ru := range st.Runs {
				if ru.Platform == p.Platform && !ru.Cached && ru.Seconds >= minListed {
					rs = append(rs, ranked{i, ru.Seconds})
				}
			}
		}
		slices.SortStableFunc(rs, func(a, b ranked) int { return cmp.Compare(b.secs, a.secs) })
		for _, x := range rs[:min(len(rs), slowestPerPlatform)] {
			keep[x.step] = true
		}
	}
	var out []Step
	for i, st := range r.Steps { // already the slowest first
		if keep[i] {
			out = append(out, st)
		}
	}
	return out
}

// label is the step as the text report shows it: "[build] RUN …" in a
// named stage, "RUN …" in another.
func (s Step) label() string {
	if s.Stage == "" || unnamedStage.MatchString(s.Stage) {
		return s.Name
	}
	return "[" + s.Stage + "] " + s.Name
}

// unnamedStage is how BuildKit names a stage without a name.
var unnamedStage = regexp.MustCompile(`^stage-\d+$`)

// describe is a run's time: "6.1s", "41.8s (emulated, 6.9×)", "cached".
func (ru Run) describe() string {
	switch {
	case ru.Cached:
		return "cached"
	case ru.Emulated && ru.Slowdown > 0:
		return seconds(ru.Seconds) + " (emulated, " + times(ru.Slowdown) + ")"
	case ru.Emulated:
		return seconds(ru.Seconds) + " (emulated)"
	case ru.RanOn != ru.Platform:
		return seconds(ru.Seconds) + " (on " + ru.RanOn + ")"
	}
	return seconds(ru.Seconds)
}

func seconds(s float64) string { return fmt.Sprintf("%.1fs", s) }
func times(x float64) string   { return fmt.Sprintf("%.1f×", x) }

// shorten cuts s to n runes, marking the cut with "…".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
