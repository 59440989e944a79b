package api

import (
	"time"

	"mabd/builder/wire"
	"mabd/host"
)

// DaemonInfo is what GET /v1/status adds to the host's status.
type DaemonInfo struct {
	PID           int       `json:"pid"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Config        string    `json:"config"`
	Repairs       int64     `json:"repairs"`
	// Switches counts the handlers the daemon moved to another
	// candidate emulator (see the emulator key).
	Switches         int64              `json:"switches"`
	Reconciles       int64              `json:"reconciles"`
	LastReconcile    time.Time          `json:"last_reconcile"`
	Served           []string           `json:"served,omitempty"`
	Conflicts        []string           `json:"conflicts"`
	Failures         []string           `json:"failures"`
	Notes            []string           `json:"notes,omitempty"`
	LastVerification *host.Verification `json:"last_verification"`
	// BuildKit is the supervised buildkitd; nil when disabled.
	BuildKit *wire.BuildKit `json:"buildkit,omitempty"`
	// Fleet is the BuildKit nodes and the route of each platform; nil
	// when [fleet.nodes] names none.
	Fleet *FleetInfo `json:"fleet,omitempty"`
}

// DaemonStatus is GET /v1/status: the object of `mabd status --json`,
// with "source": "daemon" and the daemon's own state.
type DaemonStatus struct {
	host.Status
	Daemon DaemonInfo `json:"daemon"`
}

// FleetInfo is GET /v1/fleet, and the fleet in GET /v1/status: the nodes
// (with the files of their TLS, for `mabd build` to reach them), what
// their last checks found, and where each platform would be built now.
type FleetInfo struct {
	Nodes  []wire.Node  `json:"nodes"`
	States []wire.State `json:"states"`
	Routes []wire.Route `json:"routes"`
	// CheckIntervalSeconds is how often the daemon checks the nodes.
	CheckIntervalSeconds float64 `json:"check_interval_seconds"`
}

// Remote reports whether the fleet has nodes besides the daemon's
// own builder.
func (fi *FleetInfo) Remote() bool {
	for _, n := range fi.Nodes {
		if !n.Local {
			return true
		}
	}
	return false
}
