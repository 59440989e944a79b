package build

import (
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// stage is one stage of a Dockerfile, as written.
type stage struct {
	// Name is its AS name in lower case ("build"), "" when it has none.
	Name string
	// Base is what its FROM names, as written ("golang:1.26", "$BASE",
	// another stage).
	Base string
	// Platform is its FROM --platform=, as written ("$BUILDPLATFORM").
	Platform string
}

// readStages parses the Dockerfile at path with BuildKit's own parser (the
// one its dockerfile.v0 frontend runs) and returns its stages in order.
// A Dockerfile that does not parse is an error; the caller leaves it to
// the frontend, which reports it with the offending lines.
func readStages(path string) ([]stage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return nil, err
	}
	sts, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, err
	}
	out := make([]stage, len(sts))
	for i, s := range sts {
		out[i] = stage{Name: s.Name, Base: s.BaseName, Platform: s.Platform}
	}
	return out, nil
}

// checkTarget refuses a target that names no stage of the Dockerfile, as
// the frontend would once the build started (stage names are matched
// without regard to case).
func checkTarget(target string, stages []stage) error {
	var names []string
	for _, s := range stages {
		if s.Name == "" {
			continue
		}
		if strings.EqualFold(s.Name, target) {
			return nil
		}
		names = append(names, s.Name)
	}
	if len(names) == 0 {
		return &UsageError{Option: "Target", Value: target, Err: fmt.Errorf("not a stage of the Dockerfile, which names none (name one with FROM … AS %s)", strings.ToLower(target))}
	}
	return &UsageError{Option: "Target", Value: target, Err: fmt.Errorf("not a stage of the Dockerfile (its stages: %s)", strings.Join(names, ", "))}
}

// stageOf finds the stage a step of the progress display belongs to: name
// is the stage part of its "[linux/arm64 build 2/3]" prefix — the stage's
// name, "stage-N" for the N-th stage (from 0) when it has none, "" in a
// Dockerfile of one stage. The index is -1 when no stage matches.
func stageOf(name string, stages []stage) (stage, int) {
	switch {
	case name == "" && len(stages) == 1:
		return stages[0], 0
	case strings.HasPrefix(name, "stage-"):
		var n int
		if _, err := fmt.Sscanf(name, "stage-%d", &n); err == nil && n >= 0 && n < len(stages) && stages[n].Name == "" {
			return stages[n], n
		}
	}
	for i, s := range stages {
		if s.Name != "" && s.Name == name {
			return s, i
		}
	}
	return stage{}, -1
}
