package main

// The helper: the bench program re-executed inside a sandbox (or anywhere)
// to time one child process without the cost of setting the sandbox up.
//
//	mabd-bench helper time [-o FILE] LABEL -- CMD [ARG...]
//	    runs CMD (stdout to FILE or /dev/null) and prints
//	    "T LABEL NANOSECONDS EXITCODE": the wall-clock time from just before
//	    the fork to the end of wait. It exits with CMD's status and copies
//	    CMD's stderr to its own when CMD fails.
//	mabd-bench helper writeloop LINES
//	    writes each line of the file LINES to $BINFMT/register (open, write,
//	    close, as a shell redirection does) and prints "T goloop NS 0".
//	mabd-bench helper probeloop DIR WORKERS
//	    runs every file of DIR (mabd's tiny probes, copied there), WORKERS
//	    at a time, with no chroot and no check beyond "exited 0 and printed
//	    a line", and prints "T probeloop NS 0": the least any verification
//	    through these emulators costs, QEMU's starts alone.
//	mabd-bench helper ready MABD
//	    starts `MABD daemon --no-buildkit` on $BINFMT with an empty
//	    configuration and its own NOTIFY_SOCKET, prints "T ready NS 0" when
//	    READY=1 arrives, then stops it with SIGTERM and prints "T stop NS RC".

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mabd/internal/parallel"
)

func helperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "mabd-bench helper: time|writeloop|probeloop|ready")
		return 2
	}
	var err error
	rc := 0
	switch args[0] {
	case "time":
		rc, err = helperTime(args[1:])
	case "writeloop":
		err = helperWriteLoop(args[1:])
	case "probeloop":
		err = helperProbeLoop(args[1:])
	case "ready":
		err = helperReady(args[1:])
	default:
		err = fmt.Errorf("unknown helper %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mabd-bench helper:", err)
		if rc == 0 {
			rc = 125
		}
	}
	return rc
}

func helperTime(args []string) (int, error) {
	outFile := os.DevNull
	if len(args) >= 2 && args[0] == "-o" {
		outFile, args = args[1], args[2:]
	}
	if len(args) < 3 || args[1] != "--" {
		return 2, errors.New("usage: time [-o FILE] LABEL -- CMD [ARG...]")
	}
	label, argv := args[0], args[2:]
	out, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 125, err
	}
	defer out.Close()
	errf, err := os.CreateTemp("", "mabd-bench-stderr-")
	if err != nil {
		return 125, err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, errf
	if cmd.Err != nil {
		return 127, cmd.Err
	}
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	rc := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		rc = ee.ExitCode()
		if rc < 0 {
			rc = 128
		}
	case err != nil:
		return 126, err
	}
	fmt.Printf("T %s %d %d\n", label, elapsed.Nanoseconds(), rc)
	if rc != 0 {
		errf.Seek(0, io.SeekStart)
		b, _ := io.ReadAll(io.LimitReader(errf, 64<<10))
		fmt.Fprintf(os.Stderr, "%s (%s) exited %d:\n%s\n", label, strings.Join(argv, " "), rc, b)
	}
	return rc, nil
}

func helperWriteLoop(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: writeloop LINES")
	}
	mount := os.Getenv("BINFMT")
	if mount == "" {
		return errors.New("$BINFMT is not set: run inside a sandbox")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		lines = append(lines, []byte(l+"\n"))
	}
	reg := filepath.Join(mount, "register")
	start := time.Now()
	for _, l := range lines {
		f, err := os.OpenFile(reg, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(l)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("register %.40s…: %w", l, err)
		}
	}
	fmt.Printf("T goloop %d 0\n", time.Since(start).Nanoseconds())
	return nil
}

func helperProbeLoop(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: probeloop DIR WORKERS")
	}
	workers, err := strconv.Atoi(args[1])
	if err != nil || workers < 1 {
		return fmt.Errorf("workers %q: want a positive number", args[1])
	}
	ents, err := os.ReadDir(args[0])
	if err != nil {
		return err
	}
	var progs []string
	for _, e := range ents {
		progs = append(progs, filepath.Join(args[0], e.Name()))
	}
	if len(progs) == 0 {
		return fmt.Errorf("no probe in %s", args[0])
	}
	errs := make([]error, len(progs))
	start := time.Now()
	// Scheduled as mabd verify schedules its probes.
	parallel.Run(len(progs), workers, func(i int) {
		out, err := exec.Command(progs[i]).Output()
		if err == nil && len(bytes.TrimSpace(out)) == 0 {
			err = errors.New("printed nothing")
		}
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", progs[i], err)
		}
	})
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("T probeloop %d 0\n", elapsed.Nanoseconds())
	return nil
}

func helperReady(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: ready MABD")
	}
	mount := os.Getenv("BINFMT")
	if mount == "" {
		return errors.New("$BINFMT is not set: run inside a sandbox")
	}
	dir, err := os.MkdirTemp("/tmp", "mabd-ready-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		return err
	}
	n, err := listenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return err
	}
	defer n.Close()
	log := &cappedBuffer{max: 64 << 10}
	cmd := exec.Command(args[0], "daemon", "--config", cfg, "--binfmt-mount", mount,
		"--socket", filepath.Join(dir, "mabd.sock"), "--state-dir", filepath.Join(dir, "state"), "--no-buildkit")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.path)
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if _, err := n.waitFor("READY=1", 2*time.Minute, done); err != nil {
		cmd.Process.Kill()
		return fmt.Errorf("%w; daemon log:\n%s", err, log.String())
	}
	fmt.Printf("T ready %d 0\n", time.Since(start).Nanoseconds())
	stop := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	rc := 0
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			rc = ee.ExitCode()
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("the daemon did not stop within 30 s after SIGTERM; log:\n%s", log.String())
	}
	fmt.Printf("T stop %d %d\n", time.Since(stop).Nanoseconds(), rc)
	return nil
}

// notifyListener is the systemd side of sd_notify: a datagram socket whose
// messages carry the sender's credentials (SO_PASSCRED), so the sender's
// PID is known as seen from here even across PID namespaces.
type notifyListener struct {
	path string
	conn *net.UnixConn
	msgs chan notifyMsg
}

type notifyMsg struct {
	text string
	pid  int
}

func listenNotify(path string) (*notifyListener, error) {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	if err := setPassCred(c); err != nil {
		c.Close()
		return nil, err
	}
	n := &notifyListener{path: path, conn: c, msgs: make(chan notifyMsg, 256)}
	go func() {
		buf := make([]byte, 8192)
		oob := make([]byte, 256)
		for {
			k, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- notifyMsg{text: string(buf[:k]), pid: senderPID(oob[:oobn])}
		}
	}()
	return n, nil
}

func (n *notifyListener) Close() error { return n.conn.Close() }

// waitFor returns the first message with the line want; it fails after
// timeout or when exited yields (the process is gone).
func (n *notifyListener) waitFor(want string, timeout time.Duration, exited <-chan error) (notifyMsg, error) {
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				return notifyMsg{}, fmt.Errorf("notify socket closed before %s", want)
			}
			for _, l := range strings.Split(m.text, "\n") {
				if l == want {
					return m, nil
				}
			}
		case err := <-exited:
			return notifyMsg{}, fmt.Errorf("the daemon exited before %s: %v", want, err)
		case <-deadline:
			return notifyMsg{}, fmt.Errorf("no %s within %v", want, timeout)
		}
	}
}

// cappedBuffer keeps the last max bytes written to it.
type cappedBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b = append(c.b, p...)
	if len(c.b) > c.max {
		c.b = append([]byte(nil), c.b[len(c.b)-c.max:]...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}

// parseTimes reads the "T LABEL NS RC" and "count N" lines a sandbox
// script printed: times by label in ms, in order, and the counts.
func parseTimes(out string) (map[string][]float64, []int) {
	times := map[string][]float64{}
	var counts []int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "T":
			var ns int64
			if _, err := fmt.Sscan(f[2], &ns); err == nil {
				times[f[1]] = append(times[f[1]], float64(ns)/1e6)
			}
		case len(f) == 2 && f[0] == "count":
			var c int
			if _, err := fmt.Sscan(f[1], &c); err == nil {
				counts = append(counts, c)
			}
		}
	}
	return times, counts
}
