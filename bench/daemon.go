package main

// Row 6: the daemon. `mabd daemon --no-buildkit` runs in a sandbox (a
// private binfmt_misc instance where it registers and verifies every
// handler); its control socket and NOTIFY_SOCKET are files the bench
// reaches from outside. One READY measurement runs a daemon with its
// isolated builder (architectures = [] for the host, arm64 in the
// builder's private table).

import (
	"context"
	"errors"
	"fmt"
	"mabd/daemon/api"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mabd/testing/sandbox"
)

// daemon is row 6.
func (b *bench) daemon(ctx context.Context) []Row {
	b.stopBuilder() // no buildkitd or registry in the background from here
	var rows []Row
	rows = append(rows, b.daemonServing(ctx)...)
	rows = append(rows, b.daemonReady(ctx))
	rows = append(rows, b.daemonReadyBuildKit(ctx))
	return rows
}

// daemonServing starts one sandboxed daemon and measures: idle RSS and CPU,
// then status latency with 1 and with 100 concurrent clients (mabd's Go
// client, api.NewClient(socket).Status, one client and connection per
// goroutine), then the `mabd status --socket` CLI.
func (b *bench) daemonServing(ctx context.Context) []Row {
	idleTitle := fmt.Sprintf("idle `mabd daemon --no-buildkit` (%d handlers, private instance) over %v after READY=1", b.specCount, b.cfg.idle)
	lat1Title := "`mabd status` latency through the socket, 1 client (Go: api.NewClient(sock).StatusJSON, which reads the whole answer and its health, as `mabd status --json` does)"
	lat100Title := "`mabd status` latency through the socket, 100 concurrent clients (Go client: StatusJSON, one connection each)"
	cliTitle := "`mabd status --socket S --json` CLI process, 1 client, sequential"
	na := func(why string) []Row {
		return []Row{
			naRow("6a", lat1Title, "GET /v1/status", "", why),
			naRow("6b", lat100Title, "GET /v1/status", "", why),
			naRow("6c", cliTitle, "`mabd status`", "", why),
			naRow("6d", idleTitle, "`mabd daemon`", "", why),
		}
	}
	dir, err := os.MkdirTemp("/tmp", "mabd-bench-d-")
	if err != nil {
		return na(err.Error())
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		return na(err.Error())
	}
	n, err := listenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return na(err.Error())
	}
	defer n.Close()
	sock := filepath.Join(dir, "mabd.sock")
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := &cappedBuffer{max: 64 << 10}
	cmd := sandbox.Command(sctx, b.cfg.mabd, "daemon", "--config", cfg, "--binfmt-mount", sandbox.Placeholder,
		"--socket", sock, "--state-dir", filepath.Join(dir, "state"), "--no-buildkit")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return na(err.Error())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	msg, err := n.waitFor("READY=1", 2*time.Minute, done)
	if err != nil {
		cancel()
		return na(fmt.Sprintf("%v; log: %s", err, tail(log.String(), 500)))
	}
	pid := msg.pid
	if pid <= 0 || !isMabdDaemon(pid) {
		cancel()
		return na(fmt.Sprintf("the READY=1 datagram carried no usable PID (%d)", pid))
	}
	defer func() {
		// The sandbox's PID 1 ignores signals: stop the daemon itself, and
		// the sandbox ends with it.
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cancel()
			<-done
		}
	}()

	// Idle: let the start-up settle, then watch.
	time.Sleep(2 * time.Second)
	idle := b.idleUsage(ctx, pid)

	client := api.NewClient(sock)
	if _, _, err := client.StatusJSON(ctx); err != nil {
		return na(fmt.Sprintf("status through %s: %v", sock, err))
	}
	var rows []Row
	// One client.
	for i := 0; i < 20; i++ {
		client.StatusJSON(ctx)
	}
	var lat1 []float64
	var errs1 int
	for i := 0; i < b.cfg.status1 && ctx.Err() == nil; i++ {
		t := time.Now()
		_, _, err := client.StatusJSON(ctx)
		lat1 = append(lat1, ms(time.Since(t)))
		if err != nil {
			errs1++
		}
	}
	r1 := latencyRow("6a", lat1Title, lat1, errs1, 0)
	// What decoding the whole answer adds on the client's side.
	var dec []float64
	for i := 0; i < b.cfg.status1/4 && ctx.Err() == nil; i++ {
		t := time.Now()
		if _, err := client.Status(ctx); err == nil {
			dec = append(dec, ms(time.Since(t)))
		}
	}
	if len(dec) > 0 && r1.Values != nil {
		r1.Note = fmt.Sprintf("decoding the whole answer too (api.Client.Status, as the text `mabd status` does): p50 %s, p99 %s", fmtMS(percentile(dec, 50)), fmtMS(percentile(dec, 99)))
		r1.Values["decoded_p50_ms"], r1.Values["decoded_p99_ms"] = percentile(dec, 50), percentile(dec, 99)
	}
	rows = append(rows, r1)

	// 100 clients at once.
	const clients = 100
	lats := make([][]float64, clients)
	var errs100 int
	var mu sync.Mutex
	var ready, finished sync.WaitGroup
	startGate := make(chan struct{})
	for c := 0; c < clients; c++ {
		ready.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			cl := api.NewClient(sock)
			cl.StatusJSON(ctx) // connect
			ready.Done()
			<-startGate
			xs := make([]float64, 0, b.cfg.status100)
			bad := 0
			for i := 0; i < b.cfg.status100 && ctx.Err() == nil; i++ {
				t := time.Now()
				_, _, err := cl.StatusJSON(ctx)
				xs = append(xs, ms(time.Since(t)))
				if err != nil {
					bad++
				}
			}
			lats[c] = xs
			mu.Lock()
			errs100 += bad
			mu.Unlock()
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(startGate)
	finished.Wait()
	wall := time.Since(t0)
	var lat100 []float64
	for _, xs := range lats {
		lat100 = append(lat100, xs...)
	}
	rows = append(rows, latencyRow("6b", lat100Title, lat100, errs100, float64(len(lat100))/wall.Seconds()))
	rows = append(rows, b.statusPolling(ctx, sock, clients))
	rssAfter, _ := rssKiB(pid)

	// The CLI, as users run it.
	runs := 30
	if b.cfg.quick {
		runs = 5
	}
	var cli []float64
	var cliErr error
	for i := 0; i < runs && ctx.Err() == nil; i++ {
		start := time.Now()
		out, err := exec.CommandContext(ctx, b.cfg.mabd, "status", "--socket", sock, "--json").Output()
		el := ms(time.Since(start))
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			cliErr = err
			break
		}
		if !strings.Contains(string(out), `"daemon"`) {
			cliErr = fmt.Errorf("mabd status --socket did not answer from the daemon: %.200s", out)
			break
		}
		cli = append(cli, el)
	}
	if cliErr != nil {
		rows = append(rows, naRow("6c", cliTitle, "`mabd status`", "", cliErr.Error()))
	} else {
		r := latencyRow("6c", cliTitle, cli, 0, 0)
		r.A = "`mabd status --socket S --json` (process start included)"
		rows = append(rows, r)
	}

	if idle.err != nil {
		rows = append(rows, naRow("6d", idleTitle, "`mabd daemon`", "", idle.err.Error()))
	} else {
		r := Row{ID: "6d", Title: idleTitle, A: "`mabd daemon --no-buildkit`", Unit: "",
			N: idle.samples,
			Value: fmt.Sprintf("RSS %.1f MiB (max %.1f), CPU %.3f%% of a core (%d ms in %v)",
				float64(idle.rssEnd)/1024, float64(idle.rssMax)/1024, idle.cpuPercent, idle.cpuMS, b.cfg.idle),
			Values: map[string]float64{
				"rss_start_kib": float64(idle.rssStart), "rss_end_kib": float64(idle.rssEnd), "rss_max_kib": float64(idle.rssMax),
				"cpu_ms": float64(idle.cpuMS), "cpu_percent": idle.cpuPercent, "idle_seconds": b.cfg.idle.Seconds(),
				"rss_after_status_load_kib": float64(rssAfter),
			},
			Note: fmt.Sprintf("RSS after the status load: %.1f MiB", float64(rssAfter)/1024),
		}
		rows = append(rows, r)
	}
	return rows
}

// statusPolling is row 6g: clients health checkers, each polling GET
// /v1/status ten times a second (mabd's Go client, one connection each),
// their phases spread over the tenth of a second, for -status-poll; then
// the same with clients that decode the whole answer, for the note.
func (b *bench) statusPolling(ctx context.Context, sock string, clients int) Row {
	title := fmt.Sprintf("`mabd status` latency, %d clients each polling 10 times a second (Go client: StatusJSON), for %v", clients, b.cfg.statusPoll)
	all, bad := b.poll(ctx, sock, clients, func(cl *api.Client) error {
		_, _, err := cl.StatusJSON(ctx)
		return err
	})
	r := latencyRow("6g", title, all, bad, float64(len(all))/b.cfg.statusPoll.Seconds())
	r.Note = "the throughput is what the clients asked for; 6b is the peak"
	if dec, _ := b.poll(ctx, sock, clients, func(cl *api.Client) error {
		_, err := cl.Status(ctx)
		return err
	}); len(dec) > 0 && r.Values != nil {
		r.Note += fmt.Sprintf("; clients decoding the whole answer (api.Client.Status): p50 %s, p99 %s", fmtMS(percentile(dec, 50)), fmtMS(percentile(dec, 99)))
		r.Values["decoded_p50_ms"], r.Values["decoded_p99_ms"] = percentile(dec, 50), percentile(dec, 99)
	}
	return r
}

// poll runs clients that each call ask ten times a second, their phases
// spread over the tenth of a second, for -status-poll, and returns every
// latency and the count of errors.
func (b *bench) poll(ctx context.Context, sock string, clients int, ask func(*api.Client) error) ([]float64, int) {
	const period = 100 * time.Millisecond
	lats := make([][]float64, clients)
	errs := make([]int, clients)
	var wg sync.WaitGroup
	start := time.Now().Add(200 * time.Millisecond)
	end := start.Add(b.cfg.statusPoll)
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			cl := api.NewClient(sock)
			ask(cl) // connect
			next := start.Add(time.Duration(c) * period / time.Duration(clients))
			for ctx.Err() == nil {
				time.Sleep(time.Until(next))
				if time.Now().After(end) {
					return
				}
				t := time.Now()
				err := ask(cl)
				lats[c] = append(lats[c], ms(time.Since(t)))
				if err != nil {
					errs[c]++
				}
				next = next.Add(period)
			}
		})
	}
	wg.Wait()
	var all []float64
	bad := 0
	for c := range lats {
		all = append(all, lats[c]...)
		bad += errs[c]
	}
	return all, bad
}

func isMabdDaemon(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), "daemon")
}

func latencyRow(id, title string, xs []float64, errs int, rps float64) Row {
	r := Row{ID: id, Title: title, A: "GET /v1/status", Unit: "ms", ASamples: nil, N: len(xs)}
	if len(xs) == 0 {
		r.Value, r.Error = "n/a (no samples)", "no samples"
		return r
	}
	p50, p99 := percentile(xs, 50), percentile(xs, 99)
	r.Values = map[string]float64{"p50_ms": p50, "p99_ms": p99, "max_ms": percentile(xs, 100), "errors": float64(errs)}
	r.Value = fmt.Sprintf("p50 %s, p99 %s", fmtMS(p50), fmtMS(p99))
	if rps > 0 {
		r.Values["requests_per_second"] = rps
		r.Value += fmt.Sprintf(", %.0f req/s", rps)
	}
	if errs > 0 {
		r.Value += fmt.Sprintf(", %d errors", errs)
	}
	return r
}

type idleUsage struct {
	err                      error
	rssStart, rssEnd, rssMax int64
	cpuMS                    int64
	cpuPercent               float64
	samples                  int
}

// idleUsage watches process pid for the idle duration: VmRSS every second,
// utime+stime at both ends.
func (b *bench) idleUsage(ctx context.Context, pid int) idleUsage {
	var u idleUsage
	t0, err := cpuTicks(pid)
	if err != nil {
		u.err = err
		return u
	}
	if u.rssStart, err = rssKiB(pid); err != nil {
		u.err = err
		return u
	}
	u.rssMax = u.rssStart
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(start) < b.cfg.idle {
		select {
		case <-ctx.Done():
			u.err = ctx.Err()
			return u
		case <-tick.C:
		}
		r, err := rssKiB(pid)
		if err != nil {
			u.err = fmt.Errorf("the daemon went away while idle: %v", err)
			return u
		}
		u.rssMax = max(u.rssMax, r)
		u.samples++
	}
	el := time.Since(start)
	t1, err := cpuTicks(pid)
	if err != nil {
		u.err = err
		return u
	}
	u.rssEnd, _ = rssKiB(pid)
	u.cpuMS = (t1 - t0) * 1000 / clockTicks
	u.cpuPercent = float64(t1-t0) / clockTicks / el.Seconds() * 100
	return u
}

// daemonReady is row 6e: start → READY=1 of `mabd daemon --no-buildkit` in
// a fresh private instance (every handler registered, then verified),
// timed by the helper inside the sandbox, so the sandbox's set-up is not
// counted.
func (b *bench) daemonReady(ctx context.Context) Row {
	title := fmt.Sprintf("start → READY=1, `mabd daemon --no-buildkit`, fresh private instance (registers %d, verifies)", b.specCount)
	var ready, stop []float64
	for i := 0; i < b.cfg.readyStarts && ctx.Err() == nil; i++ {
		out, err := b.sandboxScript(ctx, `"$HELPER" helper ready "$MABD"`)
		if err != nil {
			return naRow("6e", title, "`mabd daemon`", "", firstLine(err))
		}
		times, _ := parseTimes(out)
		if len(times["ready"]) != 1 {
			return naRow("6e", title, "`mabd daemon`", "", "no READY time in "+out)
		}
		ready = append(ready, times["ready"]...)
		stop = append(stop, times["stop"]...)
	}
	r := sampleRow("6e", title, "`mabd daemon` (median of starts)", ready)
	if len(stop) > 0 {
		r.Values = map[string]float64{"stop_median_ms": median(stop)}
		r.Note = "SIGTERM → exit " + fmtMS(median(stop))
	}
	return r
}

// daemonReadyBuildKit is row 6f: one start → READY=1 of `mabd daemon` with
// its isolated builder emulating arm64 in its private table (nothing in
// the host's table: architectures = []); READY waits for the verification
// inside the builder's namespace and for buildkitd.
func (b *bench) daemonReadyBuildKit(ctx context.Context) Row {
	title := "start → READY=1, `mabd daemon` with its isolated builder, [buildkit] architectures = [\"arm64\"] (one start)"
	aName := "`mabd daemon` (READY waits for buildkitd)"
	if _, err := os.Stat(b.cfg.buildkitd); err != nil {
		return naRow("6f", title, aName, "", err.Error()+": run `make deps`")
	}
	dir, err := os.MkdirTemp("/tmp", "mabd-bench-dk-")
	if err != nil {
		return naRow("6f", title, aName, "", err.Error())
	}
	defer os.RemoveAll(dir)
	bkDir, err := stateDir()
	if err != nil {
		return naRow("6f", title, aName, "", err.Error())
	}
	defer removeState(bkDir)
	config := fmt.Sprintf(`architectures = []
[verify]
interval = "0"
[buildkit]
enabled = true
architectures = ["arm64"]
binary = %q
root = %q
`, b.cfg.buildkitd, filepath.Join(bkDir, "root"))
	cfg := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return naRow("6f", title, aName, "", err.Error())
	}
	n, err := listenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return naRow("6f", title, aName, "", err.Error())
	}
	defer n.Close()
	log := &cappedBuffer{max: 64 << 10}
	cmd := exec.Command(b.cfg.mabd, "daemon", "--config", cfg, "--socket", filepath.Join(dir, "mabd.sock"),
		"--state-dir", filepath.Join(dir, "state"), "--buildkit-socket", filepath.Join(dir, "bk.sock"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.path)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return naRow("6f", title, aName, "", err.Error())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	_, err = n.waitFor("READY=1", 3*time.Minute, done)
	el := ms(time.Since(start))
	cmd.Process.Signal(syscall.SIGTERM)
	stopStart := time.Now()
	var stopMS float64
	select {
	case <-done:
		stopMS = ms(time.Since(stopStart))
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
	}
	if err != nil {
		return naRow("6f", title, aName, "", fmt.Sprintf("%v; log: %s", err, tail(log.String(), 500)))
	}
	r := sampleRow("6f", title, aName, []float64{el})
	r.Values = map[string]float64{"stop_ms": stopMS}
	r.Note = "SIGTERM → exit " + fmtMS(stopMS)
	// The daemon must have stopped its buildkitd: no process that names
	// the state directory, and the socket removed.
	left := processesMentioning(bkDir)
	_, sockErr := os.Stat(filepath.Join(dir, "bk.sock"))
	switch {
	case len(left) > 0:
		r.Note += fmt.Sprintf("; warning: buildkitd still running after the daemon exited (PIDs %v)", left)
	case sockErr == nil:
		r.Note += "; warning: BuildKit's socket left behind"
	default:
		r.Note += ", buildkitd stopped with it (checked)"
	}
	return r
}

// processesMentioning returns the PIDs whose command line contains s.
func processesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
