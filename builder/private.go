package builder

// Private emulation: buildkitd runs in a user and mount namespace of its
// own, whose binfmt_misc instance holds the handlers it was given and
// nothing else (see the package documentation).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mabd/binfmt"
	"mabd/builder/wire"
	"mabd/emulator"
	"mabd/internal/userns"

	"github.com/containerd/platforms"
)

// Emulation modes of [Options.Emulation] (see [wire.EmulationPrivate]).
const (
	EmulationPrivate = wire.EmulationPrivate
	EmulationHost    = wire.EmulationHost
)

// PrivateHandler is a handler of the builder's private binfmt_misc
// instance (see [wire.PrivateHandler]).
type PrivateHandler = wire.PrivateHandler

// builderHandlers are the handlers the builder's namespace gets: those of
// architectures that have an OCI platform (BuildKit builds for nothing
// else) and are not native.
func builderHandlers(specs []binfmt.Spec) []binfmt.Spec {
	var out []binfmt.Spec
	for _, s := range specs {
		a, ok := binfmt.ArchByName(s.Name)
		if ok && a.Platform != "" && !emulator.IsNative(a.Name) {
			out = append(out, s)
		}
	}
	return out
}

// identityMaps maps the ids this process's user namespace has to
// themselves: in a container, those it was given; in the initial
// namespace all of them (so that images with users above 65535 build
// too) but the last, 4294967294: a namespace that maps every id looks
// like the initial one, and buildkitd and runc would then not know they
// run in a user namespace and use cgroups as real root may (devices.deny
// refuses them).
func identityMaps(file string) ([]syscall.SysProcIDMap, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []syscall.SysProcIDMap
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s: cannot parse %q", file, line)
		}
		inside, err1 := strconv.ParseUint(f[0], 10, 32)
		size, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || size == 0 {
			return nil, fmt.Errorf("%s: cannot parse %q", file, line)
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: int(inside), HostID: int(inside), Size: int(size)})
	}
	if len(out) == 1 && out[0].ContainerID == 0 && out[0].Size == 1<<32-1 {
		out[0].Size--
	}
	return out, nil
}

// privateProc is the supervisor's end of an agent.
type privateProc struct {
	requests *os.File         // to the agent
	reports  chan agentReport // from it; closed when it closes its end
	pid      int              // buildkitd's
}

// startPrivate starts an agent in new namespaces with o.Handlers in their
// private instance, waits for its verification, writes buildkitd's
// configuration for the platforms that passed and tells the agent to run
// buildkitd. It returns the agent's command and the verification.
func (s *Supervisor) startPrivate(o Options, prep prepared, out io.Writer) (*exec.Cmd, *privateProc, []PrivateHandler, error) {
	// A PID namespace of its own, the agent its PID 1: when the agent
	// ends, however it ends (the daemon killed, buildkitd killed), the
	// kernel kills everything left in it, the build steps' processes
	// included.
	spec := userns.Spec{Handlers: o.Handlers, PID: true}
	if rootless() {
		// An ordinary user: its own ids and subordinate ranges, mapped
		// by newuidmap and newgidmap.
		u, err := user.Current()
		if err != nil {
			return nil, nil, nil, err
		}
		ids, err := userns.LookupSubIDs(u)
		if err != nil {
			return nil, nil, nil, err
		}
		spec.Subordinate = &ids
	} else if b, _ := os.ReadFile("/proc/self/setgroups"); strings.TrimSpace(string(b)) != "deny" {
		var err error
		if spec.UIDMaps, err = identityMaps("/proc/self/uid_map"); err != nil {
			return nil, nil, nil, err
		}
		if spec.GIDMaps, err = identityMaps("/proc/self/gid_map"); err != nil {
			return nil, nil, nil, err
		}
	}
	// Else this is a namespace that may not call setgroups (a test's
	// sandbox), nor may its children: userns's default maps root alone.
	raw, err := json.Marshal(agentConfig{Handlers: o.Handlers, ProbeTimeout: o.ProbeTimeout})
	if err != nil {
		return nil, nil, nil, err
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, nil, nil, err
	}
	cmd := exec.Command("/proc/self/exe", "mabd-builder")
	cmd.Env = append(childEnv(), envAgent+"="+string(raw))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{reqR, repW} // fds 3 and 4
	cmd.WaitDelay = 2 * time.Second
	err = userns.Start(cmd, spec)
	reqR.Close()
	repW.Close()
	if err != nil {
		reqW.Close()
		repR.Close()
		return nil, nil, nil, fmt.Errorf("start the builder's namespace: %w", err)
	}
	pp := &privateProc{requests: reqW, reports: make(chan agentReport, 4)}
	go func() {
		defer close(pp.reports)
		defer repR.Close()
		dec := json.NewDecoder(bufio.NewReader(io.LimitReader(repR, 1<<30)))
		for {
			var r agentReport
			if err := dec.Decode(&r); err != nil {
				return
			}
			pp.reports <- r
		}
	}()
	fail := func(err error) (*exec.Cmd, *privateProc, []PrivateHandler, error) {
		reqW.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, nil, err
	}
	var first agentReport
	select {
	case r, ok := <-pp.reports:
		if !ok {
			return fail(errors.New("the builder's namespace ended before it verified its handlers"))
		}
		first = r
	case <-time.After(o.ProbeTimeout + 2*time.Minute):
		return fail(errors.New("the builder's namespace did not verify its handlers in time"))
	}
	handlers := privateHandlers(o.Handlers, first.Verified)
	o.Platforms = verifiedPlatforms(handlers)
	if _, err := writeConfig(o, prep.snapshotter, prep.keep); err != nil {
		return fail(err)
	}
	env := childEnv()
	if rootless() {
		// runc keeps its state in $XDG_RUNTIME_DIR/runc: the user's,
		// next to the socket.
		env = append(environWithout(env, "XDG_RUNTIME_DIR"), "XDG_RUNTIME_DIR="+filepath.Dir(o.Socket))
	}
	env = append(env, prep.notify.env())
	start := agentRequest{Start: &agentStart{Path: o.Binary, Args: []string{o.Binary, "--config", prep.config}, Env: env}}
	if err := pp.send(start); err != nil {
		return fail(fmt.Errorf("start buildkitd in the builder's namespace: %w", err))
	}
	select {
	case r, ok := <-pp.reports:
		switch {
		case !ok:
			return fail(errors.New("the builder's namespace ended before buildkitd started"))
		case r.Error != "":
			return fail(errors.New(r.Error))
		}
		// 0 when it is gone already: waiting for it to be ready says
		// how it ended.
		pp.pid, _ = hostPID(cmd.Process.Pid, r.PID)
	case <-time.After(time.Minute):
		return fail(errors.New("the builder's namespace did not start buildkitd in time"))
	}
	return cmd, pp, handlers, nil
}

// hostPID returns the process id, as this process sees it, of the child
// of the agent (pid) whose id in the agent's PID namespace is nsPID: the
// last of the ids its status lists (NSpid).
func hostPID(agent, nsPID int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", agent))
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(nsPID)
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(b)) {
			st, err := os.ReadFile("/proc/" + c + "/status")
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(st), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == want {
					return strconv.Atoi(c)
				}
			}
		}
	}
	return 0, fmt.Errorf("no child of process %d is process %d of its PID namespace", agent, nsPID)
}

// send writes one request to the agent.
func (pp *privateProc) send(r agentRequest) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = pp.requests.Write(append(b, '\n'))
	return err
}

// verify asks the agent to verify its handlers again and returns what it
// found.
func (pp *privateProc) verify(timeout time.Duration) ([]emulator.Result, error) {
	if err := pp.send(agentRequest{Verify: true}); err != nil {
		return nil, err
	}
	select {
	case r, ok := <-pp.reports:
		if !ok {
			return nil, errors.New("the builder's namespace ended")
		}
		if r.Error != "" {
			return nil, errors.New(r.Error)
		}
		return r.Verified, nil
	case <-time.After(timeout):
		return nil, errors.New("the builder's namespace did not answer in time")
	}
}

// privateHandlers joins the handlers and their verification.
func privateHandlers(specs []binfmt.Spec, results []emulator.Result) []PrivateHandler {
	byArch := map[string]emulator.Result{}
	for _, r := range results {
		byArch[r.Arch] = r
	}
	var out []PrivateHandler
	for _, n := range emulator.Native() {
		if r, ok := byArch[n]; ok {
			out = append(out, PrivateHandler{Name: "qemu-" + n, Platform: r.Platform, State: r.State, Reason: r.Reason})
		}
	}
	for _, s := range specs {
		a, _ := binfmt.ArchByName(s.Name)
		h := PrivateHandler{Name: s.Name, Platform: a.Platform, Interpreter: s.Interpreter, Flags: s.Flags.String(), State: emulator.StateFailed, Reason: "not verified"}
		if r, ok := byArch[a.Name]; ok {
			h.State, h.Reason = r.State, r.Reason
		}
		out = append(out, h)
	}
	return out
}

// verifiedPlatforms are the platforms of the handlers that work: the
// worker's platforms, the host's own first (BuildKit lists them in this
// order, and clients take the first as the builder's native platform).
func verifiedPlatforms(hs []PrivateHandler) []string {
	var ps []string
	for _, h := range hs {
		if h.State != emulator.StateFailed && h.Platform != "" && !slices.Contains(ps, h.Platform) {
			ps = append(ps, h.Platform)
		}
	}
	own := platforms.Format(platforms.Normalize(platforms.DefaultSpec()))
	slices.SortFunc(ps, func(a, b string) int {
		switch {
		case a == own:
			return -1
		case b == own:
			return 1
		}
		return strings.Compare(a, b)
	})
	return ps
}

// handlersFor returns the private handlers that run the foreign platforms
// among ps: the one in have for its architecture, else one of the table
// for the emulator found in the default directories (trusted, static,
// target checked), with F, and P when the emulator honours it. A platform
// without a usable emulator is an error.
func handlersFor(ctx context.Context, ps []string, have []binfmt.Spec) ([]binfmt.Spec, error) {
	var out []binfmt.Spec
	var need []binfmt.Arch
	for _, p := range ps {
		a, err := binfmt.Lookup(p)
		if err != nil {
			return nil, err
		}
		if emulator.IsNative(a.Name) || slices.ContainsFunc(out, func(s binfmt.Spec) bool { return s.Name == a.HandlerName() }) {
			continue
		}
		if i := slices.IndexFunc(have, func(s binfmt.Spec) bool { return s.Name == a.HandlerName() }); i >= 0 {
			out = append(out, have[i])
			continue
		}
		need = append(need, a)
	}
	if len(need) == 0 {
		return out, nil
	}
	names := make([]string, len(need))
	for i, a := range need {
		names[i] = a.Name
	}
	cache, _ := emulator.LoadVersionCache("")
	found, refused, _ := emulator.FindTrustedWith(ctx, names, nil, cache)
	for _, a := range need {
		if err := refused[a.Name]; err != nil {
			return nil, err
		}
		e, ok := found[a.Name]
		if !ok {
			_, err := emulator.Find(a.Name, nil)
			return nil, err
		}
		if err := e.CheckFixBinary(); err != nil {
			return nil, err
		}
		flags := binfmt.FixBinary
		if emulator.PreservesArgv0(e.Version) {
			flags |= binfmt.PreserveArgv0
		}
		out = append(out, a.Spec(e.Path, flags))
	}
	return out, nil
}

// rootless reports whether this process is an ordinary user's: its
// builder maps the user's subordinate ids and runs buildkitd rootless.
func rootless() bool { return os.Geteuid() != 0 }

// environWithout is env without the variable name.
func environWithout(env []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, name+"=") })
}
