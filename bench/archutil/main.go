// Command archutil-platforms prints the platforms BuildKit's own detection,
// archutil.SupportedPlatforms(true), finds on this host (through the
// binfmt_misc handlers of its user namespace), as JSON, with the time the
// call took. mabd-bench runs it against `mabd verify` (row 3).
package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/util/archutil"
)

func main() {
	start := time.Now()
	ps := archutil.SupportedPlatforms(true)
	elapsed := time.Since(start)
	out := struct {
		Platforms []string `json:"platforms"`
		CallMS    float64  `json:"call_ms"`
	}{CallMS: float64(elapsed) / float64(time.Millisecond)}
	for _, p := range ps {
		out.Platforms = append(out.Platforms, platforms.Format(p))
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		os.Exit(1)
	}
}
