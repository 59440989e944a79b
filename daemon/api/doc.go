// Package api is the mabd daemon's control API as its clients see it:
// where the daemon listens (the system's socket, or an ordinary user's
// own daemon's), the answers of its endpoints (DaemonStatus, FleetInfo)
// and a client. It links none of the daemon itself, so that `mabd status`
// stays a small program.
package api
