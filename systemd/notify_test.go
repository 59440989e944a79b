package systemd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// notifySocket listens like systemd on a datagram socket at addr (a path,
// or "@name" for an abstract socket), points NOTIFY_SOCKET at it and
// returns it.
func notifySocket(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr)
	return conn
}

// datagram returns the next datagram on conn.
func datagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotifierDatagrams(t *testing.T) {
	conn := notifySocket(t, filepath.Join(t.TempDir(), "notify"))
	n := NewNotifier()
	// NOTIFY_SOCKET was read once: the Notifier keeps working when mabd
	// hides the variable from the programs it starts.
	t.Setenv("NOTIFY_SOCKET", "")
	pid := strconv.Itoa(os.Getpid())

	tests := []struct {
		name string
		call func(*Notifier) (bool, error)
		want string // exact datagram, or
		re   string // a pattern it must match
	}{
		{"Ready", func(n *Notifier) (bool, error) { return n.Ready("8 handlers, BuildKit up") },
			"READY=1\nSTATUS=8 handlers, BuildKit up\nMAINPID=" + pid, ""},
		{"ReadyNoStatus", func(n *Notifier) (bool, error) { return n.Ready("") },
			"READY=1\nMAINPID=" + pid, ""},
		{"ReadyMultiline", func(n *Notifier) (bool, error) { return n.Ready("a\nb") },
			"READY=1\nSTATUS=a b\nMAINPID=" + pid, ""},
		{"Status", func(n *Notifier) (bool, error) { return n.Status("reconciling") },
			"STATUS=reconciling", ""},
		{"StatusNoInjection", func(n *Notifier) (bool, error) { return n.Status("x\nREADY=1\r\nSTOPPING=1") },
			"STATUS=x READY=1 STOPPING=1", ""},
		{"StatusEmpty", func(n *Notifier) (bool, error) { return n.Status("") },
			"STATUS=", ""},
		{"Reloading", func(n *Notifier) (bool, error) { return n.Reloading() },
			"", `^RELOADING=1\nMONOTONIC_USEC=([0-9]+)$`},
		{"Stopping", func(n *Notifier) (bool, error) { return n.Stopping() },
			"STOPPING=1", ""},
		{"Watchdog", func(n *Notifier) (bool, error) { return n.Watchdog() },
			"WATCHDOG=1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := monotonicUsec()
			if err != nil {
				t.Fatal(err)
			}
			ok, err := tt.call(n)
			if !ok || err != nil {
				t.Fatalf("= (%v, %v), want (true, nil)", ok, err)
			}
			after, _ := monotonicUsec()
			got := datagram(t, conn)
			if tt.re == "" {
				if got != tt.want {
					t.Fatalf("datagram %q, want %q", got, tt.want)
				}
				return
			}
			m := regexp.MustCompile(tt.re).FindStringSubmatch(got)
			if m == nil {
				t.Fatalf("datagram %q does not match %q", got, tt.re)
			}
			usec, _ := strconv.ParseUint(m[1], 10, 64)
			if usec < before || usec > after {
				t.Fatalf("MONOTONIC_USEC=%d, not within [%d, %d] (CLOCK_MONOTONIC around the call)", usec, before, after)
			}
		})
	}
}

func TestNotifierAbstractSocket(t *testing.T) {
	conn := notifySocket(t, fmt.Sprintf("@mabd-systemd-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if ok, err := NewNotifier().Watchdog(); !ok || err != nil {
		t.Fatalf("Watchdog() = (%v, %v), want (true, nil)", ok, err)
	}
	if got := datagram(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("datagram %q, want WATCHDOG=1", got)
	}
}

func TestNotifierNotUnderSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	notifiers := map[string]*Notifier{
		"NewNotifier": NewNotifier(),
		"zero":        {},
		"nil":         nil,
	}
	calls := map[string]func(*Notifier) (bool, error){
		"Ready":     func(n *Notifier) (bool, error) { return n.Ready("x") },
		"Status":    func(n *Notifier) (bool, error) { return n.Status("x") },
		"Reloading": (*Notifier).Reloading,
		"Stopping":  (*Notifier).Stopping,
		"Watchdog":  (*Notifier).Watchdog,
	}
	for nname, n := range notifiers {
		for cname, call := range calls {
			if ok, err := call(n); ok || err != nil {
				t.Errorf("%s: %s() = (%v, %v), want (false, nil)", nname, cname, ok, err)
			}
		}
	}
}

func TestNotifierSendFails(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	ok, err := NewNotifier().Ready("x")
	if ok || err == nil {
		t.Fatalf("Ready() = (%v, %v), want (false, an error)", ok, err)
	}
	if !strings.Contains(err.Error(), "nobody-listens") {
		t.Errorf("error %q does not name the socket", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name       string
		usec, wpid string // "" leaves the variable unset
		want       time.Duration
		wantOK     bool
	}{
		{"NoPID", "2000000", "", time.Second, true},
		{"OurPID", "2000000", pid, time.Second, true},
		{"ForeignPID", "2000000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"Unset", "", "", 0, false},
		{"Zero", "0", "", 0, false},
		{"Malformed", "soon", "", 0, false},
		{"MalformedPID", "2000000", "me", 0, false},
		{"Short", "30", "", 15 * time.Microsecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setOrUnset(t, "WATCHDOG_USEC", tt.usec)
			setOrUnset(t, "WATCHDOG_PID", tt.wpid)
			got, ok := WatchdogInterval()
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("WatchdogInterval() = (%v, %v), want (%v, %v)", got, ok, tt.want, tt.wantOK)
			}
			// The environment is left as it is.
			if v := os.Getenv("WATCHDOG_USEC"); v != tt.usec {
				t.Errorf("WATCHDOG_USEC changed to %q", v)
			}
		})
	}
}

// setOrUnset sets the variable for the test, or unsets it when v is "".
func setOrUnset(t *testing.T, k, v string) {
	t.Setenv(k, v) // restored after the test
	if v == "" {
		os.Unsetenv(k)
	}
}
