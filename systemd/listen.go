package systemd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Listeners returns the listening sockets systemd passed to this process
// by socket activation (mabd.socket), in the order of the socket unit's
// Listen* lines, or (nil, nil) when there are none (LISTEN_PID is not this
// process or LISTEN_FDS is unset).
//
// It unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so programs mabd
// starts do not believe the sockets are theirs, and marks the descriptors
// close-on-exec. Every passed descriptor must be a listening stream socket
// (ListenStream=); if one is not, all are closed and an error names it.
// Call it once: the descriptors are handed over to the returned listeners.
func Listeners() ([]net.Listener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	defer func() {
		for _, f := range files {
			f.Close() // the listeners hold duplicates
		}
	}()
	ls := make([]net.Listener, 0, len(files))
	for i, f := range files {
		l, err := fileListener(f)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("socket activation: fd %d (%s): %w", 3+i, f.Name(), err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// fileListener makes a listener of a passed descriptor, which must be a
// socket in the listening state.
func fileListener(f *os.File) (net.Listener, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var listening int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		listening, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("not a socket: %w", serr)
	}
	if listening == 0 {
		return nil, errors.New("not a listening stream socket (use ListenStream= in the socket unit)")
	}
	return net.FileListener(f)
}

// UnixListener listens on the unix stream socket path, for when systemd
// passes no socket (see Listeners). It creates the parent directory (mode
// 0755) if needed, and a socket file left behind by a mabd that died is
// replaced: an existing socket is removed only if nothing accepts a
// connection on it. If something does, the error says "another mabd is
// listening on PATH" and the file is left alone; a file at path that is not
// a socket is never removed.
//
// The socket ends up with permissions mode (only its permission bits
// count) and, when group is not "", owned by that group (a name, looked up
// with os/user, or a numeric id), so that root and the group's members can
// connect with mode 0660.
//
// No one else can connect at any moment, whatever the umask: the socket is
// given mode 0600 with fchmod(2) before bind(2) (Linux creates the file
// with the socket's mode, less the umask), its group and then its mode are
// set on the file while it is bound but not yet listening — when connect(2)
// is refused to everyone — and only then does listen(2) open it. The
// process-wide umask is never changed, so other goroutines are not
// affected.
//
// Closing the listener removes the socket file, as for net.Listen.
func UnixListener(path string, mode os.FileMode, group string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control socket: empty path")
	}
	gid := -1
	if group != "" {
		g, err := lookupGID(group)
		if err != nil {
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
		gid = g
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	fd, err := bindUnix(path)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
			os.Remove(path)
		}
	}()
	if gid >= 0 {
		if err := unix.Lchown(path, -1, gid); err != nil {
			return nil, fmt.Errorf("control socket: chown %s to group %s: %w", path, group, err)
		}
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return nil, fmt.Errorf("control socket: listen on %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	l, err := net.FileListener(f) // a duplicate of fd
	f.Close()
	ok = true // fd is closed; path is the listener's from here on
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(true)
	return ul, nil
}

// bindUnix returns a unix stream socket bound to path, not listening,
// whose file has mode 0600 (less the umask).
func bindUnix(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("control socket: %w", os.NewSyscallError("socket", err))
	}
	// Best effort: should a kernel refuse it, the socket is still safe,
	// since nobody can connect before listen, by which time the mode is
	// set.
	_ = unix.Fchmod(fd, 0o600)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return -1, fmt.Errorf("control socket: %s appeared meanwhile (another mabd starting?)", path)
		}
		return -1, fmt.Errorf("control socket: bind %s: %w", path, err)
	}
	return fd, nil
}

// removeStale removes a socket file at path that nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket: %s exists and is not a socket (%s); not removing it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("another mabd is listening on %s", path)
	case errors.Is(err, syscall.EAGAIN):
		// The backlog is full: someone listens, and is busy.
		return fmt.Errorf("another mabd is listening on %s (busy)", path)
	case errors.Is(err, syscall.ENOENT):
		return nil // gone meanwhile
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("control socket: removing stale %s: %w", path, err)
		}
		return nil
	default:
		return fmt.Errorf("control socket: cannot tell whether something listens on %s: %w", path, err)
	}
}

// lookupGID resolves a group name, or a numeric gid, to its id.
func lookupGID(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			if id, perr := strconv.Atoi(group); perr == nil && id >= 0 {
				return id, nil
			}
		}
		return 0, fmt.Errorf("group %q: %w", group, err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q: gid %q: %w", group, g.Gid, err)
	}
	return id, nil
}
