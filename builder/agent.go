package builder

// The agent: the first process of the isolated builder's namespaces. It
// proves the private handlers work there, then runs buildkitd as its child
// and answers the supervisor's requests to verify them again.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/internal/userns"
)

// envAgent marks the re-executed binary as the builder's agent; its value
// is the JSON agentConfig. MaybeRunAgent reads and removes it.
const envAgent = "MABD_BUILDER_AGENT"

// The agent's file descriptors: requests from the supervisor, and its
// messages to it.
const (
	agentRequestFD = 3
	agentReportFD  = 4
)

// agentConfig is what the supervisor tells the agent.
type agentConfig struct {
	// Handlers are registered in the private instance (by userns before
	// the agent runs); the agent verifies them and removes those that
	// fail.
	Handlers     []binfmt.Spec
	ProbeTimeout time.Duration
}

// agentRequest is one request of the supervisor.
type agentRequest struct {
	// Start runs buildkitd: the program, its arguments and environment.
	Start *agentStart `json:"start,omitempty"`
	// Verify verifies the handlers registered now.
	Verify bool `json:"verify,omitempty"`
}

type agentStart struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

// agentReport is one message of the agent.
type agentReport struct {
	// Verified are the results of a verification: the native
	// architectures and the handlers.
	Verified []emulator.Result `json:"verified,omitempty"`
	// Removed are the handlers that failed it and were removed from the
	// private instance.
	Removed []string `json:"removed,omitempty"`
	// PID is buildkitd's, once it runs.
	PID int `json:"pid,omitempty"`
	// Error is a request that could not be done.
	Error string `json:"error,omitempty"`
}

// MaybeRunAgent turns this process into the builder's agent when the
// supervisor started it so, and never returns then; otherwise it returns
// at once. The binary that runs a [Supervisor] with private emulation must
// call it first thing: from an init function of the main package, or of a
// _test.go file of a test binary. It calls [userns.MaybeRunChild] first,
// which sets the namespace up.
func MaybeRunAgent() {
	userns.MaybeRunChild()
	raw, ok := os.LookupEnv(envAgent)
	if !ok {
		return
	}
	os.Unsetenv(envAgent)
	os.Exit(runAgent(raw))
}

// runAgent is the agent; it returns the exit status: buildkitd's (128+N
// when signal N ended it), or 125 when the agent failed.
func runAgent(raw string) int {
	var cfg agentConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "builder agent: %s: %v\n", envAgent, err)
		return 125
	}
	requests := os.NewFile(agentRequestFD, "agent requests")
	reports := os.NewFile(agentReportFD, "agent reports")
	if requests == nil || reports == nil {
		fmt.Fprintln(os.Stderr, "builder agent: started without its pipes")
		return 125
	}
	syscall.CloseOnExec(agentRequestFD)
	syscall.CloseOnExec(agentReportFD)
	enc := json.NewEncoder(reports)
	send := func(r agentReport) {
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "builder agent: report:", err)
		}
	}
	a := &agent{cfg: cfg, mount: binfmt.Mount{}}

	// Prove the handlers here, drop the failing ones, and tell.
	send(a.verify(true))

	// Wait for the supervisor to say how to start buildkitd (it writes
	// the configuration from the verification first).
	in := bufio.NewReader(io.LimitReader(requests, 1<<30))
	var req agentRequest
	if err := readRequest(in, &req); err != nil || req.Start == nil {
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "builder agent:", err)
		}
		return 125
	}

	// buildkitd gets SIGKILL when the thread that starts it ends: this
	// one, locked for the agent's life.
	runtime.LockOSThread()
	signal.Ignore(syscall.SIGHUP)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	cmd := exec.Command(req.Start.Path, req.Start.Args[1:]...)
	cmd.Args = req.Start.Args
	cmd.Env = req.Start.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		send(agentReport{Error: "start buildkitd: " + err.Error()})
		fmt.Fprintln(os.Stderr, "builder agent: start buildkitd:", err)
		return 125
	}
	send(agentReport{PID: cmd.Process.Pid})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Requests while buildkitd runs: verify again.
	go func() {
		for {
			var req agentRequest
			if err := readRequest(in, &req); err != nil {
				return // the supervisor is gone; buildkitd goes with it (SIGKILL from the kernel, or SIGTERM below)
			}
			if req.Verify {
				send(a.verify(false))
			}
		}
	}()
	for {
		select {
		case sig := <-sigs:
			cmd.Process.Signal(sig)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ee.ExitCode()
			}
			if err != nil {
				return 125
			}
			return 0
		}
	}
}

// readRequest decodes one line of requests.
func readRequest(in *bufio.Reader, req *agentRequest) error {
	line, err := in.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, req)
}

// agent is the agent's state.
type agent struct {
	cfg   agentConfig
	mount binfmt.Mount // the private instance, on /proc/sys/fs/binfmt_misc here
}

// verify probes the native architectures and the handlers registered
// now, inside the namespace; with drop, it removes the handlers that
// failed.
func (a *agent) verify(drop bool) agentReport {
	var arches []binfmt.Arch
	for _, n := range emulator.Native() {
		if x, ok := binfmt.ArchByName(n); ok && emulator.CanProbe(n) {
			arches = append(arches, x)
		}
	}
	for _, h := range a.cfg.Handlers {
		if _, err := a.mount.Entry(h.Name); err != nil {
			continue // dropped earlier
		}
		if x, ok := binfmt.ArchByName(h.Name); ok && emulator.CanProbe(x.Name) {
			arches = append(arches, x)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ProbeTimeout+time.Minute)
	defer cancel()
	var r agentReport
	r.Verified = emulator.ProbeAll(ctx, arches, emulator.ProbeOptions{Mount: a.mount, Timeout: a.cfg.ProbeTimeout})
	if !drop {
		return r
	}
	for _, res := range r.Verified {
		if res.State != emulator.StateFailed {
			continue
		}
		x, _ := binfmt.ArchByName(res.Arch)
		if err := a.mount.Remove(x.HandlerName()); err == nil {
			r.Removed = append(r.Removed, x.HandlerName())
		}
	}
	return r
}
