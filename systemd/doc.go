// Package systemd is mabd's side of systemd's protocols: readiness and
// status notification (sd_notify), the watchdog, socket activation, logging
// to the journal, and the control socket mabd creates itself when systemd
// does not pass one. The unit files that go with it are in
// packaging/systemd.
//
// Like go-systemd's daemon package, on which it builds, the API is a thin
// layer over each protocol, and calls that talk to systemd return
// (bool, error) so callers can tell "not running under systemd"
// (false, nil) from "systemd is there but the call failed" (false, err):
//
//	n := systemd.NewNotifier()
//	if ok, err := n.Ready("8 handlers, BuildKit up"); err != nil {
//		log.Warn("sd_notify", zap.Error(err))
//	} else if !ok {
//		// not started by systemd (Type=notify): nothing to tell
//	}
//	if iv, ok := systemd.WatchdogInterval(); ok {
//		// call n.Watchdog() every iv
//	}
//
// Nothing here requires systemd to be PID 1: every function works (and
// does nothing) without it, and the environment variables it reads are
// those of systemd's documented interfaces (NOTIFY_SOCKET, WATCHDOG_USEC,
// WATCHDOG_PID, LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, JOURNAL_STREAM), so
// tools such as systemd-socket-activate can stand in for it.
package systemd
