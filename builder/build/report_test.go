package build

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

func TestParseStepName(t *testing.T) {
	for _, c := range []struct {
		name string
		want parsedStep
		ok   bool
	}{
		{"[linux/arm64 build 2/3] RUN go build ./...", parsedStep{platform: "linux/arm64", stage: "build", position: "2/3", text: "RUN go build ./..."}, true},
		{"[linux/amd64->arm64 build 2/3] RUN go build", parsedStep{platform: "linux/amd64", target: "arm64", stage: "build", position: "2/3", text: "RUN go build"}, true},
		{"[linux/amd64->arm/v7 2/3] COPY . .", parsedStep{platform: "linux/amd64", target: "arm/v7", position: "2/3", text: "COPY . ."}, true},
		{"[linux/arm/v7 stage-1  2/10] RUN make", parsedStep{platform: "linux/arm/v7", stage: "stage-1", position: "2/10", text: "RUN make"}, true},
		{"[build 2/3] RUN make", parsedStep{stage: "build", position: "2/3", text: "RUN make"}, true},
		{"[ 3/12] RUN make", parsedStep{position: "3/12", text: "RUN make"}, true},
		{"[linux/amd64 1/2] FROM r/busybox@sha256:00", parsedStep{platform: "linux/amd64", position: "1/2", text: "FROM r/busybox@sha256:00"}, true},
		{"[internal] load build definition from Dockerfile", parsedStep{}, false},
		{"[linux/arm64 internal] load metadata for r/busybox", parsedStep{}, false},
		{"[context extra] load .dockerignore", parsedStep{}, false},
		{"exporting to image", parsedStep{}, false},
	} {
		got, ok := parseStepName(c.name)
		if ok != c.ok || got != c.want {
			t.Errorf("parseStepName(%q) = %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// vertexAt is a vertex named name that started at start seconds and took
// secs.
func vertexAt(name string, start, secs float64, cached bool) *client.Vertex {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := t0.Add(time.Duration(start * float64(time.Second)))
	e := s.Add(time.Duration(secs * float64(time.Second)))
	return &client.Vertex{Digest: digest.FromString(name), Name: name, Started: &s, Completed: &e, Cached: cached}
}

// goStages is the Dockerfile of the report tests: a build stage the
// advice moves to $BUILDPLATFORM, and a final stage.
var goStages = []stage{{Name: "build", Base: "golang:1.26"}, {Base: "debian:12"}}

func TestNewReport(t *testing.T) {
	var log progressLog
	// Vertices arrive in several updates: first started, then completed.
	first := vertexAt("[linux/amd64 build 2/3] RUN go build ./...", 1, 6.1, false)
	log.add(&client.SolveStatus{Vertexes: []*client.Vertex{{Digest: first.Digest, Name: first.Name, Started: first.Started}}})
	log.add(&client.SolveStatus{Vertexes: []*client.Vertex{
		vertexAt("[internal] load build definition from Dockerfile", 0, 0.1, false),
		first,
		vertexAt("[linux/arm64 build 2/3] RUN go build ./...", 1, 41.8, false),
		vertexAt("[linux/386 build 2/3] RUN go build ./...", 1, 7, false),
		vertexAt("[linux/amd64 build 1/3] FROM golang:1.26", 0.5, 0.5, false),
		vertexAt("[linux/arm64 build 1/3] FROM golang:1.26", 0.5, 0.4, false),
		vertexAt("[linux/amd64 stage-1 2/2] COPY --from=build /out /out", 43, 0.1, false),
		vertexAt("[linux/arm64 stage-1 2/2] COPY --from=build /out /out", 43, 0.2, false),
		vertexAt("[linux/amd64 build 3/3] RUN go vet ./...", 8, 2, false),
		vertexAt("[linux/arm64 build 3/3] RUN go vet ./...", 43, 2, true),
		vertexAt("exporting to image", 43.5, 1.5, false),
	}})
	r := newReport(reportInput{
		vertices:      log.vertices(),
		built:         []string{"linux/amd64", "aarch64", "linux/386"},
		buildPlatform: "linux/amd64",
		stages:        goStages,
		nativeNode: func(p string) string {
			if p == "linux/arm64" {
				return "arm-1"
			}
			return ""
		},
	})
	if r.BuildPlatform != "linux/amd64" || r.WallSeconds != 45 {
		t.Errorf("build platform %q, wall %v", r.BuildPlatform, r.WallSeconds)
	}
	wantPlatforms := []PlatformTotal{
		{Platform: "linux/amd64", Seconds: 6.1 + 0.5 + 0.1 + 2},
		{Platform: "linux/arm64", Emulated: true, Seconds: 41.8 + 0.4 + 0.2, EmulatedSeconds: 41.8},
		{Platform: "linux/386", Seconds: 7},
	}
	for i, p := range r.Platforms {
		w := wantPlatforms[i]
		if p.Platform != w.Platform || p.Emulated != w.Emulated || math.Abs(p.Seconds-w.Seconds) > 1e-6 || math.Abs(p.EmulatedSeconds-w.EmulatedSeconds) > 1e-6 {
			t.Errorf("platform %d: %+v, want %+v", i, p, w)
		}
	}
	if len(r.Steps) != 4 {
		t.Fatalf("steps %+v", r.Steps)
	}
	gb := r.Steps[0]
	if gb.Name != "RUN go build ./..." || gb.Stage != "build" || gb.Position != "2/3" || len(gb.Runs) != 3 {
		t.Fatalf("the slowest step %+v", gb)
	}
	amd, arm, i386 := gb.Runs[0], gb.Runs[1], gb.Runs[2]
	if amd.Platform != "linux/amd64" || amd.Emulated || amd.Slowdown != 0 ||
		arm.Platform != "linux/arm64" || !arm.Emulated || math.Abs(arm.Slowdown-41.8/6.1) > 1e-6 ||
		i386.Platform != "linux/386" || i386.Emulated || i386.Slowdown != 0 {
		t.Errorf("runs %+v", gb.Runs)
	}
	if r.Steps[1].Name != "RUN go vet ./..." || r.Steps[1].Runs[0].Cached || !r.Steps[1].Runs[1].Cached || r.Steps[1].Runs[1].Slowdown != 0 {
		t.Errorf("the step cached for arm64 %+v", r.Steps[1])
	}
	if len(r.Advice) != 1 {
		t.Fatalf("advice %+v", r.Advice)
	}
	a := r.Advice[0]
	want := []string{"FROM --platform=$BUILDPLATFORM golang:1.26 AS build", "ARG TARGETOS TARGETARCH", "RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build ./..."}
	if a.Platform != "linux/arm64" || a.Step != "RUN go build ./..." || a.NativeNode != "arm-1" || !slices.Equal(a.Rewrite, want) || math.Abs(a.Share-41.8/45) > 1e-6 {
		t.Errorf("advice %+v\nwant rewrite %q", a, want)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`\n  \[build\] RUN go build \./\.\.\. +linux/amd64 6\.1s  linux/arm64 41\.8s \(emulated, 6\.9×\)  linux/386 7\.0s\n`,
		`\n  \[build\] RUN go vet \./\.\.\. +linux/amd64 2\.0s  linux/arm64 cached\n`,
		`\n  COPY --from=build /out /out +linux/amd64 0\.1s  linux/arm64 0\.2s\n`,
	} {
		if !regexp.MustCompile(re).MatchString(text.String()) {
			t.Errorf("the text does not match %s:\n%s", re, text.String())
		}
	}
	for _, line := range []string{
		"emulation report: build platform linux/amd64; emulated: linux/arm64\n",
		"  step time: linux/amd64 8.7s, linux/arm64 42.4s (41.8s emulated), linux/386 7.0s; the build took 45.0s\n",
		`advice: "RUN go build ./..." ran under emulation for linux/arm64 for 41.8s (93% of the build, 6.9× the build platform's time).`,
		"    FROM --platform=$BUILDPLATFORM golang:1.26 AS build\n",
		"    RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build ./...\n",
		"  Or build linux/arm64 on arm-1, a node of the fleet that runs it natively.\n",
	} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("the text lacks %q:\n%s", line, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Steps[0].Runs[1].Slowdown != r.Steps[0].Runs[1].Slowdown || back.Advice[0].Rewrite[0] != want[0] {
		t.Errorf("JSON round trip: %v\n%s", err, js.String())
	}
	for _, key := range []string{`"build_platform": "linux/amd64"`, `"ran_on": "linux/arm64"`, `"emulated": true`, `"slowdown": 6.85`, `"native_node": "arm-1"`, `"wall_seconds": 45`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("the JSON lacks %s", key)
		}
	}
}

// TestReportCrossCompiled: a stage FROM --platform=$BUILDPLATFORM runs on
// the build platform for every target, and no advice is given.
func TestReportCrossCompiled(t *testing.T) {
	r := newReport(reportInput{
		vertices: []client.Vertex{
			*vertexAt("[linux/amd64 build 2/3] RUN GOARCH=amd64 go build", 0, 6, false),
			*vertexAt("[linux/amd64->arm64 build 2/3] RUN GOARCH=arm64 go build", 0, 6.5, false),
			*vertexAt("[linux/arm64 stage-1 2/2] RUN apt-get install -y ca-certificates", 6.5, 0.4, false),
		},
		built:         []string{"linux/amd64", "linux/arm64"},
		buildPlatform: "linux/amd64",
		stages:        goStages,
	})
	if len(r.Steps) != 2 || len(r.Steps[0].Runs) != 2 {
		t.Fatalf("steps %+v", r.Steps)
	}
	cross := r.Steps[0].Runs[1]
	if r.Steps[0].Name != "RUN GOARCH=amd64 go build" || cross.Platform != "linux/arm64" || cross.RanOn != "linux/amd64" || cross.Emulated || cross.Slowdown != 0 {
		t.Errorf("the cross-compiled run %+v of %+v", cross, r.Steps[0])
	}
	if apt := r.Steps[1].Runs[0]; !apt.Emulated || apt.Slowdown != 0 {
		t.Errorf("an emulated step that ran only for arm64: %+v", apt)
	}
	if len(r.Advice) != 0 {
		t.Errorf("advice %+v: nothing emulated dominates", r.Advice)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "linux/arm64 6.5s (on linux/amd64)") {
		t.Errorf("text:\n%s", text.String())
	}
}

// TestReportOnePlatform: BuildKit names no platform when there is one.
func TestReportOnePlatform(t *testing.T) {
	r := newReport(reportInput{
		vertices:      []client.Vertex{*vertexAt("[stage-0 2/2] RUN make", 0, 3, false)},
		built:         []string{"linux/riscv64"},
		buildPlatform: "linux/amd64",
		stages:        []stage{{Base: "$BASE"}},
	})
	if !r.Interesting() || len(r.Steps) != 1 || !r.Steps[0].Runs[0].Emulated || len(r.Advice) != 1 {
		t.Fatalf("%+v", r)
	}
	want := []string{"FROM --platform=$BUILDPLATFORM $BASE AS build", "ARG TARGETOS TARGETARCH",
		"# build for $TARGETOS/$TARGETARCH with a cross compiler (or the tool's target option), not for the build host:",
		"RUN make", "FROM $BASE", "COPY --from=build <what the RUN step made> <where the image wants it>"}
	if !slices.Equal(r.Advice[0].Rewrite, want) {
		t.Errorf("rewrite of the only stage:\n%q\nwant\n%q", r.Advice[0].Rewrite, want)
	}
	native := newReport(reportInput{vertices: []client.Vertex{*vertexAt("[2/2] RUN make", 0, 3, false)}, built: []string{"linux/amd64"}, buildPlatform: "linux/amd64"})
	if native.Interesting() || native.Steps[0].Runs[0].Emulated {
		t.Errorf("one native platform: %+v", native)
	}
	var text bytes.Buffer
	empty := newReport(reportInput{built: []string{"linux/amd64", "linux/arm64"}, buildPlatform: "linux/amd64"})
	empty.WriteText(&text)
	if !strings.Contains(text.String(), "everything was cached") {
		t.Errorf("nothing ran:\n%s", text.String())
	}
}

func TestGoCrossCompile(t *testing.T) {
	for in, want := range map[string]string{
		"go build ./...":                      "GOOS=$TARGETOS GOARCH=$TARGETARCH go build ./...",
		"cd app && go build -o /out/app .":    "cd app && GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .",
		"go mod download; go install ./cmd/x": "go mod download; GOOS=$TARGETOS GOARCH=$TARGETARCH go install ./cmd/x",
		"CGO_ENABLED=0 go build .":            "CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build .",
		"GOARCH=arm64 go build .":             "",
		"make":                                "",
		"cargo build --release":               "",
		"echo go building":                    "",
	} {
		got, ok := goCrossCompile(in)
		if ok != (want != "") || ok && got != want {
			t.Errorf("goCrossCompile(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestEmulatedOn(t *testing.T) {
	amd := emulatedOn("linux/amd64")
	for p, want := range map[string]bool{"linux/amd64": false, "linux/amd64/v3": false, "linux/386": false, "linux/arm64": true, "linux/arm/v7": true, "linux/riscv64": true, "windows/sparc": true} {
		if got := amd(p); got != want {
			t.Errorf("on amd64, %s emulated: %v, want %v", p, got, want)
		}
	}
	arm := emulatedOn("linux/arm64")
	if arm("linux/arm64") || !arm("linux/amd64") {
		t.Error("on arm64: arm64 must be native, amd64 emulated")
	}
}

// TestAdviceSlowestRun: one piece of advice per step, for its slowest
// emulated run; a short one, or one in a long build, gets none.
func TestAdviceSlowestRun(t *testing.T) {
	r := newReport(reportInput{
		vertices: []client.Vertex{
			*vertexAt("[linux/amd64 build 2/3] RUN make", 0, 2, false),
			*vertexAt("[linux/arm64 build 2/3] RUN make", 0, 9, false),
			*vertexAt("[linux/riscv64 build 2/3] RUN make", 0, 20, false),
			*vertexAt("[linux/riscv64 build 3/3] RUN make check", 20, 0.9, false),
			*vertexAt("[linux/arm64 build 3/3] RUN make check", 20, 3, false),
			*vertexAt("exporting to image", 23, 57, false),
		},
		built:         []string{"linux/amd64", "linux/arm64", "linux/riscv64"},
		buildPlatform: "linux/amd64",
		stages:        goStages,
	})
	if len(r.Advice) != 1 || r.Advice[0].Platform != "linux/riscv64" || r.Advice[0].Step != "RUN make" || r.Advice[0].Slowdown != 10 || r.Advice[0].Share != 0.25 {
		t.Errorf("advice %+v: want one, for riscv64's 20 s of make (a quarter of the build's 80 s), not arm64's 9 s; make check's 3 s are too short a part", r.Advice)
	}
}
