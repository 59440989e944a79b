// Package wire holds what the daemon reports about its builders, as it
// crosses from one program to another in the daemon's API: the
// supervised BuildKit's status, and the fleet's nodes, what their checks
// found and the route of each platform. Only the types and their
// constants live here, none of the code that makes them (the supervisor
// in [mabd/builder], the checks and routing in [mabd/builder/fleet]), so
// the host agent decodes and prints them without linking the
// supervisor's logger or containerd's platform parser.
package wire

import "time"

// Where the system daemon's buildkitd listens.
const (
	DefaultSocket = "/run/mabd/buildkitd.sock"
	// DefaultAddress is the address clients reach DefaultSocket at.
	DefaultAddress = "unix://" + DefaultSocket
)

// Emulation modes of the supervised buildkitd ([BuildKit.Emulation]).
const (
	// EmulationPrivate runs buildkitd in a user, mount and PID namespace
	// of its own with a private binfmt_misc instance holding the handlers
	// mabd verified: its worker advertises the native platforms and those
	// of the handlers that pass verification there, whatever the host's
	// table holds.
	EmulationPrivate = "private"
	// EmulationHost runs buildkitd beside the host's binfmt_misc table:
	// its worker advertises the configured platforms and whatever BuildKit
	// detects in the host's table.
	EmulationHost = "host"
)

// BuildKit is what the supervisor knows about its buildkitd.
type BuildKit struct {
	// Running: buildkitd is up and answered the supervisor.
	Running bool `json:"running"`
	// PID is the current buildkitd's process id, 0 when there is none.
	PID int `json:"pid,omitempty"`
	// Version is BuildKit's version as buildkitd reports it ("v0.34.2").
	Version string `json:"version,omitempty"`
	// Since is when the current buildkitd became ready.
	Since time.Time `json:"since,omitzero"`
	// Restarts counts the restarts after buildkitd exited unexpectedly
	// (not those SetPlatforms asks for).
	Restarts int `json:"restarts"`
	// Platforms are the platforms the worker reports, formatted
	// ("linux/amd64", "linux/arm64").
	Platforms []string `json:"platforms,omitempty"`
	// Socket is the unix socket buildkitd listens on; Address is the
	// address a client gives for it (unix://…).
	Socket  string `json:"socket"`
	Address string `json:"address"`
	// Config is the buildkitd.toml the supervisor wrote.
	Config string `json:"config,omitempty"`
	// Snapshotter is the worker's snapshotter (overlayfs or native).
	Snapshotter string `json:"snapshotter,omitempty"`
	// KeepStorage is the build cache garbage collection keeps, in bytes.
	KeepStorage int64 `json:"keepStorage,omitempty"`
	// LastError says why buildkitd last exited or failed to start, with
	// the last line it printed; "" if it never did.
	LastError string `json:"lastError,omitempty"`
	// Emulation is EmulationPrivate or EmulationHost.
	Emulation string `json:"emulation,omitempty"`
	// AgentPID is the first process of the private namespace, buildkitd's
	// parent (EmulationPrivate).
	AgentPID int `json:"agentPid,omitempty"`
	// Private is the private binfmt_misc instance's handlers and the
	// native architectures, as the last verification inside the
	// namespace found them (EmulationPrivate).
	Private []PrivateHandler `json:"private,omitempty"`
	// VerifiedAt is when that verification ran.
	VerifiedAt time.Time `json:"verifiedAt,omitzero"`
	// Withdrawn counts the private handlers that failed a verification
	// while buildkitd ran and were withdrawn from the worker.
	Withdrawn int `json:"withdrawn,omitempty"`
}

// PrivateHandler is a handler of the builder's private binfmt_misc
// instance, as the last verification inside it found it.
type PrivateHandler struct {
	Name        string `json:"name"`
	Platform    string `json:"platform,omitempty"`
	Interpreter string `json:"interpreter"`
	Flags       string `json:"flags"`
	// State is "ok" (registered and verified), "failed" (withdrawn from
	// the worker: Reason says why) or "native".
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// LocalName is the name of the daemon's own builder in the fleet.
const LocalName = "local"

// Node is a BuildKit node of the fleet.
type Node struct {
	// Name identifies the node in routes, progress and status.
	Name string `json:"name"`
	// Address is unix:///path or tcp://host:port.
	Address string `json:"address"`
	// CA, Cert, Key and ServerName are the mutual TLS of a tcp://
	// address: the CA the node's certificate must chain to, this
	// client's certificate and key, and the name the node's certificate
	// must have ("" means the address's host).
	CA         string `json:"ca,omitempty"`
	Cert       string `json:"cert,omitempty"`
	Key        string `json:"key,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	// Native are the platforms the node runs natively, as declared; nil
	// means those BuildKit lists first for its worker (its host platform
	// and its variants). The rest of its platforms are emulated.
	Native []string `json:"native,omitempty"`
	// Local marks the daemon's own builder: among nodes that emulate a
	// platform it is chosen first.
	Local bool `json:"local,omitempty"`
}

// State is what the last check of a node found.
type State struct {
	Node    string `json:"node"`
	Address string `json:"address"`
	Local   bool   `json:"local,omitempty"`
	// Up: the node answered with at least one worker.
	Up bool `json:"up"`
	// Latency is how long listing its workers took.
	LatencyMS float64 `json:"latency_ms"`
	// Platforms are the worker's platforms, normalized, in its order;
	// Native and Emulated split them.
	Platforms []string `json:"platforms,omitempty"`
	Native    []string `json:"native,omitempty"`
	Emulated  []string `json:"emulated,omitempty"`
	// Active is how many builds it runs.
	Active    int       `json:"active"`
	CheckedAt time.Time `json:"checked_at"`
	// LastError is why it is down (a TLS error, a refused connection).
	LastError string `json:"last_error,omitempty"`
}

// Route says where a platform is built.
type Route struct {
	Platform string `json:"platform"`
	// Node builds it; Native says whether it runs the platform natively.
	Node   string `json:"node"`
	Native bool   `json:"native"`
	// Why explains the choice for a person ("native on arm1", "arm1 is
	// down (…): emulated on local").
	Why string `json:"why"`
	// Next are the other nodes that could build it, in the order of
	// preference: where a build that failed on Node for a transport error
	// is retried once.
	Next []string `json:"next,omitempty"`
}
