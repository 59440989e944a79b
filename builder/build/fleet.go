package build

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mabd/builder"
	"mabd/builder/fleet"
	"mabd/builder/manifest"
)

// FleetOptions are a build over the fleet: those of one build
// ([Options]; Addr and ClientOpts are the fleet's to set),
// and how long each node's check before routing may take.
type FleetOptions struct {
	Options
	// CheckTimeout bounds each node's check before the build is routed;
	// zero means 5 s.
	CheckTimeout time.Duration
}

// Built says where a platform of a build was built.
type Built struct {
	fleet.Route
	// Seconds is how long its node's solve took.
	Seconds float64 `json:"seconds"`
	// Retried, when set, says which node failed first, and why: the
	// platform was built again on Node.
	Retried string `json:"retried,omitempty"`
}

// FleetResult is what a successful build over the fleet produced.
type FleetResult struct {
	// Digest is the image index's digest (or, built on one node, what
	// that build exported).
	Digest string
	// Built says where each platform was built, in the order asked.
	Built []Built
	// Single is the result of a build that ran as one solve on one node
	// (with its emulation report); nil when the platforms were built on
	// several nodes and joined.
	Single *Result
	// Index is the index pushed under the first tag, or written to the
	// OCI archive, when the platforms were built on several nodes.
	Index *manifest.Created
}

// NodeError is a node's solve that failed: Err is what
// [Build] returned (a *BuildError for a failed step).
type NodeError struct {
	Node      string
	Platforms []string
	Err       error
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("node %s (%s): %v", e.Node, strings.Join(e.Platforms, ", "), e.Err)
}
func (e *NodeError) Unwrap() error { return e.Err }

// JoinError is a build whose platforms were all built, whose images could
// not be joined into one index (pushed, or written as an OCI archive).
type JoinError struct {
	Err error
}

func (e *JoinError) Error() string { return "join the images of the nodes: " + e.Err.Error() }
func (e *JoinError) Unwrap() error { return e.Err }

// Build builds opt over the fleet: it checks every node, routes each
// platform ([fleet.Plan]) and runs one solve per node, concurrently, with the
// same context, build arguments, secrets and registry credentials, and
// one progress display whose lines are tagged with node and platform.
// All platforms routed to one node are one ordinary build there, with
// every output of [Build]. Over several nodes the images are
// joined into one index: pushed by digest from each node and the index
// pushed under each tag (as `mabd manifest create`), and, for
// type=oci,dest=FILE, merged into one OCI archive.
//
// A node's solve that fails for its transport (the node went away, the
// connection broke) is run once more on the next node of its route; a
// failed build step is not. Bad input is a *UsageError and a
// platform no healthy node builds a *fleet.NoRouteError, both before any
// solve.
func OnFleet(ctx context.Context, nodes []fleet.Node, opt FleetOptions) (*FleetResult, error) {
	if opt.CheckTimeout <= 0 {
		opt.CheckTimeout = 5 * time.Second
	}
	if opt.ProgressOutput == nil {
		opt.ProgressOutput = os.Stderr
	}
	if len(nodes) == 0 {
		return nil, fleet.ErrNoNodes
	}
	if err := Check(opt.Options); err != nil {
		return nil, err
	}
	states := CheckNodes(ctx, nodes, opt.CheckTimeout)
	asked, err := platformsOf(opt.Platforms, states)
	if err != nil {
		return nil, err
	}
	routes, err := fleet.Plan(asked, states)
	if err != nil {
		return nil, err
	}
	b := &fleetBuild{nodes: nodes, opt: opt, states: states}
	if len(groups(routes)) == 1 {
		return b.single(ctx, routes)
	}
	return b.joined(ctx, routes)
}

// platformsOf are the platforms to build: those asked for, normalized;
// with none, the local node's own (the build host's, as one build
// chooses); with [AllPlatforms], every platform a healthy node
// builds, one per architecture.
func platformsOf(asked []string, states []fleet.State) ([]string, error) {
	usage := func(err error) error {
		return &UsageError{Option: "Platforms", Value: strings.Join(asked, ","), Err: err}
	}
	switch {
	case slices.Equal(asked, []string{AllPlatforms}):
		var all []ocispecs.Platform
		for _, st := range states {
			if !st.Up {
				continue
			}
			for _, p := range st.Platforms {
				all = append(all, platforms.MustParse(p))
			}
		}
		if len(all) == 0 {
			return nil, &fleet.NoRouteError{Platforms: asked, Nodes: states}
		}
		return builder.OnePerArch(all), nil
	case len(asked) == 0:
		for _, st := range states {
			if st.Local && st.Up && len(st.Native) > 0 {
				return st.Native[:1], nil
			}
		}
		return []string{platforms.Format(platforms.DefaultSpec())}, nil
	}
	ps, err := builder.NormalizePlatforms(asked)
	if err != nil {
		return nil, usage(err)
	}
	return ps, nil
}

// group is the platforms routed to one node.
type group struct {
	node   string
	routes []fleet.Route
}

func (g group) platforms() []string {
	var ps []string
	for _, r := range g.routes {
		ps = append(ps, r.Platform)
	}
	return ps
}

// groups gathers routes by node, in the order of their first platform.
func groups(routes []fleet.Route) []group {
	var gs []group
	for _, r := range routes {
		i := slices.IndexFunc(gs, func(g group) bool { return g.node == r.Node })
		if i < 0 {
			gs = append(gs, group{node: r.Node})
			i = len(gs) - 1
		}
		gs[i].routes = append(gs[i].routes, r)
	}
	return gs
}

// fleetBuild is one build over the fleet.
type fleetBuild struct {
	nodes  []fleet.Node
	opt    FleetOptions
	states []fleet.State

	mu    sync.Mutex
	built []Built
}

func (b *fleetBuild) node(name string) (fleet.Node, bool) {
	for _, n := range b.nodes {
		if n.Name == name {
			return n, true
		}
	}
	return fleet.Node{}, false
}

// single runs the build on the one node all platforms were routed to:
// one ordinary build with every output, retried once elsewhere for a
// transport error.
func (b *fleetBuild) single(ctx context.Context, routes []fleet.Route) (*FleetResult, error) {
	var res *Result
	err := b.run(ctx, groups(routes)[0], false, func(n fleet.Node, platforms []string) (*Result, error) {
		o := b.opt.Options
		o.Addr, o.ClientOpts, o.Platforms = n.Address, ClientOpts(n), platforms
		if o.NativeNode == nil {
			o.NativeNode = b.nativeElsewhere(n.Name)
		}
		r, err := Build(ctx, o)
		if err == nil || errors.As(err, new(*OutputFileError)) {
			res = r
		}
		return r, err
	})
	if res == nil {
		return nil, err
	}
	return &FleetResult{Digest: res.Digest, Built: b.inOrder(routes), Single: res}, err
}

// nativeElsewhere names, for the emulation report's advice, a node other
// than on (the one building) that runs a platform natively: one that is
// down, or that the route did not choose.
func (b *fleetBuild) nativeElsewhere(on string) func(string) string {
	return func(platform string) string {
		p, err := platforms.Parse(platform)
		if err != nil {
			return ""
		}
		for _, st := range b.states {
			if st.Node != on && fleet.Runs(st.Native, p) {
				return st.Node
			}
		}
		return ""
	}
}

// joined builds the platforms on their nodes and joins the images into
// one index.
func (b *fleetBuild) joined(ctx context.Context, routes []fleet.Route) (*FleetResult, error) {
	opt := b.opt.Options
	out, err := joinedOutputs(opt)
	if err != nil {
		return nil, err
	}
	if err := CheckOutputFiles(opt); err != nil {
		return nil, err
	}
	images, indexAnnotations, err := SplitAnnotations(opt.Annotations)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "mabd-fleet-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	mode, err := ProgressMode(opt.Progress)
	if err != nil {
		return nil, err
	}
	disp, err := progressui.NewDisplay(opt.ProgressOutput, mode)
	if err != nil {
		return nil, &UsageError{Option: "Progress", Value: opt.Progress, Err: err}
	}
	events := make(chan *client.SolveStatus, 64)
	shown := make(chan struct{})
	go func() {
		defer close(shown)
		disp.UpdateFrom(context.WithoutCancel(ctx), events)
		for range events {
		}
	}()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	var sources []nodeImage
	var wg sync.WaitGroup
	var first error
	var once sync.Once
	for i, g := range groups(routes) {
		wg.Go(func() {
			err := b.run(ctx, g, false, func(n fleet.Node, ps []string) (*Result, error) {
				o := opt
				o.Addr, o.ClientOpts, o.Platforms = n.Address, ClientOpts(n), ps
				o.Tags, o.Push, o.MetadataFile, o.IIDFile, o.NativeNode = nil, false, "", "", nil
				o.Annotations = images
				o.ProgressOutput = io.Discard
				o.Outputs = nil
				archive := ""
				if len(out.repos) > 0 {
					o.Outputs = append(o.Outputs, fmt.Sprintf(`type=image,"name=%s",push-by-digest=true,push=true`, strings.Join(out.repos, ",")))
				}
				if out.archive != "" {
					archive = filepath.Join(tmp, fmt.Sprintf("%d-%s.tar", i, n.Name))
					o.Outputs = append(o.Outputs, "type=oci,dest="+archive)
				}
				tag := tagFor(n.Name, ps)
				o.Events = func(s *client.SolveStatus) { events <- tag(s) }
				r, err := Build(ctx, o)
				if err == nil {
					mu.Lock()
					sources = append(sources, nodeImage{order: i, digest: r.Digest, archive: archive})
					mu.Unlock()
				}
				return r, err
			})
			if err != nil {
				once.Do(func() { first = err })
				cancel(err)
			}
		})
	}
	wg.Wait()
	close(events)
	<-shown
	if first != nil {
		return nil, first
	}
	slices.SortFunc(sources, func(a, b nodeImage) int { return a.order - b.order })

	res := &FleetResult{Built: b.inOrder(routes)}
	created, err := join(ctx, opt, out, sources, indexAnnotations)
	if err != nil {
		return nil, &JoinError{Err: err}
	}
	res.Index, res.Digest = created, created.Digest.String()
	desc, _ := json.Marshal(ocispecs.Descriptor{MediaType: string(created.MediaType), Digest: digest.Digest(created.Digest.String()), Size: int64(len(created.Raw))})
	resp := map[string]string{
		exptypes.ExporterImageDigestKey:     res.Digest,
		exptypes.ExporterImageDescriptorKey: base64.StdEncoding.EncodeToString(desc),
	}
	if len(opt.Tags) > 0 {
		resp["image.name"] = strings.Join(opt.Tags, ",")
	}
	var ps []string
	for _, bt := range res.Built {
		ps = append(ps, bt.Platform)
	}
	if err := WriteOutputFiles(ctx, opt, &Result{Digest: res.Digest, Platforms: ps, ExporterResponse: resp}); err != nil {
		return res, err
	}
	return res, nil
}

// nodeImage is what one node's solve exported.
type nodeImage struct {
	order   int
	digest  string // pushed by digest to every repository
	archive string // its OCI archive, when one is asked for
}

// joinedOut is where the images of a build over several nodes go.
type joinedOut struct {
	// repos are the repositories the nodes push to by digest; tags the
	// references the index is pushed under.
	repos []string
	tags  []string
	// archive is the OCI archive to write, names its image names.
	archive string
	names   []string
}

// joinedOutputs checks that the outputs can be joined: images pushed
// (-t with --push, type=image,push=true, type=registry) and one OCI
// archive (type=oci,dest=FILE). The others (type=local, docker, tar, an
// image kept in one buildkitd's store) belong to one node.
func joinedOutputs(opt Options) (joinedOut, error) {
	var out joinedOut
	bad := func(spec, why string) (joinedOut, error) {
		return joinedOut{}, &UsageError{Option: "Outputs", Value: spec, Err: errors.New(why)}
	}
	addTags := func(refs []string) error {
		for _, t := range refs {
			r, err := name.ParseReference(t, name.Insecure)
			if err != nil {
				return &UsageError{Option: "Tags", Value: t, Err: err}
			}
			if !slices.Contains(out.repos, r.Context().Name()) {
				out.repos = append(out.repos, r.Context().Name())
			}
			out.tags = append(out.tags, t)
		}
		return nil
	}
	if opt.Push {
		if err := addTags(opt.Tags); err != nil {
			return joinedOut{}, err
		}
	}
	for _, spec := range opt.Outputs {
		o, err := ParseOutput(spec)
		if err != nil {
			return joinedOut{}, err
		}
		switch {
		case o.Type == client.ExporterImage && (o.Attrs["push"] == "true" || opt.Push):
			names := opt.Tags
			if o.Attrs["name"] != "" {
				names = strings.Split(o.Attrs["name"], ",")
			}
			if err := addTags(names); err != nil {
				return joinedOut{}, err
			}
		case o.Type == client.ExporterOCI && !o.Dir && o.Dest != "-":
			if out.archive != "" {
				return bad(spec, "one OCI archive per build over several nodes")
			}
			out.archive, out.names = o.Dest, opt.Tags
			if o.Attrs["name"] != "" {
				out.names = strings.Split(o.Attrs["name"], ",")
			}
		default:
			return bad(spec, "the platforms are built on several nodes, whose images mabd joins into one index: it pushes them (-t REF --push) or writes one OCI archive (type=oci,dest=FILE); build this output on one node (--addr)")
		}
	}
	if len(out.repos) == 0 && out.archive == "" {
		if len(opt.Tags) > 0 {
			return joinedOut{}, &UsageError{Option: "Push", Err: errors.New("the platforms are built on several nodes: their image can only be pushed (--push) or written as one OCI archive (--output type=oci,dest=FILE), not kept in one buildkitd's store")}
		}
		return joinedOut{}, &UsageError{Option: "Outputs", Err: errors.New("the platforms are built on several nodes: push the image (-t REF --push) or write an OCI archive (--output type=oci,dest=FILE)")}
	}
	return out, nil
}

// join makes the index of the nodes' images: pushed under each tag, and
// written as the OCI archive.
func join(ctx context.Context, opt Options, out joinedOut, images []nodeImage, annotations map[string]string) (*manifest.Created, error) {
	var created *manifest.Created
	for _, tag := range out.tags {
		r, err := name.ParseReference(tag, name.Insecure)
		if err != nil {
			return nil, err
		}
		var sources []string
		for _, im := range images {
			sources = append(sources, r.Context().Name()+"@"+im.digest)
		}
		c, err := manifest.Create(ctx, tag, sources, manifest.CreateOptions{
			Options:     manifest.Options{Insecure: InsecureRegistry(tag, opt.InsecureRegistries)},
			Annotations: annotations,
		})
		if err != nil {
			return nil, err
		}
		if created == nil {
			created = c
		}
	}
	if out.archive != "" {
		var sources []string
		for _, im := range images {
			sources = append(sources, manifest.ArchivePrefix+im.archive)
		}
		c, err := manifest.CreateArchive(ctx, out.archive, sources, manifest.ArchiveOptions{
			CreateOptions: manifest.CreateOptions{Annotations: annotations},
			Names:         out.names,
		})
		if err != nil {
			return nil, err
		}
		if created == nil {
			created = c
		}
	}
	return created, nil
}

// run builds a group's platforms on its node with build; a failure of the
// transport is run once more, unless retried already, on the next node
// of each platform's route (fleet.Plan again without the node). It records
// where each platform was built.
func (b *fleetBuild) run(ctx context.Context, g group, retried bool, build func(fleet.Node, []string) (*Result, error)) error {
	n, ok := b.node(g.node)
	if !ok {
		return fmt.Errorf("node %s: not in the fleet", g.node)
	}
	start := time.Now()
	_, err := build(n, g.platforms())
	secs := time.Since(start).Seconds()
	if err == nil || errors.As(err, new(*OutputFileError)) {
		b.record(g.routes, secs, "")
		return err
	}
	if retried || !Transport(err) || ctx.Err() != nil {
		return &NodeError{Node: n.Name, Platforms: g.platforms(), Err: err}
	}
	// The node is gone for this build: route its platforms again.
	var rest []fleet.State
	for _, st := range b.states {
		if st.Node != n.Name {
			rest = append(rest, st)
		}
	}
	routes, perr := fleet.Plan(g.platforms(), rest)
	if perr != nil {
		return &NodeError{Node: n.Name, Platforms: g.platforms(), Err: fmt.Errorf("%w; and no other node builds its platforms: %v", err, perr)}
	}
	why := fmt.Sprintf("%s failed (%v)", n.Name, err)
	var wg sync.WaitGroup
	errs := make([]error, 0)
	var mu sync.Mutex
	for _, ng := range groups(routes) {
		wg.Go(func() {
			err := b.run(ctx, ng, true, build)
			if err == nil {
				b.markRetried(ng.routes, why)
				return
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *fleetBuild) record(routes []fleet.Route, secs float64, retried string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range routes {
		b.built = append(b.built, Built{Route: r, Seconds: secs, Retried: retried})
	}
}

func (b *fleetBuild) markRetried(routes []fleet.Route, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.built {
		for _, r := range routes {
			if b.built[i].Platform == r.Platform && b.built[i].Node == r.Node && b.built[i].Retried == "" {
				b.built[i].Retried = why
			}
		}
	}
}

// inOrder returns where each platform was built, in the order of routes.
func (b *fleetBuild) inOrder(routes []fleet.Route) []Built {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Built
	for _, r := range routes {
		for _, bt := range b.built {
			if bt.Platform == r.Platform {
				out = append(out, bt)
				break
			}
		}
	}
	return out
}

// Transport reports whether err is a failure to reach or stay connected
// to a node, not of the build: the node is unreachable, went away, or
// broke the connection. A failed build step is not.
func Transport(err error) bool {
	var de *DaemonError
	if errors.As(err, &de) {
		return true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return true
	}
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// tagFor returns a function that tags a node's progress events with the
// node and, when it builds one platform (BuildKit names none in its
// steps then), the platform: each vertex's name starts with "[node
// platform]", and its digest is made the node's own, so that the same
// step on two nodes is two lines of the one display.
func tagFor(node string, ps []string) func(*client.SolveStatus) *client.SolveStatus {
	prefix := "[" + node + "] "
	if len(ps) == 1 {
		prefix = "[" + node + " " + ps[0] + "] "
	}
	own := func(d digest.Digest) digest.Digest {
		return digest.FromString(node + "\x00" + string(d))
	}
	return func(s *client.SolveStatus) *client.SolveStatus {
		out := &client.SolveStatus{}
		for _, v := range s.Vertexes {
			c := *v
			c.Digest = own(v.Digest)
			c.Inputs = nil
			for _, in := range v.Inputs {
				c.Inputs = append(c.Inputs, own(in))
			}
			c.Name = prefix + v.Name
			out.Vertexes = append(out.Vertexes, &c)
		}
		for _, st := range s.Statuses {
			c := *st
			c.Vertex = own(st.Vertex)
			out.Statuses = append(out.Statuses, &c)
		}
		for _, l := range s.Logs {
			c := *l
			c.Vertex = own(l.Vertex)
			out.Logs = append(out.Logs, &c)
		}
		for _, w := range s.Warnings {
			c := *w
			c.Vertex = own(w.Vertex)
			out.Warnings = append(out.Warnings, &c)
		}
		return out
	}
}
