package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"mabd/binfmt"
	"mabd/builder/wire"
	"mabd/emulator"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Restart backoff: the first restart after an unexpected exit waits
// minBackoff, each further one twice as long up to maxBackoff; a process
// that stayed up resetAfter resets it.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 10 * time.Second
	resetAfter = 30 * time.Second
)

// ErrStopped is returned by the methods of a Supervisor that has been
// stopped (or never started).
var ErrStopped = errors.New("the builder is not running")

// BinaryError says that [Options.Binary] is not a program Start can run:
// not found in $PATH, missing or not executable.
type BinaryError struct {
	// Binary is Options.Binary ("buildkitd" by default).
	Binary string
	// Err is exec.LookPath's error.
	Err error
}

func (e *BinaryError) Error() string { return "buildkitd: " + e.Err.Error() }
func (e *BinaryError) Unwrap() error { return e.Err }

// Status is what a Supervisor knows about its buildkitd (see
// [wire.BuildKit], where it is defined for the agent to read).
type Status = wire.BuildKit

// Supervisor runs buildkitd as a child process and keeps it running: see
// the package documentation. Its methods are safe for concurrent use.
type Supervisor struct {
	mu sync.Mutex
	// options are those given to NewSupervisor, with the platforms of
	// the last SetPlatforms; from Start on with the defaults filled in
	// and Binary a path.
	options Options
	prep    prepared // what Start prepared, fixed until Stop
	cur     *proc    // the current buildkitd
	st      Status
	started bool
	changed chan struct{} // closed and replaced on every state change

	// The supervision loop's, made anew by every Start.
	stopCh   chan struct{}
	loopDone chan struct{}
	reload   chan chan error
	stopOnce sync.Once
	cleanup  sync.Once
	stopErr  error
	loopCtx  context.Context
	cancel   context.CancelFunc
}

// NewSupervisor returns a supervisor for opt; nothing runs until Start.
func NewSupervisor(opt Options) *Supervisor {
	opt.Platforms = slices.Clone(opt.Platforms)
	return &Supervisor{options: opt, changed: make(chan struct{})}
}

// notify wakes whoever waits for a change of state. Called with mu held.
func (s *Supervisor) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Start writes the configuration, starts buildkitd and waits until it
// answers (at most Options.ReadyTimeout, or ctx's deadline), then
// supervises it until Stop. It fails when the options are bad, when another
// buildkitd already answers on the socket, or when buildkitd does not come
// up; then nothing is left running.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("the builder is already started")
	}
	s.started = true
	s.mu.Unlock()
	err := s.start(ctx)
	if err != nil {
		s.mu.Lock()
		s.started = false
		s.st.LastError = err.Error()
		s.notify()
		s.mu.Unlock()
	}
	return err
}

// prepared is what Start sets up before it starts buildkitd.
type prepared struct {
	gid         int    // the socket's group, -1 to leave it
	snapshotter string // SnapshotterOverlay or SnapshotterNative
	keep        int64  // the build cache kept, in bytes
	config      string // buildkitd.toml's path
	// notify is the socket buildkitd sends READY=1 on (its
	// NOTIFY_SOCKET), until Stop.
	notify *notifySocket
	// version is BuildKit's, as `buildkitd --version` says.
	version chan string
}

// start prepares what buildkitd needs, starts it and waits until it
// answers.
func (s *Supervisor) start(ctx context.Context) error {
	s.mu.Lock()
	o, err := s.options.withDefaults()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	o, prep, err := prepare(ctx, o)
	if err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.options, s.prep = o, prep
	s.st = Status{Socket: o.Socket, Address: "unix://" + o.Socket, Config: prep.config, KeepStorage: prep.keep, Emulation: o.Emulation}
	s.stopCh = make(chan struct{})
	s.loopDone = make(chan struct{})
	s.reload = make(chan chan error)
	s.stopOnce, s.cleanup, s.stopErr = sync.Once{}, sync.Once{}, nil
	s.loopCtx, s.cancel = loopCtx, cancel
	s.mu.Unlock()

	p, err := s.spawn()
	if err != nil {
		cancel()
		prep.notify.close()
		return err
	}
	o.Logger.Info("buildkitd started", zap.Int("pid", p.pid()), zap.String("config", prep.config), zap.String("snapshotter", prep.snapshotter), zap.Strings("platforms", o.Platforms))
	if err := s.waitReady(ctx, p); err != nil {
		s.terminate(p)
		cancel()
		prep.notify.close()
		os.Remove(o.Socket)
		UnmountUnder(o.Root)
		return err
	}
	go s.loop(p)
	return nil
}

// prepare readies everything buildkitd needs for o (with defaults): its
// binary (o.Binary becomes its path), the socket's group, the directories
// of root and socket, free of another buildkitd, the snapshotter, the
// cache size, and the configuration file.
func prepare(ctx context.Context, o Options) (Options, prepared, error) {
	prep := prepared{gid: -1}
	bin, err := exec.LookPath(o.Binary)
	if err != nil {
		return o, prep, &BinaryError{Binary: o.Binary, Err: err}
	}
	o.Binary = bin
	if o.Emulation == EmulationPrivate && len(o.Handlers) == 0 && len(o.Platforms) > 0 {
		if o.Handlers, err = handlersFor(ctx, o.Platforms, nil); err != nil {
			return o, prep, err
		}
	}
	if o.SocketGroup != "" {
		if prep.gid, err = lookupGroup(o.SocketGroup); err != nil {
			return o, prep, err
		}
	}
	if err := os.MkdirAll(o.Root, 0o700); err != nil {
		return o, prep, err
	}
	if err := os.MkdirAll(filepath.Dir(o.Socket), 0o755); err != nil {
		return o, prep, err
	}
	if err := clearSocket(ctx, o.Socket); err != nil {
		return o, prep, err
	}
	if err := rootFree(o.Root); err != nil {
		return o, prep, err
	}
	// buildkitd chooses: overlayfs where it works (for an ordinary user,
	// in its user namespace, Linux >= 5.11), else native; waitReady
	// reads which from its root.
	prep.snapshotter = SnapshotterAuto
	if prep.keep = o.KeepStorage; prep.keep == 0 {
		if prep.keep, err = DefaultKeepStorage(o.Root); err != nil {
			return o, prep, err
		}
	}
	if prep.config, err = writeConfig(o, prep.snapshotter, prep.keep); err != nil {
		return o, prep, err
	}
	if _, err := UnmountUnder(o.Root); err != nil {
		o.Logger.Warn("leftover mounts under the builder's root", zap.Error(err))
	}
	if prep.notify, err = listenNotify(o.Socket); err != nil {
		return o, prep, err
	}
	prep.version = make(chan string, 1)
	go func() { prep.version <- binaryVersion(o.Binary) }()
	return o, prep, nil
}

// clearSocket removes a stale socket, and fails if a buildkitd answers on
// it or something else is in its place.
func clearSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if conn, err := (&net.Dialer{}).DialContext(ctx, "unix", path); err == nil {
		conn.Close()
		return fmt.Errorf("a buildkitd already listens on %s: stop it first", path)
	}
	return os.Remove(path)
}

// rootFree fails when a buildkitd holds root's lock (buildkitd.lock, which
// buildkitd flocks while it runs): its mounts must not be touched.
func rootFree(root string) error {
	f, err := os.OpenFile(filepath.Join(root, "buildkitd.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("another buildkitd uses %s (it holds buildkitd.lock): stop it first", root)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// lookupGroup resolves a group name or numeric id.
func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil {
		return id, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return -1, fmt.Errorf("socket group: %w", err)
	}
	return strconv.Atoi(gr.Gid)
}

// spawn starts a buildkitd and makes it the current process. With private
// emulation it starts the namespace's agent, which verifies the handlers
// there first, and the worker's platforms are those that passed.
func (s *Supervisor) spawn() (*proc, error) {
	s.mu.Lock()
	o, prep := s.options, s.prep
	s.mu.Unlock()
	if err := os.Remove(o.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out := newTailWriter(o.Logger, 20)
	prep.notify.drain()
	var p *proc
	var handlers []PrivateHandler
	ps := o.Platforms
	if o.Emulation == EmulationPrivate {
		cmd, pp, hs, err := s.startPrivate(o, prep, out)
		if err != nil {
			return nil, err
		}
		p, handlers, ps = watchProc(cmd, out, pp), hs, verifiedPlatforms(hs)
		for _, h := range hs {
			if h.State == "failed" {
				o.Logger.Warn("private handler failed verification: the worker goes without it", zap.String("handler", h.Name), zap.String("platform", h.Platform), zap.String("reason", h.Reason))
			}
		}
	} else {
		var err error
		if p, err = startProc(buildkitdCommand(o, prep), out); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.cur = p
	s.st.Running, s.st.PID, s.st.Since, s.st.Platforms = false, p.pid(), time.Time{}, ps
	if p.private != nil {
		s.st.PID, s.st.AgentPID = p.private.pid, p.pid()
		s.st.Private, s.st.VerifiedAt = handlers, time.Now()
	}
	s.notify()
	s.mu.Unlock()
	return p, nil
}

// waitReady waits until p says READY=1 on the notify socket (buildkitd
// says it once its listeners are bound) and its socket takes a
// connection, then gives the socket its mode and group.
func (s *Supervisor) waitReady(ctx context.Context, p *proc) error {
	s.mu.Lock()
	o, prep := s.options, s.prep
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := prep.notify.waitReady(ctx, p.done); err != nil {
		if p.exited() {
			return fmt.Errorf("buildkitd did not come up: %s", p.describe())
		}
		return fmt.Errorf("buildkitd did not say it was ready in time: %v", err)
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", o.Socket)
	if err != nil {
		return fmt.Errorf("buildkitd said it was ready, but %s takes no connection: %w", o.Socket, err)
	}
	conn.Close()
	if err := os.Chmod(o.Socket, o.SocketMode); err != nil {
		return err
	}
	if prep.gid >= 0 {
		if err := os.Chown(o.Socket, -1, prep.gid); err != nil {
			return err
		}
	}
	var version string
	select {
	case version = <-prep.version:
		prep.version <- version // for the next start
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != p || p.exited() {
		return fmt.Errorf("buildkitd exited right after it came up: %s", p.describe())
	}
	s.st.Running, s.st.Since, s.st.Version = true, time.Now(), version
	if snap := workerSnapshotter(o.Root); snap != "" && snap != s.st.Snapshotter {
		s.st.Snapshotter = snap
		if snap != SnapshotterOverlay {
			o.Logger.Warn("overlayfs does not work here: buildkitd uses the "+snap+" snapshotter (slower, uses more space)", zap.String("root", o.Root))
		}
	}
	s.notify()
	o.Logger.Info("buildkitd ready", zap.Int("pid", p.pid()), zap.String("version", version), zap.Strings("platforms", s.st.Platforms), zap.Duration("after", time.Since(p.start)))
	return nil
}

// watchReady waits for a restarted p in the background; a buildkitd that
// does not come up is killed, so that the loop restarts it.
func (s *Supervisor) watchReady(p *proc) {
	if err := s.waitReady(s.loopCtx, p); err != nil {
		if s.loopCtx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.st.LastError = err.Error()
		s.notify()
		log := s.options.Logger
		s.mu.Unlock()
		log.Warn("restarted buildkitd did not come up; killing it", zap.Error(err))
		p.cmd.Process.Kill()
	}
}

// loop supervises p and its successors until Stop.
func (s *Supervisor) loop(p *proc) {
	defer close(s.loopDone)
	backoff := minBackoff
	var verifyC <-chan time.Time
	if iv := s.options.VerifyInterval; iv > 0 && s.options.Emulation == EmulationPrivate {
		t := time.NewTicker(iv)
		defer t.Stop()
		verifyC = t.C
	}
	for {
		select {
		case <-verifyC:
			s.reverify(p)
		case <-s.stopCh:
			s.terminate(p)
			return
		case res := <-s.reload:
			s.terminate(p)
			np, err := s.spawn()
			if err != nil {
				np = deadProc(err)
				s.setLastError(err.Error())
			} else {
				go s.watchReady(np)
			}
			p = np
			res <- err
		case <-p.done:
			why := p.describe()
			up := time.Since(p.start)
			s.mu.Lock()
			log := s.options.Logger
			s.st.Running, s.st.PID, s.st.LastError = false, 0, why
			s.notify()
			s.mu.Unlock()
			if up >= resetAfter {
				backoff = minBackoff
			}
			log.Warn("buildkitd exited unexpectedly; restarting", zap.String("why", why), zap.Duration("uptime", up), zap.Duration("backoff", backoff))
			select {
			case <-s.stopCh:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			if done, err := UnmountUnder(s.options.Root); err != nil || len(done) > 0 {
				log.Warn("unmounted what buildkitd left under its root", zap.Strings("mounts", done), zap.Error(err))
			}
			np, err := s.spawn()
			s.mu.Lock()
			s.st.Restarts++
			n := s.st.Restarts
			s.notify()
			s.mu.Unlock()
			if err != nil {
				s.setLastError(err.Error())
				np = deadProc(err)
			} else {
				log.Info("buildkitd restarted", zap.Int("pid", np.pid()), zap.Int("restarts", n))
				go s.watchReady(np)
			}
			p = np
		}
	}
}

// reverify verifies the private handlers inside p's namespace again. A
// handler that verified before and fails now is withdrawn: buildkitd
// restarts, once no build runs, in a new namespace whose verification
// leaves it out unless it works again.
func (s *Supervisor) reverify(p *proc) {
	s.mu.Lock()
	running, o := s.st.Running, s.options
	s.mu.Unlock()
	if p.private == nil || !running {
		return
	}
	results, err := p.private.verify(o.ProbeTimeout + time.Minute)
	if err != nil {
		o.Logger.Warn("verify the builder's private handlers", zap.Error(err))
		return
	}
	byArch := map[string]emulator.Result{}
	for _, r := range results {
		byArch[r.Arch] = r
	}
	var failed []string
	s.mu.Lock()
	for i, h := range s.st.Private {
		a, _ := binfmt.ArchByName(h.Name)
		r, ok := byArch[a.Name]
		if !ok || h.State == emulator.StateFailed {
			continue
		}
		if r.State == emulator.StateFailed {
			s.st.Private[i].State, s.st.Private[i].Reason = r.State, r.Reason
			failed = append(failed, h.Name)
			o.Logger.Warn("private handler failed verification: withdrawing it from the worker", zap.String("handler", h.Name), zap.String("platform", h.Platform), zap.String("reason", r.Reason))
		}
	}
	s.st.VerifiedAt = time.Now()
	s.st.Withdrawn += len(failed)
	s.notify()
	reload, loopCtx := s.reload, s.loopCtx
	s.mu.Unlock()
	if len(failed) == 0 {
		return
	}
	go func() {
		if err := s.waitIdle(loopCtx); err != nil {
			return
		}
		res := make(chan error, 1)
		select {
		case reload <- res:
			<-res
		case <-loopCtx.Done():
		}
	}()
}

func (s *Supervisor) setLastError(e string) {
	s.mu.Lock()
	s.st.LastError = e
	s.notify()
	s.mu.Unlock()
}

// terminate stops p: SIGTERM, then SIGKILL after StopTimeout.
func (s *Supervisor) terminate(p *proc) {
	if p == nil || p.exited() {
		return
	}
	s.mu.Lock()
	timeout, log := s.options.StopTimeout, s.options.Logger
	s.st.Running = false
	s.notify()
	s.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		log.Info("buildkitd stopped", zap.Int("pid", p.pid()))
		return
	case <-time.After(timeout):
	}
	log.Warn("buildkitd did not stop on SIGTERM; killing it", zap.Int("pid", p.pid()), zap.Duration("after", timeout))
	p.cmd.Process.Kill()
	<-p.done
}

// Stop stops buildkitd (SIGTERM, SIGKILL after StopTimeout), removes the
// socket and unmounts whatever is left mounted below Root (never
// binfmt_misc). It fails when mounts could not be removed. If ctx ends
// first, Stop returns its error and the stopping goes on. Stopping a
// supervisor that is not running does nothing.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	stopCh, loopDone, cancel := s.stopCh, s.loopDone, s.cancel
	s.mu.Unlock()
	s.stopOnce.Do(func() {
		cancel()
		close(stopCh)
	})
	select {
	case <-loopDone:
	case <-ctx.Done():
		return fmt.Errorf("stopping the builder: %w", ctx.Err())
	}
	s.cleanup.Do(func() { s.stopErr = s.afterStop() })
	return s.stopErr
}

// afterStop removes the socket and the mounts buildkitd left.
func (s *Supervisor) afterStop() error {
	s.mu.Lock()
	o := s.options
	s.cancel()
	s.st.Running, s.st.PID = false, 0
	s.cur = nil
	s.started = false
	s.notify()
	s.mu.Unlock()
	var errs []error
	if err := os.Remove(o.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	s.prep.notify.close()
	done, err := UnmountUnder(o.Root)
	if len(done) > 0 {
		o.Logger.Info("unmounted what buildkitd left under its root", zap.Strings("mounts", done))
	}
	if err != nil {
		errs = append(errs, err)
	}
	left, err := MountsUnder(o.Root)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range left {
		if m.Point != o.Root {
			errs = append(errs, fmt.Errorf("still mounted after stop: %s (%s)", m.Point, m.FSType))
		}
	}
	return errors.Join(errs...)
}

// Status returns what the supervisor knows now.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Platforms = slices.Clone(st.Platforms)
	if st.Socket == "" {
		o, _ := s.options.withDefaults()
		st.Socket, st.Address = o.Socket, "unix://"+o.Socket
	}
	return st
}

// Address is the address clients reach buildkitd at: unix://<socket>.
func (s *Supervisor) Address() string { return s.Status().Address }

// WaitReady waits until buildkitd is running and answering, e.g. after a
// restart. It returns ErrStopped when the supervisor is stopped.
func (s *Supervisor) WaitReady(ctx context.Context) error {
	for {
		s.mu.Lock()
		running, started, ch := s.st.Running, s.started, s.changed
		s.mu.Unlock()
		if running {
			return nil
		}
		if !started {
			return ErrStopped
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// SetPlatforms changes the worker's platforms. With private emulation it
// sets the private instance's handlers to those of the foreign platforms
// of ps (see SetHandlers), found in the default emulator directories
// unless a current handler has the architecture. With host emulation,
// when the set differs from
// the current one, it waits (as long as ctx allows) until buildkitd runs no
// build, asking its build history for active builds every half second,
// then rewrites the configuration, restarts buildkitd and waits until it is
// ready again. A build started between that check and the restart fails
// and must be retried. When the set is the same, nothing happens. Before
// Start, it only changes what Start will use.
func (s *Supervisor) SetPlatforms(ctx context.Context, ps []string) error {
	ps, err := NormalizePlatforms(ps)
	if err != nil {
		return err
	}
	s.mu.Lock()
	o := s.options
	s.mu.Unlock()
	if o.Emulation != EmulationHost {
		// The private instance holds handlers for those platforms.
		hs, err := handlersFor(ctx, ps, o.Handlers)
		if err != nil {
			return err
		}
		return s.SetHandlers(ctx, hs)
	}
	return s.change(ctx, "restarting buildkitd with new platforms", zap.Strings("platforms", ps),
		func(o *Options) bool { return sameSet(o.Platforms, ps) },
		func(o *Options) error {
			o.Platforms = ps
			if !s.started {
				return nil
			}
			_, err := writeConfig(*o, s.prep.snapshotter, s.prep.keep)
			return err
		})
}

// SetHandlers changes the handlers of the private binfmt_misc instance
// (EmulationPrivate), and so the worker's platforms. When they differ from
// the current ones, it waits (as long as ctx allows) until buildkitd runs
// no build, then restarts buildkitd in a new namespace holding the new
// handlers, verified there, and waits until it is ready again. When they
// are the same, nothing happens. Before Start, it only changes what Start
// will use.
func (s *Supervisor) SetHandlers(ctx context.Context, specs []binfmt.Spec) error {
	specs = builderHandlers(specs)
	for _, h := range specs {
		if err := h.Validate(); err != nil {
			return err
		}
	}
	names := make([]string, len(specs))
	for i, h := range specs {
		names[i] = h.Name
	}
	return s.change(ctx, "restarting buildkitd with new private handlers", zap.Strings("handlers", names),
		func(o *Options) bool { return sameSpecs(o.Handlers, specs) },
		func(o *Options) error { o.Handlers = specs; return nil })
}

// change applies set to the options, then restarts buildkitd so that it
// takes them: at once before Start (set only), not at all when same says
// they hold already, otherwise once no build runs (waiting as long as ctx
// allows), waiting until it is ready again. set runs with the lock held.
func (s *Supervisor) change(ctx context.Context, what string, field zap.Field, same func(*Options) bool, set func(*Options) error) error {
	s.mu.Lock()
	if !s.started {
		err := set(&s.options)
		s.mu.Unlock()
		return err
	}
	unchanged := same(&s.options)
	log := s.options.Logger
	s.mu.Unlock()
	if unchanged {
		return nil
	}
	if err := s.waitIdle(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	err := set(&s.options)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	log.Info(what, field)
	return s.restart(ctx)
}

// restart asks the loop to restart buildkitd and waits until it is ready.
func (s *Supervisor) restart(ctx context.Context) error {
	s.mu.Lock()
	reload, loopDone := s.reload, s.loopDone
	s.mu.Unlock()
	res := make(chan error, 1)
	select {
	case reload <- res:
	case <-loopDone:
		return ErrStopped
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if err := <-res; err != nil {
		return err
	}
	return s.WaitReady(ctx)
}

// sameSpecs reports whether a and b hold the same handlers, in any order.
func sameSpecs(a, b []binfmt.Spec) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, x.Equal) {
			return false
		}
	}
	return true
}

// waitIdle waits until no client is connected to buildkitd: every build
// holds a connection for as long as it runs (its solve and its session),
// so none runs then. A buildkitd that is not running runs nothing.
func (s *Supervisor) waitIdle(ctx context.Context) error {
	for {
		s.mu.Lock()
		pid, socket := s.st.PID, s.options.Socket
		s.mu.Unlock()
		n, err := connectedClients(pid, socket)
		if err != nil || n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the %d clients of buildkitd (their builds) to finish: %w", n, context.Cause(ctx))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
