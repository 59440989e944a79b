package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/platforms"
	"go.uber.org/zap"

	"mabd/builder/fleet"
	"mabd/daemon/api"
	"mabd/internal/libexec"
)

// FleetConfig is the [fleet] table: BuildKit nodes besides the daemon's
// own builder, that `mabd build` routes each platform to — natively
// first ([fleet.Plan]) — and that the daemon checks.
type FleetConfig struct {
	// CheckInterval is how often every node is checked (workers,
	// platforms, latency, builds running): a node that stops answering
	// is down within one interval.
	CheckInterval Duration `toml:"check_interval"`
	// CheckTimeout bounds each node's check.
	CheckTimeout Duration `toml:"check_timeout"`
	// Nodes are the remote nodes by name: [fleet.nodes.NAME] tables.
	Nodes map[string]FleetNode `toml:"nodes"`
}

// FleetNode is a [fleet.nodes.NAME] table: a BuildKit node.
type FleetNode struct {
	// Address is tcp://host:port (with mutual TLS: CA, Cert and Key) or
	// unix:///path.
	Address string `toml:"address"`
	// CA is the CA the node's certificate must chain to; Cert and Key
	// are mabd's client certificate and key (PEM files).
	CA   string `toml:"ca"`
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// ServerName is the name the node's certificate must have; "" means
	// the address's host.
	ServerName string `toml:"server_name"`
	// Native are the platforms the node runs natively; [] (absent) means
	// those BuildKit lists first for its worker.
	Native []string `toml:"native"`
}

// Defaults of the [fleet] table.
const (
	DefaultFleetCheckInterval = 15 * time.Second
	DefaultFleetCheckTimeout  = 5 * time.Second
	// MinFleetCheckInterval is the shortest check_interval.
	MinFleetCheckInterval = time.Second
)

// nodeName is what a node may be called: it tags progress lines and
// labels metrics.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (f FleetConfig) validate() []*ConfigError {
	var errs []*ConfigError
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if f.CheckInterval.Duration < MinFleetCheckInterval {
		bad("fleet.check_interval", "%s is too short: the minimum is %s", f.CheckInterval, MinFleetCheckInterval)
	}
	if f.CheckTimeout.Duration <= 0 {
		bad("fleet.check_timeout", "must be more than 0")
	}
	for _, name := range slices.Sorted(maps.Keys(f.Nodes)) {
		n, key := f.Nodes[name], "fleet.nodes."+name
		switch {
		case name == fleet.LocalName:
			bad(key, "%q is the daemon's own builder ([buildkit]): give the node another name", name)
		case !nodeName.MatchString(name):
			bad(key, "%q is not a node name: letters, digits, '.', '_' and '-', at most 63", name)
		}
		files := map[string]string{"ca": n.CA, "cert": n.Cert, "key": n.Key}
		switch a := n.Address; {
		case strings.HasPrefix(a, "tcp://"):
			host, port, err := splitHostPort(strings.TrimPrefix(a, "tcp://"))
			if err != nil || host == "" {
				bad(key+".address", "%q is not tcp://host:port", a)
			} else if port == "" {
				bad(key+".address", "%q has no port", a)
			}
			var missing []string
			for _, k := range []string{"ca", "cert", "key"} {
				if files[k] == "" {
					missing = append(missing, k)
				}
			}
			if len(missing) > 0 {
				bad(key+".address", "a tcp:// node needs ca, cert and key (mutual TLS; BuildKit over plain TCP would let anyone on the network build as root); missing %s", strings.Join(missing, ", "))
			}
		case strings.HasPrefix(a, "unix://"):
			if p := strings.TrimPrefix(a, "unix://"); !strings.HasPrefix(p, "/") {
				bad(key+".address", "%q: give an absolute path, unix:///run/…", a)
			}
		case a == "":
			bad(key, "no address: give address = \"tcp://host:port\" or \"unix:///path\"")
		default:
			bad(key+".address", "%q: want tcp://host:port or unix:///path", a)
		}
		for _, k := range []string{"ca", "cert", "key"} {
			p := files[k]
			if p == "" {
				continue
			}
			if !strings.HasPrefix(p, "/") {
				bad(key+"."+k, "%q must be an absolute path", p)
			} else if fi, err := os.Stat(p); err != nil {
				bad(key+"."+k, "%v", err)
			} else if !fi.Mode().IsRegular() {
				bad(key+"."+k, "%s is not a regular file", p)
			}
		}
		for _, p := range n.Native {
			if _, err := platforms.Parse(p); err != nil {
				bad(key+".native", "%q: %v", p, err)
			}
		}
	}
	return errs
}

// splitHostPort splits host:port, [v6]:port.
func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", nil
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return "", "", fmt.Errorf("%q: unbalanced brackets", s)
	}
	return strings.Trim(host, "[]"), port, nil
}

// fleetNodes are the nodes of the fleet under cfg: the daemon's own
// builder when [buildkit] is enabled, then the [fleet.nodes], by name.
func fleetNodes(cfg Config) []fleet.Node {
	var nodes []fleet.Node
	if cfg.BuildKit.Enabled {
		nodes = append(nodes, fleet.Node{Name: fleet.LocalName, Address: "unix://" + cfg.BuildKit.Socket, Local: true})
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Fleet.Nodes)) {
		n := cfg.Fleet.Nodes[name]
		nodes = append(nodes, fleet.Node{Name: name, Address: n.Address, CA: n.CA, Cert: n.Cert, Key: n.Key, ServerName: n.ServerName, Native: n.Native})
	}
	return nodes
}

// fleetWatch is the daemon's fleet and its checks.
type fleetWatch struct {
	f        atomic.Pointer[fleet.Fleet]
	checking atomic.Bool
	// up is what the last check found of each node, to log changes.
	up atomic.Pointer[map[string]bool]
}

// setFleet makes the fleet of cfg's nodes, when they differ from the
// running one's.
func (d *Daemon) setFleet(cfg Config) {
	nodes := fleetNodes(cfg)
	if f := d.fleet.f.Load(); f != nil && slices.EqualFunc(f.Nodes(), nodes, func(a, b fleet.Node) bool {
		return a.Name == b.Name && a.Address == b.Address && a.CA == b.CA && a.Cert == b.Cert && a.Key == b.Key && a.ServerName == b.ServerName && slices.Equal(a.Native, b.Native)
	}) {
		return
	}
	d.fleet.f.Store(fleet.New(nodes))
}

// checkFleet checks every node now, logs the nodes that went down or came
// back, and returns what it found.
func (d *Daemon) checkFleet(ctx context.Context) []fleet.State {
	f := d.fleet.f.Load()
	if f == nil {
		return nil
	}
	states, err := checkNodes(ctx, f.Nodes(), d.config().Fleet.CheckTimeout.Duration)
	if err != nil {
		d.log.Error("fleet check", zap.Error(err))
	}
	f.Set(states)
	was := map[string]bool{}
	if p := d.fleet.up.Load(); p != nil {
		was = *p
	}
	now := map[string]bool{}
	for _, st := range states {
		now[st.Node] = st.Up
		prev, known := was[st.Node]
		switch {
		case !st.Up && (prev || !known):
			d.log.Warn("fleet node down", zap.String("node", st.Node), zap.String("address", st.Address), zap.String("error", st.LastError))
		case st.Up && !prev && known:
			d.log.Info("fleet node up again", zap.String("node", st.Node), zap.Strings("platforms", st.Platforms))
		}
	}
	d.fleet.up.Store(&now)
	return states
}

// maxFleetCheckOutput bounds what fleet-check may print.
const maxFleetCheckOutput = 4 << 20

// checkNodes checks the nodes, each within timeout, with `mabd-build
// fleet-check`: checking a node speaks BuildKit's gRPC, which the daemon
// does not link. When that fails, every node is down with why.
func checkNodes(ctx context.Context, nodes []fleet.Node, timeout time.Duration) ([]fleet.State, error) {
	states, err := runFleetCheck(ctx, nodes, timeout)
	if err == nil {
		return states, nil
	}
	states = make([]fleet.State, len(nodes))
	for i, n := range nodes {
		states[i] = fleet.State{Node: n.Name, Address: n.Address, Local: n.Local, Native: n.Native, CheckedAt: time.Now().UTC(), LastError: "not checked: " + err.Error()}
	}
	return states, err
}

func runFleetCheck(ctx context.Context, nodes []fleet.Node, timeout time.Duration) ([]fleet.State, error) {
	path, err := libexec.Path(libexec.Build)
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(nodes)
	if err != nil {
		return nil, err
	}
	// The nodes are checked at once: timeout, and the program's start.
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "fleet-check", "--timeout", timeout.String())
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limitWriter{w: &out, n: maxFleetCheckOutput}, &limitWriter{w: &errb, n: 4096}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s fleet-check: %w: %s", path, err, strings.TrimSpace(errb.String()))
	}
	var states []fleet.State
	if err := json.Unmarshal(out.Bytes(), &states); err != nil {
		return nil, fmt.Errorf("%s fleet-check: its answer: %w", path, err)
	}
	if len(states) != len(nodes) {
		return nil, fmt.Errorf("%s fleet-check: %d states for %d nodes", path, len(states), len(nodes))
	}
	return states, nil
}

// limitWriter keeps the first n bytes written to it and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// checkFleetAsync checks the fleet in the background, unless a check
// runs.
func (d *Daemon) checkFleetAsync(ctx context.Context) {
	if !d.fleet.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer d.fleet.checking.Store(false)
		d.checkFleet(ctx)
	}()
}

// Fleet returns the fleet as the last checks found it; check checks
// every node first.
func (d *Daemon) Fleet(ctx context.Context, check bool) *api.FleetInfo {
	f := d.fleet.f.Load()
	if f == nil {
		return &api.FleetInfo{}
	}
	if check {
		d.checkFleet(ctx)
	}
	states := f.States()
	return &api.FleetInfo{Nodes: f.Nodes(), States: states, Routes: fleet.Routes(states), CheckIntervalSeconds: d.config().Fleet.CheckInterval.Seconds()}
}

// fleetProblems are the remote nodes that are down; the local one is the
// builder's own problem.
func fleetProblems(fi *api.FleetInfo) []string {
	var out []string
	for _, st := range fi.States {
		if st.Local || st.Up {
			continue
		}
		p := fmt.Sprintf("fleet: node %s (%s) is down: %s", st.Node, st.Address, st.LastError)
		var moved []string
		for _, r := range fi.Routes {
			if slices.Contains(st.Native, r.Platform) {
				if r.Node == "" {
					moved = append(moved, r.Platform+" has no node")
				} else {
					moved = append(moved, r.Platform+" goes to "+r.Node)
				}
			}
		}
		if len(moved) > 0 {
			p += "; " + strings.Join(moved, ", ")
		}
		out = append(out, p)
	}
	return out
}
