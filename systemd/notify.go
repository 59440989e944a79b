package systemd

import (
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends sd_notify(3) state changes to the service manager over
// the datagram socket named by $NOTIFY_SOCKET (a path, or an abstract
// socket written "@name"; vsock addresses are not supported).
//
// NewNotifier reads NOTIFY_SOCKET once, so later changes to the environment
// do not matter: mabd may remove NOTIFY_SOCKET from the environment of the
// programs it starts (buildkitd, probes) and keep notifying. A Notifier
// made without NOTIFY_SOCKET, the zero Notifier and a nil *Notifier do
// nothing: every method returns (false, nil). A method returns (true, nil)
// once the datagram is sent and (false, err) if it could not be; systemd
// does not acknowledge. A Notifier is safe for concurrent use.
//
// The messages are go-systemd's daemon.SdNotify* strings, sent the way
// daemon.SdNotify sends them (one datagram per call), except that the
// socket address is the one captured by NewNotifier rather than read again
// from the environment at each call.
type Notifier struct {
	addr *net.UnixAddr // nil: not under systemd
}

// NewNotifier returns a Notifier for $NOTIFY_SOCKET, read now. The unit
// must have Type=notify (and NotifyAccess=main or wider) for systemd to
// listen; without NOTIFY_SOCKET the Notifier does nothing.
func NewNotifier() *Notifier {
	s := os.Getenv("NOTIFY_SOCKET")
	if s == "" {
		return &Notifier{}
	}
	return &Notifier{addr: &net.UnixAddr{Name: s, Net: "unixgram"}}
}

// Ready tells systemd that start-up (or a reload) is complete: READY=1,
// STATUS=status (left out when status is empty) and MAINPID=<this
// process>, in one datagram, so the status is never seen without the
// readiness or the other way round.
func (n *Notifier) Ready(status string) (bool, error) {
	lines := []string{daemon.SdNotifyReady}
	if status != "" {
		lines = append(lines, "STATUS="+oneLine(status))
	}
	lines = append(lines, "MAINPID="+strconv.Itoa(os.Getpid()))
	return n.send(lines...)
}

// Status sets the one-line status that `systemctl status` shows (STATUS=).
// Newlines in s are replaced by spaces: a newline would start another
// assignment. An empty s clears the status.
func (n *Notifier) Status(s string) (bool, error) {
	return n.send("STATUS=" + oneLine(s))
}

// Reloading tells systemd that mabd is reloading its configuration
// (RELOADING=1) and, as systemd ≥ 253 requires for Type=notify-reload,
// when the reload started: MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>. Call
// Ready when the reload is done.
func (n *Notifier) Reloading() (bool, error) {
	if n == nil || n.addr == nil {
		return false, nil
	}
	usec, err := monotonicUsec()
	if err != nil {
		return false, err
	}
	return n.send(daemon.SdNotifyReloading, "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))
}

// Stopping tells systemd that mabd is shutting down (STOPPING=1).
func (n *Notifier) Stopping() (bool, error) {
	return n.send(daemon.SdNotifyStopping)
}

// Watchdog keeps the service watchdog (WatchdogSec=) from firing
// (WATCHDOG=1). Call it every WatchdogInterval.
func (n *Notifier) Watchdog() (bool, error) {
	return n.send(daemon.SdNotifyWatchdog)
}

// send writes the lines as one newline-separated datagram.
func (n *Notifier) send(lines ...string) (bool, error) {
	if n == nil || n.addr == nil {
		return false, nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(lines, "\n"))); err != nil {
		return false, err
	}
	return true, nil
}

// oneLine keeps a value on one line of the notify protocol.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd uses
// for MONOTONIC_USEC.
func monotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}

// WatchdogInterval reports how often to call Notifier.Watchdog: half of
// WATCHDOG_USEC (systemd's advice, so one late ping does not kill mabd),
// and true, when systemd set a watchdog for this process — WATCHDOG_USEC
// set, and WATCHDOG_PID unset or equal to os.Getpid(). Otherwise, including
// when the variables are malformed, it returns (0, false). The environment
// is left as it is.
func WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d / 2, true
}
