package main

// Row 8: the fleet. The same two-platform build of examples/hello through
// a fleet of two nodes (builder/fleet: the local builder of rows 4 and 5,
// and a second buildkitd on 127.0.0.1 over mutual TLS declared native for
// linux/arm64) against the local node doing both platforms alone
// (build.Build). Both are Go calls in this process, no client process:
// the row is what routing (checking both nodes, planning), two solves
// instead of one and joining the images cost.
//
// Both nodes run on this machine's 2 cores and the second one emulates
// arm64 too (in its own private binfmt_misc table): the row is not the
// speed-up of a native node, which is on paper in the README from rows 7
// and 8.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mabd/builder"
	"mabd/builder/build"
	"mabd/builder/buildertest"
	"mabd/builder/fleet"
	"mabd/builder/manifest"
)

// armNodeName is the second node's name in the fleet.
const armNodeName = "arm1"

// remoteNode is the fleet's second node: a supervisor listening on
// 127.0.0.1 with mutual TLS.
type remoteNode struct {
	dir  string
	sup  *builder.Supervisor
	node fleet.Node
}

// startRemoteNode starts a second buildkitd (private emulation of arm64,
// like the local one) with a TCP listener on a free port of 127.0.0.1
// with mutual TLS, its CA and certificates made by buildertest.MakePKI.
func (b *bench) startRemoteNode(ctx context.Context) (*remoteNode, error) {
	dir, err := stateDir()
	if err != nil {
		return nil, err
	}
	r := &remoteNode{dir: dir}
	pkiDir := filepath.Join(dir, "pki")
	if err := os.Mkdir(pkiDir, 0o700); err != nil {
		r.stop(b)
		return nil, err
	}
	pki, err := buildertest.MakePKI(pkiDir)
	if err != nil {
		r.stop(b)
		return nil, fmt.Errorf("make the node's certificates: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.stop(b)
		return nil, err
	}
	tcp := l.Addr().String()
	l.Close()
	r.sup = builder.NewSupervisor(builder.Options{
		Binary:      b.cfg.buildkitd,
		Root:        filepath.Join(dir, "root"),
		Socket:      filepath.Join(dir, "bk.sock"),
		Platforms:   strings.Split(buildPlatforms, ","),
		KeepStorage: 4 << 30,
		StopTimeout: 20 * time.Second,
		TCPAddress:  tcp,
		TLSCert:     pki.ServerCert,
		TLSKey:      pki.ServerKey,
		TLSCA:       pki.CA,
	})
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := r.sup.Start(sctx); err != nil {
		r.sup = nil
		r.stop(b)
		return nil, fmt.Errorf("start the second buildkitd on %s: %w", tcp, err)
	}
	r.node = fleet.Node{Name: armNodeName, Address: "tcp://" + tcp, CA: pki.CA, Cert: pki.ClientCert, Key: pki.ClientKey,
		Native: []string{"linux/arm64"}}
	b.logf("second node %s on %s (mutual TLS), declared native for linux/arm64", armNodeName, r.node.Address)
	return r, nil
}

// stop stops the node's buildkitd and removes its state.
func (r *remoteNode) stop(b *bench) {
	if r == nil {
		return
	}
	b.stopSupervisor(&r.sup, "the second buildkitd")
	if r.dir != "" {
		removeState(r.dir)
		r.dir = ""
	}
}

// archiveHolds checks that the OCI archive file holds images of the
// platforms want (sorted) and no other (attestations left out).
func archiveHolds(ctx context.Context, file string, want []string) error {
	ps, err := archivePlatforms(ctx, file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if !slices.Equal(ps, want) {
		return fmt.Errorf("%s holds platforms %v, want %v", file, ps, want)
	}
	return nil
}

// archivePlatforms returns the platforms of the images an OCI archive
// holds (attestations left out).
func archivePlatforms(ctx context.Context, file string) ([]string, error) {
	a, err := manifest.Resolve(ctx, manifest.ArchivePrefix+file, manifest.Options{})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	ms, err := a.Manifests()
	if err != nil {
		return nil, err
	}
	var ps []string
	for _, m := range ms {
		if m.Attestation() || m.Descriptor.Platform == nil {
			continue
		}
		ps = append(ps, manifest.PlatformString(m.Descriptor.Platform))
	}
	slices.Sort(ps)
	return ps, nil
}

// fleetRun is one timed build of a side of row 8.
type fleetRun struct {
	ms       float64
	progress string
	// solves is, for the fleet, the longest of the nodes' solves (ms):
	// the rest of the build is checking, routing and joining.
	solves float64
}

// fleetRows is row 8: 8a pushes to the local registry, 8b writes an OCI
// archive.
func (b *bench) fleetRows(ctx context.Context) []Row {
	const (
		titleA = "the same build of examples/hello for " + buildPlatforms + " through a fleet of 2 nodes vs one node doing both, pushed to 127.0.0.1 (warm cache)"
		titleB = "the same, `--output type=oci,dest=FILE` (A merges the nodes' OCI archives locally)"
		aPush  = "`build.OnFleet`: amd64 on local, arm64 on arm1 (127.0.0.1, mutual TLS, declared native), each pushes by digest, index pushed"
		bPush  = "`build.Build` on local alone: both platforms, one push"
		aOCI   = "`build.OnFleet`: one OCI archive per node, merged (`manifest.CreateArchive`)"
		bOCI   = "`build.Build` on local alone, one OCI archive"
	)
	na := func(why string) []Row {
		return []Row{naRow("8a", titleA, aPush, bPush, why), naRow("8b", titleB, aOCI, bOCI, why)}
	}
	e := b.setupBuild(ctx)
	if e.err != nil {
		return na(firstLine(e.err))
	}
	remote, err := b.startRemoteNode(ctx)
	if err != nil {
		return na(firstLine(err))
	}
	defer remote.stop(b)
	local := fleet.Node{Name: fleet.LocalName, Address: e.addr, Local: true}
	nodes := []fleet.Node{local, remote.node}
	want := strings.Split(buildPlatforms, ",")
	out, err := os.MkdirTemp(b.work, "fleet-")
	if err != nil {
		return na(err.Error())
	}
	defer os.RemoveAll(out)

	opts := func(extra func(*build.Options)) (build.Options, *cappedBuffer) {
		progress := &cappedBuffer{max: 256 << 10}
		o := build.Options{
			Context:        e.hello,
			Platforms:      want,
			BuildArgs:      []string{"BASE=" + e.base},
			Progress:       "plain",
			ProgressOutput: progress,
		}
		extra(&o)
		return o, progress
	}
	// side A: through the fleet; check says what must hold afterwards.
	viaFleet := func(extra func(*build.Options), check func() error) (fleetRun, error) {
		o, progress := opts(extra)
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		start := time.Now()
		res, err := build.OnFleet(bctx, nodes, build.FleetOptions{Options: o})
		el := ms(time.Since(start))
		if err != nil {
			return fleetRun{}, fmt.Errorf("fleet build: %w\n%s", err, tail(progress.String(), 1500))
		}
		run := fleetRun{ms: el, progress: progress.String()}
		where := map[string]string{}
		for _, bt := range res.Built {
			where[bt.Platform] = bt.Node
			run.solves = max(run.solves, bt.Seconds*1000)
			if bt.Retried != "" {
				return run, fmt.Errorf("fleet build: %s was retried: %s", bt.Platform, bt.Retried)
			}
		}
		if where["linux/amd64"] != fleet.LocalName || where["linux/arm64"] != armNodeName {
			return run, fmt.Errorf("fleet build: routes %v, want linux/amd64 on %s and linux/arm64 on %s", where, fleet.LocalName, armNodeName)
		}
		if res.Index == nil {
			return run, errors.New("fleet build: the platforms were not joined into an index")
		}
		return run, check()
	}
	// side B: one node, one solve.
	alone := func(extra func(*build.Options), check func() error) (fleetRun, error) {
		o, progress := opts(extra)
		o.Addr = e.addr
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		start := time.Now()
		_, err := build.Build(bctx, o)
		el := ms(time.Since(start))
		if err != nil {
			return fleetRun{}, fmt.Errorf("build on local: %w\n%s", err, tail(progress.String(), 1500))
		}
		return fleetRun{ms: el, solves: el, progress: progress.String()}, check()
	}
	pushed := func(ref string) func() error {
		return func() error {
			ps, err := indexPlatforms(ref)
			if err != nil {
				return fmt.Errorf("read %s: %w", ref, err)
			}
			if !slices.Equal(ps, want) {
				return fmt.Errorf("%s has platforms %v, want %v", ref, ps, want)
			}
			return nil
		}
	}
	archived := func(file string) func() error {
		return func() error {
			return archiveHolds(ctx, file, want)
		}
	}
	tagA, tagB := e.reg+"/bench-fleet:fleet", e.reg+"/bench-fleet:one"
	fileA, fileB := filepath.Join(out, "fleet.tar"), filepath.Join(out, "one.tar")
	push := func(tag string) func(*build.Options) {
		return func(o *build.Options) { o.Tags, o.Push = []string{tag}, true }
	}
	oci := func(file string) func(*build.Options) {
		return func(o *build.Options) { o.Outputs = []string{"type=oci,dest=" + file} }
	}

	var rows []Row
	for _, v := range []struct {
		id, title, a, b string
		sideA, sideB    func() (fleetRun, error)
	}{
		{"8a", titleA, aPush, bPush,
			func() (fleetRun, error) { return viaFleet(push(tagA), pushed(tagA)) },
			func() (fleetRun, error) { return alone(push(tagB), pushed(tagB)) }},
		{"8b", titleB, aOCI, bOCI,
			func() (fleetRun, error) { return viaFleet(oci(fileA), archived(fileA)) },
			func() (fleetRun, error) { return alone(oci(fileB), archived(fileB)) }},
	} {
		var as, bs, rest []float64
		uncached := 0
		err := func() error {
			// One untimed run of each side: both nodes' caches warm.
			if _, err := v.sideA(); err != nil {
				return err
			}
			if _, err := v.sideB(); err != nil {
				return err
			}
			for i := 0; i < b.cfg.fleetRounds && ctx.Err() == nil; i++ {
				ra, err := v.sideA()
				if err != nil {
					return err
				}
				rb, err := v.sideB()
				if err != nil {
					return err
				}
				as, bs = append(as, ra.ms), append(bs, rb.ms)
				rest = append(rest, ra.ms-ra.solves)
				if !strings.Contains(ra.progress, "CACHED") || !strings.Contains(rb.progress, "CACHED") {
					uncached++
				}
			}
			return ctx.Err()
		}()
		if err != nil {
			rows = append(rows, naRow(v.id, v.title, v.a, v.b, firstLine(err)))
			continue
		}
		r := compareRow(v.id, v.title, v.a, v.b, as, bs)
		diff := make([]float64, len(as))
		for i := range as {
			diff[i] = as[i] - bs[i]
		}
		r.Values = map[string]float64{"fleet_outside_solves_ms": median(rest), "a_minus_b_ms": median(diff)}
		r.Note = fmt.Sprintf("A−B per round: %+.0f ms (median); A outside the nodes' solves (checks, routing, joining): %s (median); every result checked (both platforms; arm64 built on %s); both nodes share these 2 cores and %s emulates arm64 too, so this is the overhead of routing, two solves and joining, not a native node's speed-up",
			median(diff), fmtMS(median(rest)), armNodeName, armNodeName)
		if uncached > 0 {
			r.Note += fmt.Sprintf("; warning: %d rounds had no CACHED step", uncached)
		}
		rows = append(rows, r)
	}
	return rows
}
