package builder

// How buildkitd is started and what is known of one process of it.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// buildkitdCommand is how buildkitd is started, all of it: the program
// and its arguments, its environment and its process attributes. Whatever
// changes how buildkitd runs (a namespace, a mount, a credential) belongs
// here.
func buildkitdCommand(o Options, prep prepared) *exec.Cmd {
	cmd := exec.Command(o.Binary, "--config", prep.config)
	cmd.Env = append(childEnv(), prep.notify.env())
	// buildkitd stops with the supervisor, however that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	// Orphaned children holding the output pipe must not block Wait.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// childEnv is this process's environment with the sbin directories on PATH
// (buildkitd looks for runc there) and without systemd's variables for
// the service's main process: buildkitd would otherwise send its own
// READY=1 and watchdog pings on the daemon's NOTIFY_SOCKET, or take the
// daemon's activated sockets.
func childEnv() []string {
	env := os.Environ()
	path := os.Getenv("PATH")
	have := map[string]bool{}
	for _, d := range filepath.SplitList(path) {
		have[d] = true
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if !have[d] {
			path += string(filepath.ListSeparator) + d
		}
	}
	path = strings.TrimPrefix(path, string(filepath.ListSeparator))
	out := env[:0:0]
	for _, e := range env {
		name, _, _ := strings.Cut(e, "=")
		switch name {
		case "PATH", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			continue
		}
		out = append(out, e)
	}
	return append(out, "PATH="+path)
}

// startProc starts cmd, with its output going to out, and waits for it
// in the background.
func startProc(cmd *exec.Cmd, out *tailWriter) (*proc, error) {
	cmd.Stdout, cmd.Stderr = out, out
	if err := startLocked(cmd); err != nil {
		return nil, fmt.Errorf("start buildkitd: %w", err)
	}
	return watchProc(cmd, out, nil), nil
}

// watchProc waits for the started cmd in the background. pp is the
// agent's pipes when cmd is the agent of a private namespace.
func watchProc(cmd *exec.Cmd, out *tailWriter, pp *privateProc) *proc {
	p := &proc{cmd: cmd, start: time.Now(), done: make(chan struct{}), out: out, private: pp}
	go func() {
		p.err = cmd.Wait()
		if pp != nil {
			pp.requests.Close()
		}
		close(p.done)
	}()
	return p
}

// The kernel sends Pdeathsig when the *thread* that started the child
// exits, and the Go runtime may end threads; so children are started from
// one goroutine locked to its thread for the life of the process.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// startLocked starts cmd from the locked spawning thread.
func startLocked(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnCh {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnCh <- r
	return <-r.err
}

// proc is one buildkitd process, or the agent of a private namespace
// that runs it (and exits as it does).
type proc struct {
	cmd     *exec.Cmd
	start   time.Time
	done    chan struct{} // closed when it has exited
	err     error         // Wait's result, set before done is closed
	out     *tailWriter
	private *privateProc // the agent's pipes; nil with EmulationHost
}

func (p *proc) pid() int {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// describe says how p exited and what it said last.
func (p *proc) describe() string {
	why := "buildkitd exited"
	var ee *exec.ExitError
	switch {
	case p.private != nil && errors.As(p.err, &ee) && ee.ExitCode() > 128:
		// The agent exits with 128+N when signal N ended buildkitd.
		why += ": signal: " + unix.SignalName(syscall.Signal(ee.ExitCode()-128))
		if n := syscall.Signal(ee.ExitCode() - 128); n == syscall.SIGKILL {
			why = "buildkitd exited: signal: killed"
		}
	case p.err != nil:
		why += ": " + p.err.Error()
	default:
		why += " with status 0"
	}
	if l := p.out.last(); l != "" {
		why += ": " + l
	}
	return why
}

// deadProc stands for a buildkitd that could not be started.
func deadProc(err error) *proc {
	p := &proc{start: time.Now(), done: make(chan struct{}), err: err, out: newTailWriter(nil, 1)}
	close(p.done)
	return p
}
