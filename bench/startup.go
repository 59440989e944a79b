package main

// Row 0: how mabd starts. The host agent (bin/mabd: install, status,
// verify, exec) is measured against a Go hello-world as whole processes,
// alternately; and what each of mabd's three programs links.

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startup is row group 0.
func (b *bench) startup(ctx context.Context) []Row {
	const title = "process start to exit"
	hello := "Go hello-world (`fmt.Println`)"
	if _, err := os.Stat(b.cfg.hello); err != nil {
		why := fmt.Sprintf("%v: scripts/bench.sh builds bench/hello", err)
		return []Row{naRow("0a", title, "`mabd version`", hello, why), naRow("0b", title, "`mabd status --local --json`", hello, why)}
	}
	var rows []Row
	for _, c := range []struct {
		id, name string
		args     []string
	}{
		{"0a", "`mabd version`", []string{"version"}},
		// Read-only: it inspects the host's table and emulators.
		{"0b", "`mabd status --local --json` (inspects the host's table and emulators)", []string{"status", "--local", "--json"}},
	} {
		var as, bs []float64
		var err error
		rounds := 4 * b.cfg.rounds
		for i := 0; i < rounds && ctx.Err() == nil && err == nil; i++ {
			var t float64
			if t, err = runOnce(ctx, b.cfg.mabd, c.args...); err != nil {
				break
			}
			as = append(as, t)
			if t, err = runOnce(ctx, b.cfg.hello); err != nil {
				break
			}
			bs = append(bs, t)
		}
		if err != nil {
			rows = append(rows, naRow(c.id, title, c.name, hello, firstLine(err)))
			continue
		}
		r := compareRow(c.id, title, c.name, hello, as, bs)
		r.Note = fmt.Sprintf("peak RSS %.1f MiB vs %.1f MiB", peakRSS(ctx, b.cfg.mabd, c.args...)/1024, peakRSS(ctx, b.cfg.hello)/1024)
		if c.id == "0a" {
			r.Note += fmt.Sprintf("; %d package inits (GODEBUG=inittrace=1)", inits(ctx, b.cfg.mabd, c.args...))
		}
		rows = append(rows, r)
	}
	rows = append(rows, b.programs())
	return rows
}

// runOnce runs name with args and returns its wall time in ms; an exit
// status of 1 (status: degraded) is fine.
func runOnce(ctx context.Context, name string, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	start := time.Now()
	err := cmd.Run()
	el := ms(time.Since(start))
	if err != nil && (cmd.ProcessState == nil || cmd.ProcessState.ExitCode() > 1) {
		return 0, fmt.Errorf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return el, nil
}

// peakRSS is the peak RSS of one run of name, in KiB, as GNU time
// reports it (it forks the program from its own small process: a Go
// parent's child shares the parent's memory until exec, which its peak
// would count); 0 when /usr/bin/time is missing.
func peakRSS(ctx context.Context, name string, args ...string) float64 {
	f, err := os.CreateTemp("", "mabd-bench-rss-")
	if err != nil {
		return 0
	}
	f.Close()
	defer os.Remove(f.Name())
	exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-f", "%M", "-o", f.Name(), name}, args...)...).Run()
	// GNU time puts "Command exited with non-zero status 1" (status:
	// degraded) on a line before the figure.
	b, _ := os.ReadFile(f.Name())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kib, _ := strconv.ParseFloat(lines[len(lines)-1], 64)
	return kib
}

// inits counts the package initializations of one run of name.
func inits(ctx context.Context, name string, args ...string) int {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.Run()
	return strings.Count(errb.String(), "init ")
}

// programs is row 0c: each of mabd's programs, its size and the modules it
// links, and whether gRPC, OpenTelemetry, a registry client or Prometheus
// are among them.
func (b *bench) programs() Row {
	r := Row{ID: "0c", Title: "what each program links", A: "bin/mabd, bin/mabd-daemon, bin/mabd-build", Values: map[string]float64{}}
	var parts []string
	for _, p := range []string{"mabd", "mabd-daemon", "mabd-build"} {
		path := filepath.Join(filepath.Dir(b.cfg.mabd), p)
		fi, err := os.Stat(path)
		if err != nil {
			return naRow("0c", r.Title, r.A, "", err.Error())
		}
		info, err := buildinfo.ReadFile(path)
		if err != nil {
			return naRow("0c", r.Title, r.A, "", err.Error())
		}
		var heavy []string
		for _, d := range info.Deps {
			for _, h := range []string{"google.golang.org/grpc", "go.opentelemetry.io/otel", "github.com/google/go-containerregistry", "github.com/prometheus/client_golang"} {
				if d.Path == h {
					heavy = append(heavy, h[strings.LastIndexByte(h, '/')+1:])
				}
			}
		}
		with := "none of grpc, otel, go-containerregistry, client_golang"
		if len(heavy) > 0 {
			with = strings.Join(heavy, ", ")
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MB, %d modules (%s)", p, float64(fi.Size())/1e6, len(info.Deps), with))
		r.Values[p+"_bytes"] = float64(fi.Size())
		r.Values[p+"_modules"] = float64(len(info.Deps))
	}
	r.Value = strings.Join(parts, "; ")
	r.N = 1
	return r
}
