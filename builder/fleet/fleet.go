// Package fleet is a set of BuildKit nodes that mabd builds on: the local
// isolated builder and remote buildkitd nodes (unix sockets, or TCP with
// mutual TLS). It checks each node (reachable, workers, platforms,
// latency, builds running) and routes each platform of a build natively
// first: to a healthy node that runs the platform natively, else to a
// healthy node that emulates it (the local one first), else nowhere — the
// build is refused before it starts. Among equal nodes the least busy
// wins.
//
// buildx's multi-node builders take the first node whose platform list
// matches, so a node that emulates arm64 listed first takes arm64 builds
// from a native arm64 node (docker/buildx#999, #1560); the fleet never
// does.
package fleet

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/builder/wire"
)

// LocalName is the name of the daemon's own builder in the fleet.
const LocalName = wire.LocalName

// Node is a BuildKit node of the fleet (see [wire.Node]).
type Node = wire.Node

// State is what the last check of a node found (see [wire.State]).
type State = wire.State

// Down is the state of a node that could not be checked, and why: it is
// known by the platforms it declares native.
func Down(n Node, why error) State {
	st := State{Node: n.Name, Address: n.Address, Local: n.Local, CheckedAt: time.Now().UTC(), LastError: why.Error()}
	for _, d := range n.Native {
		if p, err := platforms.Parse(d); err == nil {
			st.Native = append(st.Native, platforms.Format(platforms.Normalize(p)))
		}
	}
	return st
}

// Up is the state of a node that answered: its workers' platforms (split
// into native and emulated), how long it took and how many builds it
// runs.
func Up(n Node, worker []ocispecs.Platform, latency time.Duration, active int) State {
	st := State{Node: n.Name, Address: n.Address, Local: n.Local, CheckedAt: time.Now().UTC(), Up: true, Active: active}
	st.LatencyMS = float64(latency.Microseconds()) / 1000
	st.Platforms, st.Native, st.Emulated = split(worker, n.Native)
	return st
}

// split formats the worker's platforms and splits them into native and
// emulated: the declared native ones, or those the first platform's
// architecture runs without an emulator (BuildKit lists the host's
// platform first; an amd64 host runs linux/386 too, as [binfmt.Native]
// says).
func split(worker []ocispecs.Platform, declared []string) (all, native, emulated []string) {
	isNative := func(p ocispecs.Platform) bool {
		if declared != nil {
			for _, d := range declared {
				if dp, err := platforms.Parse(d); err == nil && same(platforms.Normalize(dp), p) {
					return true
				}
			}
			return false
		}
		if len(worker) == 0 {
			return false
		}
		host := platforms.Normalize(worker[0])
		if host.OS != p.OS {
			return false
		}
		if same(host, p) {
			return true
		}
		a, err := binfmt.Lookup(p.OS + "/" + p.Architecture)
		return err == nil && slices.Contains(binfmt.Native(host.Architecture), a.Name)
	}
	for _, p := range worker {
		p = platforms.Normalize(p)
		f := platforms.Format(p)
		if slices.Contains(all, f) {
			continue
		}
		all = append(all, f)
		if isNative(p) {
			native = append(native, f)
		} else {
			emulated = append(emulated, f)
		}
	}
	return all, native, emulated
}

// same: the same OS and architecture.
func same(a, b ocispecs.Platform) bool { return a.OS == b.OS && a.Architecture == b.Architecture }

// Runs reports whether one of ps (formatted platforms) runs p: the same
// OS and architecture, the same or a later variant.
func Runs(ps []string, p ocispecs.Platform) bool {
	p = platforms.Normalize(p)
	for _, s := range ps {
		w, err := platforms.Parse(s)
		if err != nil {
			continue
		}
		w = platforms.Normalize(w)
		if same(w, p) && platforms.Only(w).Match(p) {
			return true
		}
	}
	return false
}

// Fleet is the nodes and what their last checks found. Its methods are
// safe for concurrent use.
type Fleet struct {
	mu     sync.Mutex
	nodes  []Node
	states map[string]State
}

// New returns a fleet of nodes, not checked yet.
func New(nodes []Node) *Fleet {
	return &Fleet{nodes: slices.Clone(nodes), states: map[string]State{}}
}

// Nodes returns the nodes.
func (f *Fleet) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nodes)
}

// Set keeps states, found by a check made elsewhere (the daemon has
// `mabd-build fleet-check` make it).
func (f *Fleet) Set(states []State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range states {
		f.states[st.Node] = st
	}
}

// States returns the last state of each node, in the order of the nodes;
// a node never checked is down with "not checked yet".
func (f *Fleet) States() []State {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]State, 0, len(f.nodes))
	for _, n := range f.nodes {
		st, ok := f.states[n.Name]
		if !ok {
			st = State{Node: n.Name, Address: n.Address, Local: n.Local, LastError: "not checked yet"}
		}
		out = append(out, st)
	}
	return out
}

// Route says where a platform is built (see [wire.Route]).
type Route = wire.Route

// NoRouteError refuses platforms that no healthy node builds, naming the
// nodes and what they offer.
type NoRouteError struct {
	Platforms []string
	Nodes     []State
}

func (e *NoRouteError) Error() string {
	var nodes []string
	for _, n := range e.Nodes {
		if n.Up {
			nodes = append(nodes, fmt.Sprintf("%s (%s)", n.Node, strings.Join(n.Platforms, ", ")))
		} else {
			nodes = append(nodes, fmt.Sprintf("%s (down: %s)", n.Node, n.LastError))
		}
	}
	return fmt.Sprintf("no node builds %s: the nodes are %s", strings.Join(e.Platforms, ", "), strings.Join(nodes, "; "))
}

// Plan routes each platform: to a healthy node that runs it natively,
// else to a healthy node that emulates it (the local one first); among
// equals the least busy (fewest active builds, then pending, then the
// lowest latency), then the first listed. A platform no healthy node
// builds is a *NoRouteError, for all such platforms at once. pending
// counts the platforms already given to each node by this plan, so that
// one build spreads over equal nodes.
func Plan(asked []string, states []State) ([]Route, error) {
	var routes []Route
	var none []string
	pending := map[string]int{}
	for _, a := range asked {
		p, err := platforms.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", a, err)
		}
		p = platforms.Normalize(p)
		var native, emulated []State
		var downWhy []string
		for _, st := range states {
			if !st.Up {
				if Runs(st.Native, p) {
					downWhy = append(downWhy, fmt.Sprintf("%s, native for it, is down (%s)", st.Node, st.LastError))
				}
				continue
			}
			switch {
			case Runs(st.Native, p):
				native = append(native, st)
			case Runs(st.Emulated, p):
				emulated = append(emulated, st)
			}
		}
		busy := func(list []State, localFirst bool) {
			sort.SliceStable(list, func(i, j int) bool {
				a, b := list[i], list[j]
				if localFirst && a.Local != b.Local {
					return a.Local
				}
				if a.Active+pending[a.Node] != b.Active+pending[b.Node] {
					return a.Active+pending[a.Node] < b.Active+pending[b.Node]
				}
				return a.LatencyMS < b.LatencyMS
			})
		}
		busy(native, false)
		busy(emulated, true)
		order := append(native, emulated...)
		if len(order) == 0 {
			none = append(none, a)
			continue
		}
		r := Route{Platform: a, Node: order[0].Node, Native: len(native) > 0}
		for _, st := range order[1:] {
			r.Next = append(r.Next, st.Node)
		}
		switch {
		case r.Native:
			r.Why = "native on " + r.Node
		case len(downWhy) > 0:
			r.Why = strings.Join(downWhy, "; ") + ": emulated on " + r.Node
		default:
			r.Why = "no node runs it natively: emulated on " + r.Node
		}
		pending[r.Node]++
		routes = append(routes, r)
	}
	if len(none) > 0 {
		return nil, &NoRouteError{Platforms: none, Nodes: states}
	}
	return routes, nil
}

// ErrNoNodes is returned when a fleet has no node at all.
var ErrNoNodes = errors.New("the fleet has no node")

// Routes says where each platform the fleet knows would be built now:
// every platform a healthy node builds (one per architecture) and every
// platform a node declares native, each routed alone by [Plan]. One no
// healthy node builds has no Node, and Why says so.
func Routes(states []State) []Route {
	var known []ocispecs.Platform
	for _, st := range states {
		ps := st.Native
		if st.Up {
			ps = append(slices.Clone(st.Native), st.Emulated...)
		}
		for _, p := range ps {
			if pp, err := platforms.Parse(p); err == nil {
				known = append(known, pp)
			}
		}
	}
	var out []Route
	for _, p := range onePerArch(known) {
		rs, err := Plan([]string{p}, states)
		if err != nil {
			out = append(out, Route{Platform: p, Why: "no healthy node builds it"})
			continue
		}
		out = append(out, rs[0])
	}
	return out
}

// onePerArch keeps the first platform of each OS and architecture,
// formatted, sorted.
func onePerArch(ps []ocispecs.Platform) []string {
	out := builder.OnePerArch(ps)
	slices.Sort(out)
	return out
}
