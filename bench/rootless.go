package main

// Row 9: rootless. The same `mabd build` of examples/hello for
// linux/amd64,linux/arm64 to an OCI tarball, as an ordinary user against
// its own rootless `mabd daemon`, and as root against a system-mode
// `mabd daemon` configured alike. The user is made for the row (useradd
// with a subordinate id range, as cmd/mabd's rootless tests do) and
// removed after it with its home; /etc/subuid and /etc/subgid are left as
// they were found, and no process of the user is left.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mabd/daemon/api"
	"mabd/testing/procs"
	"mabd/testing/testuser"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/worker/label"

	"mabd/binfmt"
)

// hostTable returns the entries of the host's binfmt_misc table, by name
// (read only; nil when it is not mounted).
func hostTable() map[string]string {
	des, err := os.ReadDir(binfmt.DefaultDir)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, de := range des {
		if de.Name() == "register" || de.Name() == "status" {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(binfmt.DefaultDir, de.Name()))
		out[de.Name()] = string(b)
	}
	return out
}

// runningDaemon is a `mabd daemon` the row started.
type runningDaemon struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when it has exited
	log     *cappedBuffer
	socket  string // control socket
	bk      string // unix://… of its buildkitd
	readyMS float64
	// snapshotter is the one its worker uses, as BuildKit says.
	snapshotter string
	stopped     bool
}

// startDaemon starts cmd (a `mabd daemon`), times exec → READY=1 on a
// notify socket of its own (notify: a path, or @name for an abstract
// socket the user's daemon may send to), and waits until its status says
// BuildKit runs.
func startDaemon(ctx context.Context, cmd *exec.Cmd, notify, socket, bk string) (*runningDaemon, error) {
	n, err := listenNotify(notify)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	d := &runningDaemon{cmd: cmd, exited: make(chan struct{}), log: &cappedBuffer{max: 64 << 10}, socket: socket, bk: bk}
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notify)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		errc <- cmd.Wait()
		close(d.exited)
	}()
	if _, err := n.waitFor("READY=1", 3*time.Minute, errc); err != nil {
		d.stop()
		return nil, fmt.Errorf("%w; log: %s", err, tail(d.log.String(), 800))
	}
	d.readyMS = ms(time.Since(start))
	c := api.NewClient(socket)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		st, err := c.Status(ctx)
		if err == nil && st.Daemon.BuildKit != nil && st.Daemon.BuildKit.Running {
			d.snapshotter = workerSnapshotter(ctx, bk)
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("READY=1, but BuildKit does not run a minute later (%v); log: %s", err, tail(d.log.String(), 800))
		}
	}
}

// workerSnapshotter asks buildkitd at addr which snapshotter its worker
// uses ("?" when it does not say).
func workerSnapshotter(ctx context.Context, addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, addr)
	if err != nil {
		return "?"
	}
	defer c.Close()
	ws, err := c.ListWorkers(ctx)
	if err != nil || len(ws) == 0 || ws[0].Labels[label.Snapshotter] == "" {
		return "?"
	}
	return ws[0].Labels[label.Snapshotter]
}

// stop sends SIGTERM and waits (a minute, then SIGKILL); it returns how
// long the daemon took to exit. Only the first call does anything.
func (d *runningDaemon) stop() float64 {
	if d == nil || d.stopped {
		return 0
	}
	d.stopped = true
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.exited
	}
	return ms(time.Since(start))
}

// rootlessRow is row 9: the same `mabd build` as an ordinary user against
// its rootless daemon (A) and as root against a system-mode daemon (B).
func (b *bench) rootlessRow(ctx context.Context) (rows []Row) {
	const (
		title = "build examples/hello for " + buildPlatforms + " to an OCI tarball, warm cache: rootless daemon vs system daemon, same job"
		aName = "`mabd build --output type=oci,dest=FILE` as an ordinary user (uid ≠ 0, subordinate ids) against its rootless `mabd daemon`"
		bName = "the same `mabd build` as root against a system-mode `mabd daemon` (`architectures = []`, private builder)"
	)
	na := func(why string) []Row { return []Row{naRow("9", title, aName, bName, why)} }
	if os.Geteuid() != 0 {
		return na("the bench must run as root to make the user")
	}
	e := b.setupBuild(ctx)
	if e.err != nil {
		return na(firstLine(e.err))
	}
	table := hostTable()
	// The daemons are stopped by the row, also when the bench is
	// interrupted.
	cctx := context.WithoutCancel(ctx)

	// B: the system-mode daemon, as row 6f starts it.
	dir, err := os.MkdirTemp("/tmp", "mabd-bench-sys-")
	if err != nil {
		return na(err.Error())
	}
	defer os.RemoveAll(dir)
	bkDir, err := stateDir()
	if err != nil {
		return na(err.Error())
	}
	defer removeState(bkDir)
	sysConfig := fmt.Sprintf("architectures = []\n[verify]\ninterval = \"0\"\n[buildkit]\nenabled = true\narchitectures = [\"arm64\"]\nbinary = %q\nroot = %q\n",
		b.cfg.buildkitd, filepath.Join(bkDir, "root"))
	cfg := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(cfg, []byte(sysConfig), 0o644); err != nil {
		return na(err.Error())
	}
	sysSock, sysBK := filepath.Join(dir, "mabd.sock"), filepath.Join(dir, "bk.sock")
	sysCmd := exec.CommandContext(cctx, b.cfg.mabd, "daemon", "--config", cfg, "--socket", sysSock,
		"--state-dir", filepath.Join(dir, "state"), "--buildkit-socket", sysBK)
	sysCmd.Env = os.Environ()
	sys, err := startDaemon(ctx, sysCmd, filepath.Join(dir, "notify.sock"), sysSock, "unix://"+sysBK)
	if err != nil {
		return na("the system-mode daemon: " + firstLine(err))
	}
	defer sys.stop()

	// A: the user and its rootless daemon.
	u, err := testuser.New()
	if err != nil {
		return na(firstLine(err))
	}
	if !u.HasSubIDs() {
		u.Remove()
		return na(fmt.Sprintf("useradd gave %s no subordinate id range in /etc/subuid", u.Name))
	}
	var rootless *runningDaemon
	defer func() {
		rootless.stop()
		problems := u.Remove()
		for _, p := range problems {
			b.logf("row 9: cleanup: %s", p)
		}
		if len(problems) > 0 && len(rows) > 0 {
			rows[0].Note += "; warning: cleanup: " + strings.Join(problems, "; ")
		}
	}()
	b.logf("row 9: user %s (uid %d), XDG_RUNTIME_DIR %s", u.Name, u.UID, u.Runtime)
	if err := u.WriteConfig(fmt.Sprintf("[verify]\ninterval = \"0\"\n[buildkit]\narchitectures = [\"arm64\"]\nbinary = %q\n", b.cfg.buildkitd)); err != nil {
		return na(err.Error())
	}
	var nb [6]byte
	rand.Read(nb[:])
	userSock := filepath.Join(u.Runtime, "mabd", "mabd.sock")
	userBK := filepath.Join(u.Runtime, "mabd", "buildkitd.sock")
	rootless, err = startDaemon(ctx, u.Command(cctx, nil, b.cfg.mabd, "daemon"), "@mabd-bench-notify-"+hex.EncodeToString(nb[:]), userSock, "unix://"+userBK)
	if err != nil {
		return na("the rootless daemon: " + firstLine(err))
	}
	var rootInTree []int
	rootlessTree := procs.Tree(rootless.cmd.Process.Pid)
	for _, pid := range rootlessTree {
		if real, eff, ok := procs.UIDs(pid); ok && (real == 0 || eff == 0) {
			rootInTree = append(rootInTree, pid)
		}
	}

	build := func(cmd *exec.Cmd) (float64, string, error) {
		out := &cappedBuffer{max: 64 << 10}
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		err := cmd.Run()
		el := ms(time.Since(start))
		if err != nil {
			return el, out.String(), fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(out.String(), 1500))
		}
		return el, out.String(), nil
	}
	args := func(addr, dest string) []string {
		return []string{"build", "--addr", addr, "--progress", "plain", "--platform", buildPlatforms,
			"--build-arg", "BASE=" + e.base, "--output", "type=oci,dest=" + dest, e.hello}
	}
	want := strings.Split(buildPlatforms, ",")
	tarA, tarB := filepath.Join(u.Home, "bench.tar"), filepath.Join(dir, "bench.tar")
	check := func(file string, uid int) error {
		fi, err := os.Stat(file)
		if err != nil {
			return err
		}
		if owner := int(fi.Sys().(*syscall.Stat_t).Uid); owner != uid {
			return fmt.Errorf("%s is owned by uid %d, want %d", file, owner, uid)
		}
		return archiveHolds(ctx, file, want)
	}
	sideA := func() (float64, string, error) {
		el, out, err := build(u.Command(ctx, nil, b.cfg.mabd, args(rootless.bk, tarA)...))
		if err == nil {
			err = check(tarA, u.UID)
		}
		return el, out, err
	}
	sideB := func() (float64, string, error) {
		cmd := exec.CommandContext(ctx, b.cfg.mabd, args(sys.bk, tarB)...)
		el, out, err := build(cmd)
		if err == nil {
			err = check(tarB, 0)
		}
		return el, out, err
	}
	var as, bs []float64
	uncached := 0
	err = func() error {
		// One untimed run of each side: both caches warm.
		if _, _, err := sideA(); err != nil {
			return fmt.Errorf("rootless: %w", err)
		}
		if _, _, err := sideB(); err != nil {
			return fmt.Errorf("system: %w", err)
		}
		for i := 0; i < b.cfg.rootlessRounds && ctx.Err() == nil; i++ {
			a, aout, err := sideA()
			if err != nil {
				return fmt.Errorf("rootless: %w", err)
			}
			bb, bout, err := sideB()
			if err != nil {
				return fmt.Errorf("system: %w", err)
			}
			as, bs = append(as, a), append(bs, bb)
			if !strings.Contains(aout, "CACHED") || !strings.Contains(bout, "CACHED") {
				uncached++
			}
		}
		return ctx.Err()
	}()
	userStopMS, sysStopMS := rootless.stop(), sys.stop()
	if err != nil {
		return na(firstLine(err))
	}
	r := compareRow("9", title, aName, bName, as, bs)
	r.Values = map[string]float64{
		"rootless_ready_ms": rootless.readyMS, "system_ready_ms": sys.readyMS,
		"rootless_stop_ms": userStopMS, "system_stop_ms": sysStopMS,
	}
	r.Note = fmt.Sprintf("rootless daemon: start → READY=1 %s (first start, empty state), SIGTERM → exit %s, snapshotter %s; system daemon: %s, %s, %s; every tarball checked (both platforms, owned by the user on A, by root on B), no process of the rootless daemon's tree (%d) is root",
		fmtMS(rootless.readyMS), fmtMS(userStopMS), rootless.snapshotter, fmtMS(sys.readyMS), fmtMS(sysStopMS), sys.snapshotter, len(rootlessTree))
	if len(rootInTree) > 0 {
		r.Note = r.Note[:strings.LastIndex(r.Note, ", no process of")]
		r.Note += fmt.Sprintf("; warning: processes of the rootless daemon's tree run as root: %v", rootInTree)
	}
	if uncached > 0 {
		r.Note += fmt.Sprintf("; warning: %d rounds had no CACHED step", uncached)
	}
	if after := hostTable(); !maps.Equal(after, table) {
		r.Note += "; warning: the host's binfmt_misc table changed during the row"
	}
	return []Row{r}
}
