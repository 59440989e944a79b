// Command mabd-bench measures mabd against the tools it replaces, on this
// machine, and prints one markdown table (and writes the same figures as
// JSON). `make bench` builds and runs it; see bench/README.md for what each
// row measures and how to read it.
//
// Every comparison runs both sides alternately in one run (A, B, A, B, …),
// one pair per round, and reports the median of the per-round ratios A/B
// with their minimum and maximum, and the median of each side. Binfmt_misc
// work happens only in private binfmt_misc instances (testing/sandbox); the
// build rows use mabd's isolated builder, whose private table holds the
// arm64 handler BuildKit's RUN steps need: the host's table is never
// touched. Row 9 makes an ordinary user (and removes it) for a rootless
// daemon.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mabd/builder"
	"mabd/testing/fixtures"
)

// The bench runs the isolated builder's agent when its supervisor starts
// it.
func init() { builder.MaybeRunAgent() }

// config is what the flags say.
type config struct {
	root           string // repository root
	mabd           string // bin/mabd
	buildkitd      string // bin/buildkitd
	buildctl       string // bin/buildctl
	systemdBinfmt  string
	updateBinfmts  string // extracted from Debian's binfmt-support, never installed
	archutil       string // bench/archutil, built
	hello          string // bench/hello, built
	self           string // this program, re-executed as the helper
	out            string
	rounds         int // cheap rows
	buildRounds    int // warm builds
	coldRounds     int // cold builds
	flowRounds     int // the article's workflow
	fleetRounds    int // the fleet against one node (row 8)
	rootlessRounds int // rootless against the system daemon (row 9)
	readyStarts    int
	emuRuns        int
	idle           time.Duration
	statusPoll     time.Duration // how long the polling clients of row 6g run
	status1        int           // requests of the single client
	status100      int           // requests of each of the 100 clients
	only           map[string]bool
	quick          bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "helper" {
		os.Exit(helperMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	var c config
	var only string
	flag.StringVar(&c.root, "root", "", "repository root (default: found from the working directory)")
	flag.StringVar(&c.out, "out", "bench/results.json", "where to write the JSON results (relative to the repository root)")
	flag.IntVar(&c.rounds, "rounds", 11, "rounds of the cheap comparisons (registration, verification)")
	flag.IntVar(&c.buildRounds, "build-rounds", 7, "rounds of the warm-cache builds")
	flag.IntVar(&c.coldRounds, "cold-rounds", 5, "rounds of the cold-cache builds")
	flag.IntVar(&c.flowRounds, "flow-rounds", 5, "rounds of the article's workflow (row 5)")
	flag.IntVar(&c.fleetRounds, "fleet-rounds", 5, "rounds of the build through the fleet against one node (row 8)")
	flag.IntVar(&c.rootlessRounds, "rootless-rounds", 5, "rounds of the rootless build against the system daemon's (row 9)")
	flag.IntVar(&c.readyStarts, "ready-starts", 11, "daemon starts measured to READY=1")
	flag.DurationVar(&c.statusPoll, "status-poll", 10*time.Second, "how long 100 clients poll the status 10 times a second (row 6g)")
	flag.IntVar(&c.emuRuns, "emu-runs", 5, "runs of `mabd verify --bench` for the emulation slowdowns")
	flag.DurationVar(&c.idle, "idle", 60*time.Second, "how long the idle daemon is watched for RSS and CPU")
	flag.IntVar(&c.status1, "status-requests", 2000, "status requests of the single client")
	flag.IntVar(&c.status100, "status-requests-each", 50, "status requests of each of the 100 concurrent clients")
	flag.StringVar(&c.systemdBinfmt, "systemd-binfmt", "/lib/systemd/systemd-binfmt", "systemd-binfmt to compare with")
	flag.StringVar(&c.updateBinfmts, "update-binfmts", "", "update-binfmts extracted from Debian's binfmt-support (default: bench/.cache/binfmt-support/usr/sbin/update-binfmts)")
	flag.StringVar(&c.hello, "hello", "", "the Go hello-world of row 0 (default: bench/.cache/hello)")
	flag.StringVar(&c.archutil, "archutil", "", "the bench/archutil helper (default: bench/.cache/archutil-platforms)")
	flag.BoolVar(&c.quick, "quick", false, "a fast smoke run: 3 rounds, 1 round of each build row, 5 s idle")
	flag.StringVar(&only, "only", "", "comma-separated row groups to run (0-9; default all)")
	flag.Parse()

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		quick := map[string]func(){
			"rounds":               func() { c.rounds = 3 },
			"build-rounds":         func() { c.buildRounds = 1 },
			"cold-rounds":          func() { c.coldRounds = 1 },
			"flow-rounds":          func() { c.flowRounds = 1 },
			"fleet-rounds":         func() { c.fleetRounds = 1 },
			"rootless-rounds":      func() { c.rootlessRounds = 1 },
			"ready-starts":         func() { c.readyStarts = 2 },
			"emu-runs":             func() { c.emuRuns = 1 },
			"idle":                 func() { c.idle = 5 * time.Second },
			"status-requests":      func() { c.status1 = 200 },
			"status-requests-each": func() { c.status100 = 10 },
			"status-poll":          func() { c.statusPoll = 3 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if only != "" {
		c.only = map[string]bool{}
		for _, g := range strings.Split(only, ",") {
			c.only[strings.TrimSpace(g)] = true
		}
	}
	if err := c.resolve(); err != nil {
		fmt.Fprintln(os.Stderr, "mabd-bench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	b := &bench{cfg: c}
	defer b.cleanup()
	if err := b.prepare(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mabd-bench:", err)
		return 1
	}
	groups := []struct {
		id  string
		run func(context.Context) []Row
	}{
		{"0", b.startup},
		{"1", b.registration},
		{"2", b.idempotent},
		{"3", b.verification},
		{"4", b.builds},
		{"5", b.workflow},
		{"6", b.daemon},
		{"7", b.emulation},
		{"8", b.fleetRows},
		{"9", b.rootlessRow},
	}
	var rows []Row
	for _, g := range groups {
		if c.only != nil && !c.only[g.id] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		t := time.Now()
		b.logf("row %s …", g.id)
		rs := b.runGroup(ctx, g.id, g.run)
		b.logf("row %s done in %v", g.id, time.Since(t).Round(time.Millisecond))
		rows = append(rows, rs...)
	}
	b.releaseBuild()
	wall := time.Since(start)

	table := markdown(rows)
	fmt.Println()
	fmt.Print(table)
	fmt.Printf("\n%d rows in %v on %s; A/B < 1 means mabd is faster. JSON: %s\n", len(rows), wall.Round(time.Second), b.hostLine(), c.out)

	res := map[string]any{
		"started":      start.UTC().Format(time.RFC3339),
		"wall_seconds": wall.Seconds(),
		"host":         b.hostInfo(),
		"settings": map[string]any{
			"quick": c.quick, "rounds": c.rounds, "build_rounds": c.buildRounds, "cold_rounds": c.coldRounds,
			"flow_rounds": c.flowRounds, "fleet_rounds": c.fleetRounds, "rootless_rounds": c.rootlessRounds,
			"ready_starts": c.readyStarts, "emu_runs": c.emuRuns,
			"idle_seconds": c.idle.Seconds(), "status_requests": c.status1, "status_requests_each": c.status100,
		},
		"rows":  rows,
		"table": table,
	}
	out := c.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(c.root, out)
	}
	sanitize(rows)
	js, err := json.MarshalIndent(res, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(out), 0o755)
	}
	if err == nil {
		err = os.WriteFile(out, append(js, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mabd-bench:", err)
		return 1
	}
	if ctx.Err() != nil {
		return 130
	}
	return 0
}

// resolve fills in the default paths and checks that they exist.
func (c *config) resolve() error {
	if c.root == "" {
		r, err := fixtures.Root()
		if err != nil {
			return err
		}
		c.root = r
	}
	var err error
	if c.root, err = filepath.Abs(c.root); err != nil {
		return err
	}
	if c.self, err = os.Executable(); err != nil {
		return err
	}
	c.mabd = filepath.Join(c.root, "bin", "mabd")
	c.buildkitd = filepath.Join(c.root, "bin", "buildkitd")
	c.buildctl = filepath.Join(c.root, "bin", "buildctl")
	cache := filepath.Join(c.root, "bench", ".cache")
	if c.updateBinfmts == "" {
		c.updateBinfmts = filepath.Join(cache, "binfmt-support", "usr", "sbin", "update-binfmts")
	}
	if c.hello == "" {
		c.hello = filepath.Join(cache, "hello")
	}
	if c.archutil == "" {
		c.archutil = filepath.Join(cache, "archutil-platforms")
	}
	if _, err := os.Stat(c.mabd); err != nil {
		return fmt.Errorf("%v: run `make build` first", err)
	}
	return nil
}

// bench holds what the rows share.
type bench struct {
	cfg  config
	work string // temporary directory, removed at the end

	// Registration: the handlers `mabd install all` registers here.
	specCount  int
	confDir    string // binfmt.d files (systemd-binfmt's input)
	importDir  string // update-binfmts format files
	floorShell string // shell script of printf … > $BINFMT/register
	linesFile  string // the register lines, one per line

	build *buildEnv // rows 4, 5, 8 and 9

	cleanups []func()
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// runGroup runs one group of rows; a panic becomes an n/a row, so the
// other groups still run.
func (b *bench) runGroup(ctx context.Context, id string, run func(context.Context) []Row) (rows []Row) {
	defer func() {
		if p := recover(); p != nil {
			b.logf("row %s panicked: %v\n%s", id, p, debug.Stack())
			rows = append(rows, naRow(id, "row "+id, "", "", fmt.Sprintf("the bench panicked: %v", p)))
		}
	}()
	return run(ctx)
}

func (b *bench) cleanup() {
	b.releaseBuild()
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
}

func (b *bench) hostInfo() map[string]any {
	var uts unix.Utsname
	unix.Uname(&uts)
	v, _ := exec.Command(b.cfg.mabd, "version").Output()
	return map[string]any{
		"kernel":       unix.ByteSliceToString(uts.Release[:]),
		"machine":      unix.ByteSliceToString(uts.Machine[:]),
		"cpus":         runtime.NumCPU(),
		"go":           runtime.Version(),
		"mabd_version": strings.TrimSpace(string(v)),
	}
}

func (b *bench) hostLine() string {
	h := b.hostInfo()
	return fmt.Sprintf("Linux %v %v, %v CPUs", h["kernel"], h["machine"], h["cpus"])
}
