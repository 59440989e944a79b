package main

// Rows 4 and 5: builds with BuildKit. One buildkitd (builder.Supervisor,
// bin/buildkitd, private emulation of arm64 in its own binfmt_misc
// instance) on a temporary socket and a registry (Debian's
// docker-registry) on 127.0.0.1 holding a two-platform busybox base
// image. Rows 8 and 9 use them too.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"mabd/builder"
	"mabd/testing/registry"
)

const buildPlatforms = "linux/amd64,linux/arm64"

// buildEnv is what the build rows share; set up once, on first use.
type buildEnv struct {
	err     error
	dir     string
	sup     *builder.Supervisor
	addr    string // unix://…
	reg     string // 127.0.0.1:PORT
	stopReg func()
	base    string // REG/busybox:latest
	hello   string
}

// stateDir returns a new directory for BuildKit's state: under /var/tmp
// when /tmp is a tmpfs (overlayfs wants a real disk), like buildertest.Dir.
func stateDir() (string, error) {
	base := os.TempDir()
	var st unix.Statfs_t
	if unix.Statfs(base, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		base = "/var/tmp"
	}
	return os.MkdirTemp(base, "mabd-bench-bk-")
}

// removeState removes a BuildKit state directory unless something is still
// mounted below it.
func removeState(dir string) {
	if ms, _ := builder.MountsUnder(dir); len(ms) > 0 {
		fmt.Fprintf(os.Stderr, "mabd-bench: still mounted under %s, left in place: %v\n", dir, ms)
		return
	}
	os.RemoveAll(dir)
}

// setupBuild starts the registry and buildkitd and pushes the base image.
func (b *bench) setupBuild(ctx context.Context) *buildEnv {
	if b.build != nil {
		return b.build
	}
	e := &buildEnv{hello: filepath.Join(b.cfg.root, "examples", "hello")}
	b.build = e
	fail := func(err error) *buildEnv { e.err = err; return e }
	for _, p := range []string{b.cfg.buildkitd, b.cfg.buildctl} {
		if _, err := os.Stat(p); err != nil {
			return fail(fmt.Errorf("%v: run `make deps`", err))
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fail(fmt.Errorf("%v: install runc (make deps)", err))
	}
	arm64Busybox := filepath.Join(b.cfg.root, "fixtures", "busybox", "arm64", "bin", "busybox")
	for _, p := range []string{registry.HostBusybox, arm64Busybox} {
		if _, err := os.Stat(p); err != nil {
			return fail(fmt.Errorf("%v: run `make deps`", err))
		}
	}
	dir, err := stateDir()
	if err != nil {
		return fail(err)
	}
	e.dir = dir
	reg, stop, err := startRegistry(filepath.Join(dir, "registry"))
	if err != nil {
		return fail(err)
	}
	e.reg, e.stopReg = reg, stop
	idx, err := registry.BusyboxIndex(
		registry.Base{Platform: "linux/amd64", Busybox: registry.HostBusybox},
		registry.Base{Platform: "linux/arm64", Busybox: arm64Busybox})
	if err != nil {
		return fail(err)
	}
	e.base = reg + "/busybox:latest"
	if err := registry.PushIndex(e.base, idx); err != nil {
		return fail(fmt.Errorf("push %s: %w", e.base, err))
	}
	e.sup = builder.NewSupervisor(builder.Options{
		Binary:      b.cfg.buildkitd,
		Root:        filepath.Join(dir, "root"),
		Socket:      filepath.Join(dir, "bk.sock"),
		Platforms:   strings.Split(buildPlatforms, ","),
		KeepStorage: 4 << 30,
		StopTimeout: 20 * time.Second,
	})
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.sup.Start(sctx); err != nil {
		e.sup = nil
		return fail(fmt.Errorf("start buildkitd: %w", err))
	}
	e.addr = e.sup.Address()
	b.logf("buildkitd on %s, registry on %s, base %s", e.addr, reg, e.base)
	return e
}

// stopSupervisor stops *sup (what, in the log) within a minute, and
// forgets it.
func (b *bench) stopSupervisor(sup **builder.Supervisor, what string) {
	if *sup == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := (*sup).Stop(ctx); err != nil {
		b.logf("stop %s: %v", what, err)
	}
	*sup = nil
}

// stopBuilder stops buildkitd and the registry (the daemon rows run
// without them).
func (b *bench) stopBuilder() {
	e := b.build
	if e == nil {
		return
	}
	b.stopSupervisor(&e.sup, "buildkitd")
	if e.stopReg != nil {
		e.stopReg()
		e.stopReg = nil
	}
	if e.dir != "" {
		removeState(e.dir)
		e.dir = ""
	}
	if e.err == nil {
		e.err = errors.New("the builder was stopped")
	}
	// A later row starts them again.
	b.build = nil
}

// releaseBuild stops everything the build rows started.
func (b *bench) releaseBuild() { b.stopBuilder() }

// startRegistry runs docker-registry on a free 127.0.0.1 port, storage in
// dir; stop ends it.
func startRegistry(dir string) (addr string, stop func(), err error) {
	bin, err := registry.Find()
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		addr = l.Addr().String()
		l.Close()
		cfg := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfg, []byte(registry.Config(filepath.Join(dir, "storage"), addr)), 0o644); err != nil {
			return "", nil, err
		}
		out := &cappedBuffer{max: 16 << 10}
		cmd := exec.Command(bin, "serve", cfg)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop = func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		c := &http.Client{Timeout: time.Second}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			resp, err := c.Get("http://" + addr + "/v2/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return addr, stop, nil
				}
			}
			select {
			case <-done:
			default:
				continue
			}
			break
		}
		stop()
		if !strings.Contains(out.String(), "address already in use") {
			return "", nil, fmt.Errorf("docker-registry did not come up on %s: %s", addr, tail(out.String(), 500))
		}
	}
	return "", nil, errors.New("docker-registry: no free port")
}

// timed runs a command and returns its wall-clock time (from just before
// the fork to the end of wait) in ms; a failure carries its output.
func timed(ctx context.Context, name string, args ...string) (float64, string, error) {
	out := &cappedBuffer{max: 32 << 10}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	el := ms(time.Since(start))
	if err != nil {
		return el, out.String(), fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return el, out.String(), nil
}

func (b *bench) mabdBuildArgs(e *buildEnv, platforms string, extra ...string) []string {
	args := []string{"build", "--addr", e.addr, "--progress", "plain", "--platform", platforms, "--build-arg", "BASE=" + e.base}
	args = append(args, extra...)
	return append(args, e.hello)
}

func (b *bench) buildctlArgs(e *buildEnv, platforms string) []string {
	return []string{"--addr", e.addr, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
		"--local", "context=" + e.hello, "--local", "dockerfile=" + e.hello,
		"--opt", "platform=" + platforms, "--opt", "build-arg:BASE=" + e.base}
}

func (b *bench) prune(ctx context.Context, e *buildEnv) error {
	_, _, err := timed(ctx, b.cfg.buildctl, "--addr", e.addr, "prune", "--all")
	return err
}

// builds is row 4: one two-platform build of examples/hello, mabd's client
// against buildctl, same options, same buildkitd; warm cache, then cold.
func (b *bench) builds(ctx context.Context) []Row {
	titleW := "build examples/hello for " + buildPlatforms + ", warm cache (no export)"
	titleC := "build examples/hello for " + buildPlatforms + ", cold cache (`buildctl prune --all` before each run, not timed)"
	aName := "`mabd build --platform …`"
	bName := "`buildctl build --frontend dockerfile.v0 …`"
	e := b.setupBuild(ctx)
	if e.err != nil {
		why := firstLine(e.err)
		return []Row{naRow("4a", titleW, aName, bName, why), naRow("4b", titleC, aName, bName, why)}
	}
	mabdArgs := b.mabdBuildArgs(e, buildPlatforms)
	bkArgs := b.buildctlArgs(e, buildPlatforms)
	var rows []Row

	// Warm: one untimed run of each side first. The progress output is
	// checked: every warm run has CACHED steps, no cold run has any.
	var as, bs []float64
	warmUncached, coldCached := 0, 0
	err := func() error {
		for _, side := range [][]string{mabdArgs, bkArgs} {
			bin := b.cfg.mabd
			if side[0] == "--addr" {
				bin = b.cfg.buildctl
			}
			if _, _, err := timed(ctx, bin, side...); err != nil {
				return err
			}
		}
		for i := 0; i < b.cfg.buildRounds; i++ {
			a, aout, err := timed(ctx, b.cfg.mabd, mabdArgs...)
			if err != nil {
				return err
			}
			bb, bout, err := timed(ctx, b.cfg.buildctl, bkArgs...)
			if err != nil {
				return err
			}
			as, bs = append(as, a), append(bs, bb)
			if !strings.Contains(aout, "CACHED") || !strings.Contains(bout, "CACHED") {
				warmUncached++
			}
		}
		return nil
	}()
	if err != nil {
		rows = append(rows, naRow("4a", titleW, aName, bName, firstLine(err)))
	} else {
		r := compareRow("4a", titleW, aName, bName, as, bs)
		if warmUncached > 0 {
			r.Note = fmt.Sprintf("warning: %d warm rounds had no CACHED step", warmUncached)
		}
		rows = append(rows, r)
	}

	as, bs = nil, nil
	err = func() error {
		for i := 0; i < b.cfg.coldRounds; i++ {
			if err := b.prune(ctx, e); err != nil {
				return err
			}
			a, aout, err := timed(ctx, b.cfg.mabd, mabdArgs...)
			if err != nil {
				return err
			}
			if err := b.prune(ctx, e); err != nil {
				return err
			}
			bb, bout, err := timed(ctx, b.cfg.buildctl, bkArgs...)
			if err != nil {
				return err
			}
			as, bs = append(as, a), append(bs, bb)
			if strings.Contains(aout, "CACHED") || strings.Contains(bout, "CACHED") {
				coldCached++
			}
		}
		return nil
	}()
	if err != nil {
		rows = append(rows, naRow("4b", titleC, aName, bName, firstLine(err)))
	} else {
		r := compareRow("4b", titleC, aName, bName, as, bs)
		if coldCached > 0 {
			r.Note = fmt.Sprintf("warning: %d cold rounds had CACHED steps", coldCached)
		} else {
			r.Note = "every run pulled the base and ran both RUN steps (no CACHED)"
		}
		rows = append(rows, r)
	}
	return rows
}

// haveManifestCreate reports whether this mabd has `mabd manifest create`.
func (b *bench) haveManifestCreate() bool {
	out, err := exec.Command(b.cfg.mabd, "manifest", "create", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "create") && !strings.Contains(string(out), "unknown command")
}

// indexPlatforms returns the platforms of the image index ref names
// (attestation manifests, platform unknown/unknown, left out).
func indexPlatforms(ref string) ([]string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(r)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var ps []string
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue
		}
		p := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			p += "/" + m.Platform.Variant
		}
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps, nil
}

// workflow is row 5: the article's workflow (two single-platform builds
// pushed under per-architecture tags, then `mabd manifest create` joining
// them) against one two-platform `mabd build --push` of the same tag.
func (b *bench) workflow(ctx context.Context) []Row {
	title := "publish REG/demo:v1 for " + buildPlatforms + " (warm cache, push to 127.0.0.1)"
	aName := "article: 2× `mabd build --push` (demo:v1-amd64, demo:v1-arm64) + `mabd manifest create`"
	bName := "one `mabd build --platform linux/amd64,linux/arm64 --push`"
	if !b.haveManifestCreate() {
		return []Row{naRow("5", title, aName, bName, "mabd manifest create missing")}
	}
	e := b.setupBuild(ctx)
	if e.err != nil {
		return []Row{naRow("5", title, aName, bName, firstLine(e.err))}
	}
	target := e.reg + "/demo:v1"
	push := func(platform, ref string) []string {
		return b.mabdBuildArgs(e, platform, "-t", ref, "--push", "--insecure-registry", e.reg)
	}
	steps := [][]string{
		push("linux/amd64", target+"-amd64"),
		push("linux/arm64", target+"-arm64"),
		{"manifest", "create", target, target + "-amd64", target + "-arm64"},
	}
	one := push(buildPlatforms, target)
	stepNames := []string{"build_amd64_ms", "build_arm64_ms", "manifest_create_ms"}
	stepSamples := make([][]float64, len(steps))
	sideA := func() (float64, error) {
		total := 0.0
		for i, s := range steps {
			t, _, err := timed(ctx, b.cfg.mabd, s...)
			if err != nil {
				return 0, err
			}
			stepSamples[i] = append(stepSamples[i], t)
			total += t
		}
		return total, nil
	}
	sideB := func() (float64, error) {
		t, _, err := timed(ctx, b.cfg.mabd, one...)
		return t, err
	}
	want := strings.Split(buildPlatforms, ",")
	check := func(who string) error {
		ps, err := indexPlatforms(target)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", who, target, err)
		}
		if !slices.Equal(ps, want) {
			return fmt.Errorf("%s: %s has platforms %v, want %v", who, target, ps, want)
		}
		return nil
	}
	var as, bs []float64
	err := func() error {
		// One untimed run of each side: the registry then holds every blob.
		if _, err := sideA(); err != nil {
			return err
		}
		if err := check("2 builds + manifest create"); err != nil {
			return err
		}
		if _, err := sideB(); err != nil {
			return err
		}
		if err := check("one two-platform build"); err != nil {
			return err
		}
		for i := range stepSamples {
			stepSamples[i] = nil
		}
		for i := 0; i < b.cfg.flowRounds; i++ {
			a, err := sideA()
			if err != nil {
				return err
			}
			bb, err := sideB()
			if err != nil {
				return err
			}
			as, bs = append(as, a), append(bs, bb)
		}
		return nil
	}()
	if err != nil {
		return []Row{naRow("5", title, aName, bName, firstLine(err))}
	}
	r := compareRow("5", title, aName, bName, as, bs)
	r.Values = map[string]float64{}
	var parts []string
	for i, n := range stepNames {
		m := median(stepSamples[i])
		r.Values[n] = m
		parts = append(parts, fmtMS(m))
	}
	r.Note = "A's steps (medians): " + strings.Join(parts, " + ") + "; both results checked to be a linux/amd64+linux/arm64 index"
	return []Row{r}
}
