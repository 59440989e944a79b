package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mabd/internal/safefile"
)

// notifySocket is where buildkitd says READY=1 (its NOTIFY_SOCKET, the
// systemd protocol buildkitd speaks): the supervisor knows it is up
// without a BuildKit client.
type notifySocket struct {
	conn *net.UnixConn
	path string // "@…" for an abstract socket
}

// maxSocketPath is the longest path a unix socket's address holds.
const maxSocketPath = 107

// listenNotify makes the notify socket of the buildkitd on socket: a file
// beside it, or an abstract one when that path would be too long.
func listenNotify(socket string) (*notifySocket, error) {
	path := filepath.Join(filepath.Dir(socket), "."+filepath.Base(socket)+".notify")
	if len(path) > maxSocketPath {
		path = fmt.Sprintf("@mabd-buildkitd-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
	} else if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove the stale notify socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listen for buildkitd's READY=1: %w", err)
	}
	return &notifySocket{conn: conn, path: path}, nil
}

// env is buildkitd's NOTIFY_SOCKET.
func (n *notifySocket) env() string { return "NOTIFY_SOCKET=" + n.path }

// drain forgets what an earlier buildkitd said.
func (n *notifySocket) drain() {
	buf := make([]byte, 4096)
	n.conn.SetReadDeadline(time.Now())
	for {
		if _, err := n.conn.Read(buf); err != nil {
			return
		}
	}
}

// waitReady waits for a datagram with the line READY=1, until ctx ends or
// done is closed (buildkitd exited).
func (n *notifySocket) waitReady(ctx context.Context, done <-chan struct{}) error {
	buf := make([]byte, 4096)
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-done:
			return errors.New("buildkitd exited")
		default:
		}
		n.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		k, err := n.conn.Read(buf)
		if err != nil {
			continue
		}
		for _, l := range bytes.Split(buf[:k], []byte("\n")) {
			if string(l) == "READY=1" {
				return nil
			}
		}
	}
}

// close closes the socket and removes its file.
func (n *notifySocket) close() {
	if n == nil {
		return
	}
	n.conn.Close()
	if !strings.HasPrefix(n.path, "@") {
		os.Remove(n.path)
	}
}

// binaryVersion is what `buildkitd --version` says of BuildKit's version
// ("v0.34.2"); "" when it says nothing usable within 10 s.
func binaryVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	// "buildkitd github.com/moby/buildkit v0.34.2 <commit>"
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return ""
	}
	return f[2]
}

// connectedClients counts the connections buildkitd (pid) has accepted on
// socket and still holds, from the kernel's table of unix sockets in its
// network namespace (/proc/PID/net/unix: an accepted socket has the
// listener's path and state 03, connected).
func connectedClients(pid int, socket string) (int, error) {
	if pid <= 0 {
		return 0, errors.New("buildkitd is not running")
	}
	b, err := safefile.Read("/proc/"+strconv.Itoa(pid)+"/net/unix", 64<<20, safefile.Options{})
	if err != nil {
		return 0, err
	}
	return countConnected(b, socket), nil
}

// countConnected counts the lines of a /proc/net/unix table that are
// connections accepted on the listener at socket (its path, state 03).
func countConnected(table []byte, socket string) int {
	n := 0
	for _, l := range bytes.Split(table, []byte("\n")) {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(string(l))
		if len(f) == 8 && f[7] == socket && f[5] == "03" {
			n++
		}
	}
	return n
}
