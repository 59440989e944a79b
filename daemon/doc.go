// Package daemon is `mabd daemon`, the long-running service: it loads and
// validates the configuration ([Config], strict TOML with did-you-mean
// errors), makes the binfmt_misc instance match it at start through the
// host package, verifies, starts the supervised BuildKit, reports READY=1
// with a one-line STATUS=, and then keeps it all true: a reconcile pass
// every reconcile_interval (daemon.go, loop), verification on an interval
// and after repairs, SIGHUP reloads, the watchdog. It serves the control
// API (HTTP+JSON on a unix socket: status, verify, reconcile, healthz,
// metrics; api.go) and its [Client] for the CLI.
package daemon
