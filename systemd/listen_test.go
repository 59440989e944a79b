package systemd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a socket-activated service (see
// TestMain) instead of running tests.
const helperEnv = "MABD_SYSTEMD_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "listeners" {
		os.Exit(listenersHelper())
	}
	os.Exit(m.Run())
}

// listenersHelper is started by systemd-socket-activate: it takes its
// sockets with Listeners, accepts one connection on the first and tells
// the client what it got.
func listenersHelper() int {
	ls, err := Listeners()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Listeners:", err)
		return 1
	}
	if len(ls) == 0 {
		fmt.Fprintln(os.Stderr, "Listeners: no sockets passed")
		return 1
	}
	l := ls[0].(*net.UnixListener)
	_ = l.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := l.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Accept:", err)
		return 1
	}
	defer c.Close()
	_, lfds := os.LookupEnv("LISTEN_FDS")
	_, lpid := os.LookupEnv("LISTEN_PID")
	fmt.Fprintf(c, "listeners=%d network=%s addr=%s LISTEN_FDS-set=%v LISTEN_PID-set=%v\n",
		len(ls), l.Addr().Network(), l.Addr(), lfds, lpid)
	return 0
}

func TestListenersSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate is needed (apt-get install systemd): %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, "-l", sock, "-E", helperEnv+"=listeners", exe)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	// systemd-socket-activate starts the helper on the first connection.
	var conn net.Conn
	for conn == nil {
		conn, err = net.Dial("unix", sock)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("cannot connect to %s: %v\n%s", sock, err, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer from the socket-activated helper: %v\n%s", err, stderr.String())
	}
	want := fmt.Sprintf("listeners=1 network=unix addr=%s LISTEN_FDS-set=false LISTEN_PID-set=false\n", sock)
	if line != want {
		t.Fatalf("helper said %q, want %q\n%s", line, want, stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
}

func TestListenersNone(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"LISTEN_PID": "1", "LISTEN_FDS": "1"}, // another process's
		{"LISTEN_PID": strconv.Itoa(os.Getpid()), "LISTEN_FDS": "0"},     // none
		{"LISTEN_PID": strconv.Itoa(os.Getpid()), "LISTEN_FDS": "bogus"}, // malformed
	} {
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			setOrUnset(t, k, env[k])
		}
		ls, err := Listeners()
		if ls != nil || err != nil {
			t.Errorf("%v: Listeners() = (%v, %v), want (nil, nil)", env, ls, err)
		}
	}
}

// checkListens fails unless l accepts a connection made to path.
func checkListens(t *testing.T, l net.Listener, path string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, err = io.WriteString(c, "hi")
			c.Close()
		}
		done <- err
	}()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to %s: %v", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hi" {
		t.Fatalf("read %q, %v from %s", got, err, path)
	}
	if err := <-done; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

func fileStat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestUnixListenerModeAndDir(t *testing.T) {
	for _, mode := range []os.FileMode{0o660, 0o600, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "run", "mabd", "mabd.sock")
			l, err := UnixListener(path, mode, "")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != mode {
				t.Errorf("socket mode %v, want socket with %v", fi.Mode(), mode)
			}
			if di, err := os.Stat(filepath.Dir(path)); err != nil || !di.IsDir() {
				t.Errorf("parent directory not created: %v", err)
			}
			checkListens(t, l, path)
			l.Close()
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Close left %s behind: %v", path, err)
			}
		})
	}
}

func TestUnixListenerBindIsPrivateUntilListen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	fd, err := bindUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if perm := fileStat(t, path).Mode & 0o777; perm&0o077 != 0 {
		t.Errorf("bound socket file has mode %#o: group or others could connect before chmod", perm)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Error("connected to a socket that is bound but not listening")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect before listen: %v, want connection refused", err)
	}
}

func TestUnixListenerStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mabd.sock")
	// A listener that "died" without removing its socket file.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l, err := UnixListener(path, 0o660, "")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l.Close()
	checkListens(t, l, path)
}

func TestUnixListenerLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mabd.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	l, err := UnixListener(path, 0o660, "")
	if err == nil {
		l.Close()
		t.Fatal("UnixListener took over a socket something listens on")
	}
	if want := "another mabd is listening on " + path; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The probe's connection is in live's backlog; then live still works.
	_ = live.(*net.UnixListener).SetDeadline(time.Now().Add(5 * time.Second))
	if c, err := live.Accept(); err != nil {
		t.Fatalf("UnixListener did not probe the live socket: %v", err)
	} else {
		c.Close()
	}
	_ = live.(*net.UnixListener).SetDeadline(time.Time{})
	checkListens(t, live, path) // untouched
}

func TestUnixListenerNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mabd.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := UnixListener(path, 0o660, ""); err == nil {
		l.Close()
		t.Fatal("UnixListener replaced a regular file")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestUnixListenerGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to give the socket to another group")
	}
	groups := []string{"root", "0"}
	// A second group, other than the one the file gets anyway.
	for _, g := range []string{"nogroup", "daemon", "bin"} {
		if _, err := user.LookupGroup(g); err == nil {
			groups = append(groups, g)
			break
		}
	}
	for _, group := range groups {
		t.Run(group, func(t *testing.T) {
			wantGID, err := lookupGID(group)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "mabd.sock")
			l, err := UnixListener(path, 0o660, group)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			st := fileStat(t, path)
			if int(st.Gid) != wantGID || st.Mode&0o777 != 0o660 {
				t.Errorf("socket gid %d mode %#o, want gid %d mode 0660", st.Gid, st.Mode&0o777, wantGID)
			}
			checkListens(t, l, path)
		})
	}
	if wantGID, _ := lookupGID("root"); wantGID != 0 {
		t.Errorf("group root has gid %d, want 0", wantGID)
	}
}

func TestUnixListenerUnknownGroup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "mabd.sock")
	l, err := UnixListener(path, 0o660, "no-such-group-mabd")
	if err == nil {
		l.Close()
		t.Fatal("UnixListener accepted an unknown group")
	}
	if !strings.Contains(err.Error(), "no-such-group-mabd") {
		t.Errorf("error %q does not name the group", err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UnixListener changed the file system before failing: %v", err)
	}
}
