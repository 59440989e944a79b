// Package registry gives tests a real image registry and base images to
// build on, without any network.
//
// [Start] runs Debian's docker-registry (the CNCF distribution registry,
// 2.8) on 127.0.0.1 with a minimal configuration of its own: file system
// storage in a temporary directory, no authentication, no TLS. `make deps`
// (scripts/buildkit-deps.sh) installs the binary; a test without it fails,
// it is never skipped.
//
// [BusyboxIndex] builds a multi-platform base image from static busybox
// binaries, and [PushIndex] pushes it, with go-containerregistry; test code
// calls [PushBusyboxBase], which takes the busybox of each Debian
// architecture from the host (amd64) and the test fixtures (the others).
package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mabd/testing/logbuf"
)

// Paths searched for the registry binary, after $PATH.
var Paths = []string{"/usr/local/bin/docker-registry", "/usr/bin/docker-registry"}

// Find returns the path of the docker-registry binary.
func Find() (string, error) {
	if p, err := exec.LookPath("docker-registry"); err == nil {
		return p, nil
	}
	for _, p := range Paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("docker-registry not found in $PATH, " + strings.Join(Paths, " or ") + ": install docker-registry (make deps)")
}

// Config returns the registry's configuration: storage in dir, listening
// on addr, no authentication.
func Config(dir, addr string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
`, dir, addr)
}

// Start runs a registry on 127.0.0.1 at a free port and returns its address
// ("127.0.0.1:PORT"); it answers on /v2/ when Start returns and is stopped
// when the test ends. A missing binary fails the test with
// "install docker-registry (make deps)".
func Start(t testing.TB) (addr string) {
	t.Helper()
	bin, err := Find()
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	dir := t.TempDir()
	var last string
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatalf("registry: %v", err)
		}
		cfg := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfg, []byte(Config(filepath.Join(dir, "storage"), addr)), 0o644); err != nil {
			t.Fatalf("registry: %v", err)
		}
		out := &logbuf.Buffer{}
		cmd := exec.Command(bin, "serve", cfg)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("registry: start %s: %v", bin, err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if err := waitUp(addr, done, 15*time.Second); err != nil {
			stop()
			last = fmt.Sprintf("%v; its output:\n%s", err, out.String())
			if strings.Contains(out.String(), "address already in use") {
				continue // the port was taken between freeAddr and serve
			}
			t.Fatalf("registry: %s", last)
		}
		t.Cleanup(stop)
		return addr
	}
	t.Fatalf("registry: %s", last)
	return ""
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitUp waits until GET /v2/ answers 200, the process ends or timeout.
func waitUp(addr string, exited <-chan struct{}, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := c.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		select {
		case <-exited:
			return errors.New("docker-registry exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("docker-registry did not answer on %s within %v: %v", addr, timeout, last)
}
