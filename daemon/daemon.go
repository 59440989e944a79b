package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/daemon/api"
	"mabd/emulator"
	"mabd/host"
	"mabd/systemd"
)

// Daemon is `mabd daemon`: it makes the host's binfmt_misc table match
// the configuration at start, proves it works, reports ready, and keeps it
// so while tools and people change the table under it.
type Daemon struct {
	log        *zap.Logger
	notify     *systemd.Notifier
	metrics    *metrics
	started    time.Time
	cfgPath    string
	explicit   bool
	overrideFn func(*Config)

	// reconcileMu serialises passes over the table (loop, API, reload).
	reconcileMu sync.Mutex
	// verifyMu serialises verifications.
	verifyMu sync.Mutex

	mu         sync.Mutex // guards the fields below
	cfg        Config
	specs      []binfmt.Spec
	planNotes  []string
	repairs    int64
	reconciles int64
	lastPass   time.Time
	served     []string
	conflicts  []string
	failures   []string
	lastVerify *host.Verification
	activated  bool
	// choices are the emulators chosen among several candidates (or
	// pinned) for the handlers in specs, by QEMU name.
	choices map[string]host.Choice
	// switches counts the handlers moved to another candidate.
	switches int64

	// ready is closed once the daemon has registered, verified and
	// started BuildKit: the control API holds requests until then, so a
	// socket-activated client gets the answer of a started daemon.
	ready chan struct{}
	// reverifying is set while a background verification runs, so that
	// the loop starts no second one.
	reverifying atomic.Bool

	// bk supervises buildkitd when [buildkit] enabled; nil otherwise.
	bk *builder.Supervisor
	// fleet is the BuildKit nodes, the builder's and [fleet.nodes].
	fleet fleetWatch

	// status is the host status that GET /v1/status reuses for a
	// moment; reconcile and verify drop it when they change something.
	status statusCache
	// body is GET /v1/status's encoded answer.
	body bodyCache
}

// hostStatus returns the host's status, with the candidate emulators of
// the architectures in only, inspected at most once per statusTTL (see
// statusCache).
func (d *Daemon) hostStatus(ctx context.Context, cfg Config, only []string) (*host.Status, error) {
	return d.status.get(ctx, func(ctx context.Context) (*host.Status, error) {
		return d.host(cfg).Status(ctx, host.StatusOptions{Only: only, Verification: d.lastVerification(), Candidates: only, Emulators: cfg.Emulators})
	})
}

// dropStatus makes the next GET /v1/status inspect the host again.
func (d *Daemon) dropStatus() { d.status.drop() }

// Options are what the command line gives the daemon besides the config.
type Options struct {
	// ConfigPath is the configuration file; Explicit says the user named
	// it (then it must exist).
	ConfigPath string
	Explicit   bool
	// Override changes the loaded configuration (command-line flags); it
	// is applied at start and at every reload.
	Override func(*Config)
}

// New loads the configuration and returns a daemon ready to Run. A bad
// configuration is an *host.InputError naming the file, line and key.
func New(opt Options) (*Daemon, error) {
	cfg, err := loadConfig(opt)
	if err != nil {
		return nil, err
	}
	log, err := systemd.NewLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, &host.InputError{Err: err}
	}
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", zap.String("warning", w))
	}
	d := &Daemon{log: log, notify: systemd.NewNotifier(), started: time.Now(), cfgPath: opt.ConfigPath, explicit: opt.Explicit, overrideFn: opt.Override, cfg: cfg, ready: make(chan struct{})}
	d.metrics = newMetrics(d)
	return d, nil
}

func loadConfig(opt Options) (Config, error) {
	cfg, err := LoadConfig(opt.ConfigPath, opt.Explicit)
	if err != nil {
		return Config{}, &host.InputError{Err: err}
	}
	if opt.Override != nil {
		opt.Override(&cfg)
		if err := cfg.Validate(); err != nil {
			return Config{}, &host.InputError{Err: err}
		}
	}
	return cfg, nil
}

// Config returns the configuration the daemon runs on.
func (d *Daemon) Config() Config { return d.config() }

func (d *Daemon) config() Config { return d.now().cfg }

// view is what the daemon works from at one moment: the configuration, the
// handlers it keeps and the last verification.
type view struct {
	cfg   Config
	specs []binfmt.Spec
	last  *host.Verification
}

// now returns the daemon's view, read under its lock once.
func (d *Daemon) now() view {
	d.mu.Lock()
	defer d.mu.Unlock()
	return view{cfg: d.cfg, specs: d.specs, last: d.lastVerify}
}

func (d *Daemon) uptime() time.Duration { return time.Since(d.started) }

func (d *Daemon) host(cfg Config) host.Host {
	return host.Host{Mount: binfmt.Mount{Dir: cfg.BinfmtMount}, EmulatorDirs: cfg.EmulatorDirs, PersistDir: cfg.PersistDir, StateDir: cfg.StateDir}
}

// plan resolves the configuration to the handler specs to keep registered
// and the emulators chosen among several candidates (by QEMU name). The
// candidates at the paths in retry are tried again rather than judged by
// their remembered trials.
func (d *Daemon) plan(ctx context.Context, cfg Config, retry ...string) ([]binfmt.Spec, []string, map[string]host.Choice, error) {
	if len(cfg.Architectures) == 0 {
		return nil, nil, nil, nil // the host's table gets no handler
	}
	var specs []binfmt.Spec
	var res *host.InstallResult
	var err error
	d.pinging(func() {
		specs, res, err = d.host(cfg).Plan(ctx, installOptions(cfg, cfg.Architectures, cfg.Flags, retry))
	})
	if err != nil {
		return nil, nil, nil, err
	}
	var notes []string
	for _, n := range res.Refused {
		notes = append(notes, "qemu-"+n.Arch+": refused: "+n.Reason)
	}
	for _, w := range res.Warnings {
		d.log.Warn(w)
	}
	choices := map[string]host.Choice{}
	for _, c := range res.Choices {
		choices[c.Arch] = c
	}
	return specs, notes, choices, nil
}

// installOptions are the options of the daemon's plans: the emulator
// chosen as the configuration says, each trial bounded by [verify]
// timeout.
func installOptions(cfg Config, arches []string, flags string, retry []string) host.InstallOptions {
	return host.InstallOptions{Arches: arches, Flags: flags, Emulators: cfg.Emulators, Choice: cfg.Emulator, Retry: retry,
		Trial: host.TrialOptions{ProbeTimeout: cfg.Verify.Timeout.Duration}}
}

// pinging runs f and pings systemd's watchdog meanwhile: a plan tries
// the candidate emulators it does not know yet (seconds each, every trial
// bounded by its own deadline), which can take longer than WatchdogSec
// on a first start or a reload.
func (d *Daemon) pinging(f func()) {
	iv, ok := systemd.WatchdogInterval()
	if !ok {
		f()
		return
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_, _ = d.notify.Watchdog()
			}
		}
	}()
	f()
	close(done)
}

// logChoices logs the emulators chosen among several candidates.
func (d *Daemon) logChoices(choices map[string]host.Choice) {
	for _, a := range slices.Sorted(maps.Keys(choices)) {
		c := choices[a]
		d.log.Info("emulator chosen", zap.String("handler", "qemu-"+a), zap.String("emulator", c.Path), zap.String("why", c.Reason))
	}
}

// Run runs the daemon until ctx ends or SIGTERM/SIGINT: ensure binfmt_misc
// is mounted, register per the configuration, verify, serve the control
// API, report READY=1, then reconcile every interval, verify every verify
// interval and after repairs, reload on SIGHUP. It returns nil after a
// clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg := d.config()
	d.log.Info("starting", zap.String("config", d.cfgPath), zap.String("binfmt_mount", cfg.BinfmtMount), zap.Int("pid", os.Getpid()), zap.Bool("rootless", api.Rootless()))
	if api.Rootless() {
		// An ordinary user's daemon: the host's table is root's; its
		// builder has a table of its own.
		if err := checkRootless(cfg); err != nil {
			return err
		}
		if _, err := d.builderHandlers(ctx, cfg); err != nil {
			return &RootlessError{Err: err} // an emulator it may not use: before anything is made
		}
		if len(cfg.Architectures) > 0 {
			d.log.Warn("rootless: architectures (the host's binfmt_misc table) is root's business and ignored; the builder emulates [buildkit] architectures in a table of its own")
		}
	} else {
		// Only a daemon with handlers to keep mounts binfmt_misc: one
		// that builds alone (architectures = []) leaves the host's as it
		// found it.
		if len(cfg.Architectures) > 0 {
			mounted, err := binfmt.EnsureMounted(cfg.BinfmtMount)
			if err != nil {
				return fmt.Errorf("ensure binfmt_misc is mounted: %w", err)
			}
			if mounted {
				d.log.Info("mounted binfmt_misc", zap.String("dir", cfg.BinfmtMount))
			}
		}
		specs, notes, choices, err := d.plan(ctx, cfg)
		if err != nil {
			return err
		}
		d.logChoices(choices)
		d.mu.Lock()
		d.specs, d.planNotes, d.choices = specs, notes, choices
		d.mu.Unlock()
		d.reconcile(false)
		d.persist(cfg, specs)
	}

	listeners, err := d.listen(cfg)
	if err != nil {
		return err
	}
	serveCtx, stopServing := context.WithCancel(context.Background())
	var served sync.WaitGroup
	h := d.handler()
	for _, l := range listeners {
		lh := h
		if _, ok := l.(metricsOnly); ok {
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", d.metricsHandler())
			lh = mux
		}
		served.Go(func() {
			if err := d.serve(serveCtx, l, lh); err != nil {
				d.log.Error("control API stopped", zap.String("addr", l.Addr().String()), zap.Error(err))
			}
		})
	}
	defer func() {
		stopServing()
		served.Wait()
		if !d.activated {
			os.Remove(cfg.Control.Socket)
		}
	}()

	v, err := d.VerifyNow(ctx)
	if err != nil {
		d.log.Error("verification failed to run", zap.Error(err))
	} else if d.switchEmulators(ctx, v) {
		if v2, err := d.VerifyNow(ctx); err == nil {
			v = v2
		}
	}
	if cfg.BuildKit.Enabled {
		if err := d.startBuildKit(ctx, cfg, verifiedPlatforms(v)); err != nil {
			return err
		}
		defer d.stopBuildKit()
	}
	d.setFleet(cfg)
	if fi := d.Fleet(ctx, false); fi.Remote() {
		d.checkFleet(ctx)
	}
	summary := d.summary(v)
	close(d.ready)
	if _, err := d.notify.Ready(summary); err != nil {
		d.log.Warn("sd_notify READY", zap.Error(err))
	}
	d.log.Info("ready", zap.String("status", summary))

	err = d.loop(ctx, hup)

	_, _ = d.notify.Stopping()
	d.log.Info("stopping")
	cfg = d.config()
	if cfg.UnregisterOnStop {
		removed, rerr := host.RemoveOurs(binfmt.Mount{Dir: cfg.BinfmtMount}, d.now().specs)
		d.log.Info("unregistered handlers on stop", zap.Strings("removed", removed), zap.Error(rerr))
	}
	return err
}

// loop is the daemon's work loop. The watchdog is pinged from here, so a
// stuck loop stops the pings and systemd restarts the daemon.
func (d *Daemon) loop(ctx context.Context, hup <-chan os.Signal) error {
	cfg := d.config()
	tick := time.NewTicker(reconcilePeriod(cfg.ReconcileInterval.Duration))
	defer tick.Stop()
	var wdC <-chan time.Time
	if iv, ok := systemd.WatchdogInterval(); ok {
		wd := time.NewTicker(iv)
		defer wd.Stop()
		wdC = wd.C
		_, _ = d.notify.Watchdog()
	}
	var verifyC <-chan time.Time // nil (never ready) when verify interval is 0
	var vt *time.Ticker
	resetVerify := func(iv time.Duration) {
		if vt != nil {
			vt.Stop()
			vt = nil
		}
		verifyC = nil
		if iv > 0 {
			vt = time.NewTicker(iv)
			verifyC = vt.C
		}
	}
	resetVerify(cfg.Verify.Interval.Duration)
	defer func() { resetVerify(0) }()
	fleetTick := time.NewTicker(max(cfg.Fleet.CheckInterval.Duration, MinFleetCheckInterval))
	defer fleetTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wdC:
			_, _ = d.notify.Watchdog()
		case <-tick.C:
			if api.Rootless() {
				continue // the host's table is root's
			}
			if r := d.reconcile(true); len(r.Repairs) > 0 || d.verifiedOther() {
				d.reverifyAsync(ctx)
			}
		case <-verifyC:
			d.reverifyAsync(ctx)
		case <-fleetTick.C:
			if d.Fleet(ctx, false).Remote() {
				d.checkFleetAsync(ctx)
			}
		case <-hup:
			d.reload(ctx)
			cfg = d.config()
			tick.Reset(reconcilePeriod(cfg.ReconcileInterval.Duration))
			resetVerify(cfg.Verify.Interval.Duration)
			fleetTick.Reset(max(cfg.Fleet.CheckInterval.Duration, MinFleetCheckInterval))
		}
	}
}

// reconcilePeriod is how often the loop runs a pass: a little under the
// interval (by a tenth, at most 100 ms), so that a change is repaired
// within reconcile_interval of happening, pass time included.
func reconcilePeriod(interval time.Duration) time.Duration {
	return interval - min(interval/10, 100*time.Millisecond)
}

// reverifyAsync verifies in the background unless a background
// verification runs already.
func (d *Daemon) reverifyAsync(ctx context.Context) {
	if !d.reverifying.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer d.reverifying.Store(false)
		d.reverify(ctx)
	}()
}

// verifiedOther reports whether a configured handler is not the entry the
// last verification probed (another tool re-registered it, say after
// `systemctl restart systemd-binfmt`): its result then says nothing, and
// it is verified again.
func (d *Daemon) verifiedOther() bool {
	v := d.now()
	if v.last == nil {
		return false
	}
	return d.host(v.cfg).Stale(v.last, v.specs)
}

func (d *Daemon) reverify(ctx context.Context) {
	v, err := d.VerifyNow(ctx)
	if err != nil {
		return
	}
	if d.switchEmulators(ctx, v) {
		if v, err = d.VerifyNow(ctx); err != nil {
			return
		}
	}
	_, _ = d.notify.Status(d.summary(v))
	if bk := d.buildkit(); bk != nil && bk.Status().Emulation == builder.EmulationHost {
		// The worker advertises what is verified now (restarted when no
		// build runs; nothing happens when the set is the same). A
		// private builder verifies its own handlers.
		if err := bk.SetPlatforms(ctx, verifiedPlatforms(v)); err != nil && ctx.Err() == nil {
			d.log.Error("update BuildKit's platforms", zap.Error(err))
		}
	}
}

// verifiedPlatforms are the OCI platforms whose verification passed.
func verifiedPlatforms(v *host.Verification) []string {
	var ps []string
	if v == nil {
		return ps
	}
	for _, r := range v.Results {
		if r.State != emulator.StateFailed && r.Platform != "" {
			ps = append(ps, r.Platform)
		}
	}
	sort.Strings(ps)
	return ps
}

// startBuildKit starts buildkitd under supervision with the verified
// platforms and waits until it answers; READY=1 waits for it.
// builderHandlers plans the handlers of the builder's private binfmt_misc
// instance ([buildkit] architectures): the host's planning, always with F
// (the namespace opens the emulators when it registers them) and P when
// the emulator honours it.
func (d *Daemon) builderHandlers(ctx context.Context, cfg Config) ([]binfmt.Spec, error) {
	if cfg.BuildKit.Emulation != builder.EmulationPrivate || len(cfg.BuildKit.Architectures) == 0 {
		return nil, nil
	}
	var specs []binfmt.Spec
	var res *host.InstallResult
	var err error
	d.pinging(func() {
		specs, res, err = d.host(cfg).Plan(ctx, installOptions(cfg, cfg.BuildKit.Architectures, "", nil))
	})
	if err != nil {
		return nil, fmt.Errorf("[buildkit] architectures: %w", err)
	}
	for _, n := range res.Refused {
		d.log.Warn("builder: refused an emulator", zap.String("qemu_arch", n.Arch), zap.String("why", n.Reason))
	}
	return specs, nil
}

func (d *Daemon) startBuildKit(ctx context.Context, cfg Config, platforms []string) error {
	bin, err := buildkitdBinary(cfg.BuildKit.Binary)
	if err != nil {
		return err
	}
	handlers, err := d.builderHandlers(ctx, cfg)
	if err != nil {
		return err
	}
	bk := builder.NewSupervisor(builder.Options{
		Binary:         bin,
		Root:           cfg.BuildKit.Root,
		Socket:         cfg.BuildKit.Socket,
		SocketMode:     0o660,
		SocketGroup:    cfg.BuildKit.SocketGroup,
		Emulation:      cfg.BuildKit.Emulation,
		Handlers:       handlers,
		ProbeTimeout:   cfg.Verify.Timeout.Duration,
		VerifyInterval: cfg.Verify.Interval.Duration,
		Platforms:      platforms,
		KeepStorage:    cfg.BuildKit.KeepStorageBytes(),
		TCPAddress:     cfg.BuildKit.TCPAddress,
		TLSCert:        cfg.BuildKit.TLSCert,
		TLSKey:         cfg.BuildKit.TLSKey,
		TLSCA:          cfg.BuildKit.TLSCA,
		StopTimeout:    cfg.BuildKit.StopTimeout.Duration,
		Logger:         d.log.Named("buildkit"),
	})
	if err := bk.Start(ctx); err != nil {
		var be *builder.BinaryError
		if errors.As(err, &be) && cfg.BuildKit.Binary != "" {
			return fmt.Errorf("start BuildKit: %w: check [buildkit] binary", err)
		}
		return fmt.Errorf("start BuildKit: %w", err)
	}
	d.mu.Lock()
	d.bk = bk
	d.mu.Unlock()
	st := bk.Status()
	d.log.Info("BuildKit ready", zap.String("socket", st.Socket), zap.Int("pid", st.PID), zap.String("version", st.Version), zap.Strings("platforms", st.Platforms))
	return nil
}

func (d *Daemon) buildkit() *builder.Supervisor {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bk
}

func (d *Daemon) stopBuildKit() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.buildkit().Stop(ctx); err != nil {
		d.log.Error("stop BuildKit", zap.Error(err))
	}
}

// packagedBuildKit is where the Debian package installs buildkitd.
const packagedBuildKit = "/usr/lib/mabd/buildkitd"

// buildkitdBinary finds buildkitd: the configured path, else next to the
// mabd executable, else where the Debian package puts it (an ordinary
// user's configuration does not name it), else in PATH.
func buildkitdBinary(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	var near string
	if exe, err := os.Executable(); err == nil {
		near = filepath.Join(filepath.Dir(exe), "buildkitd")
	}
	for _, p := range []string{near, packagedBuildKit} {
		if _, err := os.Stat(p); p != "" && err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("buildkitd")
	if err != nil {
		return "", fmt.Errorf("buildkitd not found next to mabd or in PATH: set [buildkit] binary to its path (the Debian package installs /usr/lib/mabd/buildkitd; a source checkout builds bin/buildkitd with make deps), or run without BuildKit: [buildkit] enabled = false")
	}
	return p, nil
}

// reconcile runs one pass, logs what it changed and, when count, counts
// the changes as repairs (at start and after a reload they are the
// configuration taking effect, not repairs). A binfmt_misc unmounted under
// the daemon is mounted again (on the now empty directory). A conflict or
// failure is logged when it appears, not at every pass.
func (d *Daemon) reconcile(count bool) host.Reconciled {
	d.reconcileMu.Lock()
	defer d.reconcileMu.Unlock()
	v := d.now()
	cfg, specs, last := v.cfg, v.specs, v.last
	var remount []host.Repair
	var mountErr error
	var r host.Reconciled
	if len(specs) > 0 { // with none to keep, binfmt_misc is left as it is
		var mounted bool
		if mounted, mountErr = binfmt.EnsureMounted(cfg.BinfmtMount); mounted {
			remount = append(remount, host.Repair{Name: cfg.BinfmtMount, Action: "mounted", Why: "binfmt_misc was not mounted there (unmounting it destroyed its entries)"})
		}
		r = d.host(cfg).Reconcile(specs, host.Policy(cfg.Conflict), last)
	}
	r.Repairs = append(remount, r.Repairs...)
	if mountErr != nil {
		r.Failures = append([]string{"mount binfmt_misc: " + mountErr.Error()}, r.Failures...)
	}
	for _, rep := range r.Repairs {
		if !count {
			d.log.Info("handler "+rep.Action, zap.String("handler", rep.Name), zap.String("why", rep.Why))
			continue
		}
		d.metrics.repairs.WithLabelValues(rep.Action).Inc()
		d.log.Warn("repaired handler", zap.String("handler", rep.Name), zap.String("action", rep.Action), zap.String("why", rep.Why))
	}
	d.mu.Lock()
	if count {
		d.repairs += int64(len(r.Repairs))
	}
	d.reconciles++
	d.lastPass = time.Now()
	newConflicts := !slices.Equal(d.conflicts, r.Conflicts)
	newFailures := !slices.Equal(d.failures, r.Failures)
	newServed := !slices.Equal(d.served, r.Served)
	d.served, d.conflicts, d.failures = r.Served, r.Conflicts, r.Failures
	d.mu.Unlock()
	d.metrics.reconciles.Inc()
	d.metrics.conflicts.Set(float64(len(r.Conflicts)))
	d.metrics.served.Set(float64(len(r.Served)))
	if len(r.Repairs) > 0 || newConflicts || newFailures || newServed {
		d.dropStatus()
	}
	if newServed {
		for _, s := range r.Served {
			d.log.Info("served by another tool", zap.String("detail", s))
		}
	}
	if newConflicts {
		for _, c := range r.Conflicts {
			d.log.Warn("conflict", zap.String("detail", c))
		}
	}
	if newFailures {
		for _, f := range r.Failures {
			d.log.Error("reconcile failed", zap.String("detail", f))
		}
	}
	return r
}

// ReconcileNow runs a reconcile pass on request (POST /v1/reconcile).
func (d *Daemon) ReconcileNow(ctx context.Context) (host.Reconciled, error) {
	r := d.reconcile(true)
	if len(r.Repairs) > 0 {
		d.reverifyAsync(context.WithoutCancel(ctx))
	}
	return r, nil
}

// VerifyNow verifies the configured architectures and the host's own, saves
// and returns the result.
func (d *Daemon) VerifyNow(ctx context.Context) (*host.Verification, error) {
	d.verifyMu.Lock()
	defer d.verifyMu.Unlock()
	if api.Rootless() {
		// Nothing of the host's to verify (the probes chroot, which an
		// ordinary user may not); the builder's agent verifies its
		// private table inside its namespace.
		v := &host.Verification{At: time.Now().UTC()}
		d.mu.Lock()
		d.lastVerify = v
		d.mu.Unlock()
		return v, nil
	}
	v0 := d.now()
	cfg, specs := v0.cfg, v0.specs
	var names []string
	for _, s := range specs {
		a, ok := binfmt.ArchByName(s.Name)
		if ok && emulator.CanProbe(a.Name) {
			names = append(names, a.Name)
		}
	}
	names = append(names, emulator.Native()...)
	v, err := d.host(cfg).Verify(ctx, host.VerifyOptions{Arches: names, Rootfs: cfg.Verify.Rootfs, Timeout: cfg.Verify.Timeout.Duration})
	if v != nil {
		for _, w := range v.Warnings {
			d.log.Warn("verification", zap.String("warning", w))
		}
		d.mu.Lock()
		d.lastVerify = v
		d.mu.Unlock()
		d.dropStatus()
		d.metrics.observeVerification(v)
		for _, r := range v.Failed() {
			{
				d.log.Warn("verification failed", zap.String("platform", r.Platform), zap.String("qemu_arch", r.QEMUArch), zap.String("reason", r.Reason), zap.String("fix", daemonFix(r)))
			}
		}
	}
	return v, err
}

// summary is the one-line STATUS= for systemd: how many platforms work,
// and which fail and why.
func (d *Daemon) summary(v *host.Verification) string {
	if v == nil {
		return "degraded: verification did not run"
	}
	failed := v.Failed()
	s := fmt.Sprintf("%d platforms ok, %d failing", len(v.Results)-len(failed), len(failed))
	if api.Rootless() {
		s = "rootless"
	}
	if len(failed) > 0 {
		var which []string
		for _, r := range failed {
			reason, _, _ := strings.Cut(r.Reason, ":")
			which = append(which, platformOrName(r)+" ("+reason+")")
		}
		s += ": " + strings.Join(which, ", ")
	}
	d.mu.Lock()
	conflicts := d.conflicts
	served := len(d.served)
	d.mu.Unlock()
	if len(conflicts) > 0 {
		var names []string
		for _, c := range conflicts {
			n, _, _ := strings.Cut(c, ":")
			names = append(names, n)
		}
		s += fmt.Sprintf(", %d conflicts: %s", len(conflicts), strings.Join(names, ", "))
	}
	if served > 0 {
		s += fmt.Sprintf(" (%d served by other tools' entries)", served)
	}
	degraded := len(failed) > 0 || len(conflicts) > 0
	if bk := d.buildkit(); bk != nil {
		if bs := bk.Status(); bs.Emulation == builder.EmulationPrivate {
			ok, bad := 0, 0
			for _, h := range bs.Private {
				if h.State == emulator.StateFailed {
					bad++
				} else {
					ok++
				}
			}
			s += fmt.Sprintf("; builder: %d platforms verified in its private namespace", ok)
			if bad > 0 {
				s += fmt.Sprintf(", %d failing", bad)
				degraded = true
			}
		}
	}
	if fi := d.Fleet(context.Background(), false); fi.Remote() {
		up := 0
		for _, st := range fi.States {
			if st.Up {
				up++
			}
		}
		s += fmt.Sprintf("; fleet: %d/%d nodes up", up, len(fi.States))
		degraded = degraded || len(fleetProblems(fi)) > 0
	}
	if degraded {
		s = "degraded: " + s
	}
	return s
}

// platformOrName names a verified architecture by its platform, or its
// QEMU name when it has none.
func platformOrName(r host.VerifyResult) string {
	if r.Platform != "" {
		return r.Platform
	}
	return r.QEMUArch
}

// reload re-reads the configuration (SIGHUP) and applies only the
// difference. A broken configuration keeps the old one running.
func (d *Daemon) reload(ctx context.Context) {
	_, _ = d.notify.Reloading()
	defer func() {
		v := d.lastVerification()
		_, _ = d.notify.Ready(d.summary(v))
	}()
	old := d.config()
	cfg, err := loadConfig(Options{ConfigPath: d.cfgPath, Explicit: d.explicit, Override: d.override})
	if err != nil {
		d.log.Error("reload: keeping the running configuration", zap.Error(err))
		return
	}
	if cfg.BinfmtMount != old.BinfmtMount || cfg.Control != old.Control {
		d.log.Warn("reload: binfmt_mount and [control] apply at the next start")
		cfg.BinfmtMount, cfg.Control = old.BinfmtMount, old.Control
	}
	if cfg.BuildKit.Emulation != old.BuildKit.Emulation || cfg.BuildKit.Enabled != old.BuildKit.Enabled {
		d.log.Warn("reload: [buildkit] enabled and emulation apply at the next start")
		cfg.BuildKit.Emulation, cfg.BuildKit.Enabled = old.BuildKit.Emulation, old.BuildKit.Enabled
	}
	if bk := d.buildkit(); bk != nil && cfg.BuildKit.Emulation == builder.EmulationPrivate {
		handlers, err := d.builderHandlers(ctx, cfg)
		if err != nil {
			d.log.Error("reload: keeping the running configuration", zap.Error(err))
			return
		}
		// The builder moves to the new handlers once no build runs.
		go func() {
			if err := bk.SetHandlers(ctx, handlers); err != nil && ctx.Err() == nil {
				d.log.Error("reload: the builder's private handlers", zap.Error(err))
			}
		}()
	}
	specs, notes, choices, err := d.plan(ctx, cfg)
	if err != nil {
		d.log.Error("reload: keeping the running configuration", zap.Error(err))
		return
	}
	d.logChoices(choices)
	d.mu.Lock()
	oldSpecs := d.specs
	d.cfg, d.specs, d.planNotes, d.choices = cfg, specs, notes, choices
	d.mu.Unlock()
	keep := map[string]bool{}
	for _, s := range specs {
		keep[s.Name] = true
	}
	var gone []binfmt.Spec
	for _, s := range oldSpecs {
		if !keep[s.Name] {
			gone = append(gone, s)
		}
	}
	removed, err := host.RemoveOurs(binfmt.Mount{Dir: cfg.BinfmtMount}, gone)
	if err != nil {
		d.log.Error("reload: remove handlers no longer configured", zap.Error(err))
	}
	r := d.reconcile(false)
	d.persist(cfg, specs)
	d.setFleet(cfg)
	if d.Fleet(ctx, false).Remote() {
		d.checkFleetAsync(ctx)
	}
	d.log.Info("reloaded", zap.Int("handlers", len(specs)), zap.Strings("removed", removed), zap.Int("changed", len(r.Repairs)))
	if len(removed) > 0 || len(r.Repairs) > 0 {
		d.reverifyAsync(ctx)
	}
}

// override applies the command-line flags again at reload.
func (d *Daemon) override(c *Config) {
	if d.overrideFn != nil {
		d.overrideFn(c)
	}
}

func (d *Daemon) lastVerification() *host.Verification { return d.now().last }

func (d *Daemon) persist(cfg Config, specs []binfmt.Spec) {
	if !cfg.Persist {
		return
	}
	for _, s := range specs {
		if _, err := binfmt.Persist(cfg.PersistDir, s); err != nil {
			d.log.Error("persist", zap.String("handler", s.Name), zap.Error(err))
		}
	}
}

// listen returns the control API's listeners: the sockets systemd passed
// (socket activation), or the configured unix socket, plus the metrics
// address if one is configured.
func (d *Daemon) listen(cfg Config) ([]net.Listener, error) {
	ls, err := systemd.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	if len(ls) > 0 {
		d.activated = true
		d.log.Info("control API on sockets passed by systemd", zap.Int("count", len(ls)))
	} else {
		l, err := systemd.UnixListener(cfg.Control.Socket, os.FileMode(cfg.Control.Mode), cfg.Control.Group)
		if err != nil {
			return nil, err
		}
		d.log.Info("control API", zap.String("socket", cfg.Control.Socket))
		ls = append(ls, l)
	}
	if cfg.Metrics.Address != "" {
		l, err := net.Listen("tcp", cfg.Metrics.Address)
		if err != nil {
			for _, x := range ls {
				x.Close()
			}
			return nil, fmt.Errorf("metrics address: %w", err)
		}
		d.log.Info("metrics", zap.String("address", l.Addr().String()))
		ls = append(ls, metricsOnly{l})
	}
	return ls, nil
}

// metricsOnly marks the TCP listener that serves only /metrics.
type metricsOnly struct{ net.Listener }

// host.Status returns the host's status as the daemon sees it, with health
// counting only the configured architectures.
func (d *Daemon) Status(ctx context.Context) (*api.DaemonStatus, error) {
	cfg := d.config()
	d.mu.Lock()
	specs := d.specs
	info := api.DaemonInfo{PID: os.Getpid(), StartedAt: d.started, UptimeSeconds: d.uptime().Seconds(), Config: d.cfgPath,
		Repairs: d.repairs, Switches: d.switches, Reconciles: d.reconciles, LastReconcile: d.lastPass,
		Served: d.served, Conflicts: d.conflicts, Failures: d.failures, Notes: d.planNotes, LastVerification: d.lastVerify}
	d.mu.Unlock()
	only := make([]string, 0, len(specs))
	for _, s := range specs {
		only = append(only, strings.TrimPrefix(s.Name, "qemu-"))
	}
	if len(only) == 0 {
		only = emulator.Native()
	}
	st, err := d.hostStatus(ctx, cfg, only)
	if err != nil {
		return nil, err
	}
	st.Source = "daemon"
	if api.Rootless() {
		// The host's table is root's: shown, not counted.
		st.Source, st.Health, st.Problems = "daemon (rootless)", "healthy", nil
	}
	if bk := d.buildkit(); bk != nil {
		bs := bk.Status()
		info.BuildKit = &bs
		if !bs.Running {
			st.Health = "degraded"
			st.Problems = append(st.Problems, "buildkit: down ("+bs.LastError+"); the daemon restarts it")
		}
		for _, h := range bs.Private {
			if h.State == emulator.StateFailed {
				st.Health = "degraded"
				st.Problems = append(st.Problems, fmt.Sprintf("buildkit: %s (%s) failed verification in the builder's private namespace, so the worker goes without it: %s", h.Name, h.Platform, h.Reason))
			}
		}
	}
	if fi := d.Fleet(ctx, false); fi.Remote() {
		info.Fleet = fi
		if ps := fleetProblems(fi); len(ps) > 0 {
			st.Health = "degraded"
			st.Problems = append(st.Problems, ps...)
		}
	}
	return &api.DaemonStatus{Status: *st, Daemon: info}, nil
}

// switchEmulators moves handlers to another candidate emulator (with
// emulator = "auto"). An architecture whose emulator was chosen among
// several (not pinned) is
// chosen again when that emulator failed its verification v, or when its
// file changed since it was chosen (an upgrade renamed another over it:
// the kernel runs the old one, opened with F, until the entry is
// registered again): that emulator is tried again, in a private instance,
// and the others are judged by their remembered trials. When another is
// chosen now, the handler is registered with it: logged with why, counted
// (mabd_emulator_switches_total). When the same path is chosen with a new
// file, the entry is registered again so that the kernel opens the new
// file. It reports whether it changed a handler.
func (d *Daemon) switchEmulators(ctx context.Context, v *host.Verification) bool {
	now := d.now()
	if api.Rootless() || now.cfg.Emulator != host.ChoiceAuto {
		return false
	}
	d.mu.Lock()
	old := d.choices
	d.mu.Unlock()
	because := map[string]string{}
	var retry []string
	for _, arch := range slices.Sorted(maps.Keys(old)) {
		ch := old[arch]
		if ch.Candidates < 2 || ch.Pinned || ch.Path == "" {
			continue
		}
		if id, ok := emulator.StatFileID(ch.Path); !ok || id != ch.ID {
			because[arch] = ch.Path + " changed since it was chosen"
		} else if r := failedResult(v, arch); r != nil {
			because[arch] = ch.Path + " failed verification: " + r.Reason
		} else {
			continue
		}
		retry = append(retry, ch.Path)
	}
	if len(because) == 0 {
		return false
	}
	specs, notes, choices, err := d.plan(ctx, now.cfg, retry...)
	if err != nil {
		d.log.Error("choose the emulators again", zap.Error(err))
		return false
	}
	changed := false
	for _, arch := range slices.Sorted(maps.Keys(because)) {
		before, after := old[arch], choices[arch]
		handler := "qemu-" + arch
		switch {
		case after.Path != before.Path:
			d.metrics.switches.WithLabelValues(arch).Inc()
			d.mu.Lock()
			d.switches++
			d.mu.Unlock()
			d.log.Warn("switched emulator", zap.String("handler", handler), zap.String("from", before.Path), zap.String("to", after.Path),
				zap.String("because", because[arch]), zap.String("why", after.Reason))
			changed = true
		case after.ID != before.ID:
			// The same path, a new file: the entry holds the old one.
			_, err := host.RemoveOurs(binfmt.Mount{Dir: now.cfg.BinfmtMount}, []binfmt.Spec{{Name: handler}})
			d.log.Info("registering the handler again: its emulator's file changed", zap.String("handler", handler), zap.String("emulator", after.Path),
				zap.String("why", after.Reason), zap.Error(err))
			changed = true
		default:
			d.log.Warn("kept the emulator: no other candidate does better", zap.String("handler", handler), zap.String("emulator", after.Path),
				zap.String("because", because[arch]), zap.String("why", after.Reason))
		}
	}
	d.mu.Lock()
	d.specs, d.planNotes, d.choices = specs, notes, choices
	d.mu.Unlock()
	if !changed {
		return false
	}
	d.reconcile(false)
	d.persist(now.cfg, specs)
	if bk := d.buildkit(); bk != nil && now.cfg.BuildKit.Emulation == builder.EmulationPrivate {
		// The builder's handlers take the same choice (from the same
		// trials); it moves to them once no build runs.
		if handlers, err := d.builderHandlers(ctx, now.cfg); err == nil {
			go func() {
				if err := bk.SetHandlers(ctx, handlers); err != nil && ctx.Err() == nil {
					d.log.Error("the builder's private handlers", zap.Error(err))
				}
			}()
		}
	}
	return true
}

// failedResult returns v's failed result for the architecture, or nil.
func failedResult(v *host.Verification, arch string) *host.VerifyResult {
	for _, r := range v.Failed() {
		if r.QEMUArch == arch {
			return &r
		}
	}
	return nil
}

// daemonFix words a failure's fix for the daemon's log: what the daemon
// does or which setting makes it, and the rest of the fix.
func daemonFix(r host.VerifyResult) string {
	var what string
	switch r.Remedy {
	case emulator.RemedyRegister:
		what = "the daemon registers qemu-" + r.QEMUArch + " at its next pass while the architecture is configured"
	case emulator.RemedyReplace:
		what = `conflict = "repair" (the default) replaces the entry with mabd's at the next pass`
	}
	return strings.Trim(r.Fix+"; "+what, "; ")
}
