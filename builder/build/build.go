package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/platforms"
	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/progress/progressui"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/builder/manifest"
	"mabd/emulator"
)

// BuildOptions are the arguments of `mabd build`.
type Options struct {
	// Addr is buildkitd's address ("unix:///run/mabd/buildkitd.sock");
	// "" means builder.DefaultAddress.
	Addr string
	// Context is the build context directory.
	Context string
	// Dockerfile is the Dockerfile's path; "" means Context/Dockerfile.
	// It must have no `# syntax=` line: the built-in frontend builds it.
	Dockerfile string
	// Platforms are the target platforms; nil means every platform the
	// worker reports, one per architecture (choosePlatforms decides).
	Platforms []string
	// Tags name the image ("registry:5000/repo:tag"). Without Push, the
	// image is only kept in buildkitd's image store.
	Tags []string
	// BuildArgs are KEY=VALUE pairs for the Dockerfile's ARGs.
	BuildArgs []string
	// Outputs are BuildKit output specs: "type=oci,dest=FILE",
	// "type=local,dest=DIR", "type=image,name=REF,push=true", … (see
	// [ParseOutput]).
	Outputs []string
	// Push pushes the image named by Tags.
	Push bool
	// InsecureRegistries are registries ("host:port") pushed to over plain
	// HTTP or unverified TLS; local ones ([manifest.LocalRegistry]) always
	// are.
	InsecureRegistries []string
	// Progress is the progress display: auto (the default), plain, tty,
	// quiet or rawjson.
	Progress string
	// ProgressOutput gets the progress display; nil means os.Stderr.
	ProgressOutput io.Writer
	// BinfmtMount is the binfmt_misc instance consulted to say why a
	// platform is unsupported ([UnsupportedReason]); "" means the host's.
	BinfmtMount string

	// CacheTo are cache exports, CacheFrom cache imports ([ParseCache]):
	// "type=registry,ref=REF,mode=max", "type=local,dest=DIR" (src= to
	// import), "type=inline".
	CacheTo   []string
	CacheFrom []string
	// Target is the stage to build ("" for the last); it must be a stage
	// of the Dockerfile.
	Target string
	// Secrets are secrets for RUN --mount=type=secret: "id=ID,src=FILE",
	// "id=ID,env=VAR" (see secretsAttachable).
	Secrets []string
	// SSH are SSH agents for RUN --mount=type=ssh: "default",
	// "ID=SOCKET", "ID=KEYFILE".
	SSH []string
	// BuildContexts are named contexts: "NAME=DIR",
	// "NAME=docker-image://REF".
	BuildContexts []string
	// NoCache runs every step again, whatever the cache holds.
	NoCache bool
	// Pull resolves every base image anew in its registry rather than
	// from the builder's cache.
	Pull bool
	// Labels are KEY=VALUE labels of the image config.
	Labels []string
	// Annotations are KEY=VALUE annotations of the image index and every
	// manifest, or TYPE[PLATFORM]:KEY=VALUE for one of them (see
	// parseAnnotations).
	Annotations []string
	// Provenance is the SLSA provenance attestation: "" or "false" for
	// none, "mode=min" or "mode=max" (see provenanceAttr).
	Provenance string
	// SBOM is the SBOM attestation: "" for none, or
	// "generator=SCANNER-IMAGE" (see sbomAttr).
	SBOM string
	// MetadataFile, when set, gets the build's metadata as JSON
	// (writeMetadata); IIDFile the image's digest.
	MetadataFile string
	IIDFile      string
	// NativeNode, when set, names a node of the build fleet that runs a
	// platform natively, "" when none does: the emulation report's advice
	// then points to it.
	NativeNode func(platform string) string

	// ClientOpts are how to reach Addr: the mutual TLS of a tcp:// node
	// of the build fleet.
	ClientOpts []client.ClientOpt
	// Events, when set, gets BuildKit's progress events in place of the
	// progress display: a build over several nodes tags and merges them
	// into one display.
	Events func(*client.SolveStatus)
}

// BuildResult is what a successful Build produced.
type Result struct {
	// Digest is the image's (or image index's) digest, "" when nothing was
	// exported as an image.
	Digest string
	// Platforms are the platforms built.
	Platforms []string
	// ExporterResponse is BuildKit's full answer (containerimage.digest,
	// image.name, …).
	ExporterResponse map[string]string
	// Report is the build's emulation report.
	Report *Report
}

// UsageError is bad input to Build: nothing was built.
type UsageError struct {
	// Option is the BuildOptions field at fault ("Outputs", "Progress",
	// "BuildArgs", "Tags", "Push"), "" when Err says it all.
	Option string
	// Value is the value at fault, as given; "" when it is missing.
	Value string
	// Err says what is wrong.
	Err error
}

func (e *UsageError) Error() string {
	switch {
	case e.Option == "":
		return e.Err.Error()
	case e.Value == "":
		return e.Option + ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s %q: %v", e.Option, e.Value, e.Err)
}

func (e *UsageError) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// optionErr returns a function that makes the *UsageError about the value
// of option (a BuildOptions field) with the message format, args.
func optionErr(option, value string) func(format string, args ...any) error {
	return func(format string, args ...any) error {
		return &UsageError{Option: option, Value: value, Err: fmt.Errorf(format, args...)}
	}
}

// DaemonError says that buildkitd could not be reached: nothing was built.
type DaemonError struct {
	Addr string
	Err  error
}

func (e *DaemonError) Error() string {
	return fmt.Sprintf("cannot reach the builder (buildkitd) at %s: %v", e.Addr, e.Err)
}
func (e *DaemonError) Unwrap() error { return e.Err }

// UnsupportedPlatformError refuses platforms the worker does not build
// for, before the build starts, each with the reason: what the
// binfmt_misc table has for it.
type UnsupportedPlatformError struct {
	// Unsupported are the unsupported platforms asked for, in order.
	Unsupported []UnsupportedPlatform
	// Supported are the worker's platforms, one per architecture.
	Supported []string
}

// UnsupportedPlatform is a platform the worker does not build for, and
// why.
type UnsupportedPlatform struct {
	// Platform is the platform as asked for ("linux/s390x").
	Platform string
	// Arch is the QEMU name of its architecture ("s390x"); "" with
	// NoEmulator.
	Arch string
	// Reason says what the binfmt_misc table has for it.
	Reason UnsupportedReason
}

// UnsupportedReason says why a worker lacks a platform.
type UnsupportedReason int

// Reasons of an [UnsupportedPlatform].
const (
	// NoHandler: the platform's emulator is known, but its binfmt_misc
	// handler is not registered (or is disabled).
	NoHandler UnsupportedReason = iota + 1
	// HandlerReady: the platform's handler is registered, or it is the
	// host's own and needs none, but the worker was not given it.
	HandlerReady
	// NoEmulator: no emulator mabd knows runs the platform.
	NoEmulator
	// NotInBuilder: a foreign platform mabd knows, but the builder's
	// private binfmt_misc table (mabd's isolated builder) holds no
	// handler for it.
	NotInBuilder
)

// privateBuilder stands for the binfmt_misc table of a worker that
// emulates in a private table of its own ([builder.EmulationLabel]): the host's
// table says nothing about it.
const privateBuilder = "\x00private"

func (e *UnsupportedPlatformError) Error() string {
	var why []string
	for _, u := range e.Unsupported {
		switch u.Reason {
		case NoHandler:
			why = append(why, fmt.Sprintf("%s: no binfmt_misc handler for %s is registered", u.Platform, u.Arch))
		case HandlerReady:
			why = append(why, fmt.Sprintf("%s: its emulator is ready, but the builder was not given the platform", u.Platform))
		case NotInBuilder:
			why = append(why, fmt.Sprintf("%s: the builder's private binfmt_misc table holds no handler for %s", u.Platform, u.Arch))
		default:
			why = append(why, fmt.Sprintf("%s: no known emulator runs it", u.Platform))
		}
	}
	return fmt.Sprintf("not supported by the builder (its platforms: %s): %s", strings.Join(e.Supported, ", "), strings.Join(why, "; "))
}

// BuildError is a build that ran and failed.
type BuildError struct {
	Err error
	// Sources are the Dockerfile lines of the failing step, printed the
	// way BuildKit does (Print), when BuildKit attached them.
	Sources []*solvererrdefs.Source
}

func (e *BuildError) Error() string { return "build failed: " + e.Err.Error() }
func (e *BuildError) Unwrap() error { return e.Err }

// PrintSources writes the Dockerfile excerpts of the failing step to w.
func (e *BuildError) PrintSources(w io.Writer) {
	for _, s := range e.Sources {
		s.Print(w)
	}
}

// Build runs one multi-platform Dockerfile build on buildkitd: one solve
// with the built-in dockerfile.v0 frontend for all platforms, with
// BuildKit's progress display. Bad input gives a *UsageError, an
// unreachable daemon a *DaemonError, an unsupported platform an
// *UnsupportedPlatformError (all before anything is built), and a failed
// build a *BuildError. A build that succeeded but whose metadata or image
// ID file could not be written returns its result and an
// *OutputFileError.
func Build(ctx context.Context, opt Options) (*Result, error) {
	if opt.Addr == "" {
		opt.Addr = builder.DefaultAddress
	}
	if opt.ProgressOutput == nil {
		opt.ProgressOutput = os.Stderr
	}
	p, err := planBuild(opt)
	if err != nil {
		return nil, err
	}
	mode, in, insecure, exports, want := p.mode, p.in, p.insecure, p.exports, p.want
	cacheExports, cacheImports := p.cacheExports, p.cacheImports
	if err := CheckOutputFiles(opt); err != nil {
		return nil, err
	}

	c, err := client.New(ctx, opt.Addr, opt.ClientOpts...)
	if err != nil {
		return nil, &DaemonError{Addr: opt.Addr, Err: err}
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	workers, err := c.ListWorkers(wctx)
	cancel()
	if err != nil {
		return nil, &DaemonError{Addr: opt.Addr, Err: err}
	}
	var have []ocispecs.Platform
	private := false
	for _, w := range workers {
		have = append(have, w.Platforms...)
		private = private || w.Labels[builder.EmulationLabel] == builder.EmulationPrivate
	}
	if len(have) == 0 {
		return nil, &DaemonError{Addr: opt.Addr, Err: errors.New("it has no worker")}
	}
	mount := opt.BinfmtMount
	if private {
		mount = privateBuilder
	}
	if want, err = choosePlatforms(want, have, mount); err != nil {
		return nil, err
	}
	in.attrs["platform"] = strings.Join(want, ",")
	// The image is an index with several platforms or attestations.
	index := len(want) > 1 || in.attrs["attest:provenance"] != "" || in.attrs["attest:sbom"] != ""
	if err := annotateExports(exports, in.annotations, index); err != nil {
		return nil, err
	}

	so := client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: in.attrs,
		LocalMounts:   in.local,
		Exports:       exports,
		CacheExports:  cacheExports,
		CacheImports:  cacheImports,
		Session:       append([]session.Attachable{authProvider(insecure)}, in.session...),
	}
	disp, err := progressui.NewDisplay(opt.ProgressOutput, mode)
	if err != nil {
		return nil, &UsageError{Option: "Progress", Value: string(mode), Err: err}
	}
	var steps progressLog
	ch := make(chan *client.SolveStatus)
	dch := make(chan *client.SolveStatus)
	eg, ectx := errgroup.WithContext(ctx)
	var resp *client.SolveResponse
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(ectx, nil, so, ch)
		return err
	})
	eg.Go(func() error {
		// The report's copy of the progress events; Solve closes ch.
		defer close(dch)
		for s := range ch {
			steps.add(s)
			dch <- s
		}
		return nil
	})
	eg.Go(func() error {
		if opt.Events != nil {
			for s := range dch {
				opt.Events(s)
			}
			return nil
		}
		// Not ectx: the display drains dch until it is closed.
		_, err := disp.UpdateFrom(context.WithoutCancel(ctx), dch)
		for range dch {
		}
		return err
	})
	if err := eg.Wait(); err != nil {
		return nil, &BuildError{Err: err, Sources: solvererrdefs.Sources(err)}
	}
	res := &Result{Platforms: want, ExporterResponse: resp.ExporterResponse}
	res.Digest = resp.ExporterResponse[exptypes.ExporterImageDigestKey]
	res.Report = newReport(reportInput{
		vertices:      steps.vertices(),
		built:         want,
		buildPlatform: platforms.Format(have[0]),
		stages:        in.stages,
		target:        opt.Target,
		nativeNode:    opt.NativeNode,
	})
	return res, writeOutputFiles(ctx, opt, res, exports)
}

// buildPlan is what Build makes of its options before it contacts the
// builder.
type buildPlan struct {
	mode                       progressui.DisplayMode
	in                         *inputs
	insecure                   map[string]bool
	exports                    []client.ExportEntry
	cacheExports, cacheImports []client.CacheOptionsEntry
	// want are the platforms asked for, normalized, or [AllPlatforms].
	want []string
}

// planBuild checks opt and turns it into the frontend's inputs, the exports
// and the cache entries, without contacting the builder or writing a file.
func planBuild(opt Options) (*buildPlan, error) {
	mode, err := ProgressMode(opt.Progress)
	if err != nil {
		return nil, err
	}
	in, err := frontendInputs(opt)
	if err != nil {
		return nil, err
	}
	p := &buildPlan{mode: mode, in: in, insecure: insecureSet(opt.InsecureRegistries)}
	if p.exports, err = exportEntries(opt, p.insecure); err != nil {
		return nil, err
	}
	if p.cacheExports, p.cacheImports, err = cacheEntries(opt, p.insecure); err != nil {
		return nil, err
	}
	p.want = []string{AllPlatforms}
	if !slices.Equal(opt.Platforms, p.want) {
		if p.want, err = builder.NormalizePlatforms(opt.Platforms); err != nil {
			return nil, &UsageError{Option: "Platforms", Value: strings.Join(opt.Platforms, ","), Err: err}
		}
	}
	return p, nil
}

// Check refuses the bad input Build would refuse (a *UsageError), without
// contacting the builder or writing a file: the metadata and image ID
// files are not checked.
func Check(opt Options) error {
	_, err := planBuild(opt)
	return err
}

// ProgressMode parses BuildOptions.Progress: "" is auto; a mode
// progressui does not have is a *UsageError.
func ProgressMode(s string) (progressui.DisplayMode, error) {
	switch m := progressui.DisplayMode(s); m {
	case "", progressui.AutoMode:
		return progressui.AutoMode, nil
	case progressui.PlainMode, progressui.TtyMode, progressui.QuietMode, progressui.RawJSONMode:
		return m, nil
	}
	return "", &UsageError{Option: "Progress", Value: s, Err: errors.New("want auto, plain, tty, quiet or rawjson")}
}

// inputs are what the frontend and the session get from BuildOptions.
type inputs struct {
	// attrs are the frontend's attributes.
	attrs map[string]string
	// local are the directories the session serves: the context, the
	// Dockerfile's and the named contexts'.
	local map[string]fsutil.FS
	// session are the attachables besides the registry credentials:
	// secrets, SSH agents.
	session []session.Attachable
	// annotations go to the image and oci exporters.
	annotations []annotation
	// stages are the Dockerfile's, nil when it does not parse here (the
	// frontend will say why).
	stages []stage
}

// frontendInputs checks the context, Dockerfile, build args and the other
// inputs of the build and returns the frontend's attributes, local
// directories and session attachables.
func frontendInputs(opt Options) (*inputs, error) {
	if opt.Context == "" {
		return nil, usageErr("no build context given")
	}
	ctxDir, err := filepath.Abs(opt.Context)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return nil, usageErr("build context %s is not a directory", opt.Context)
	}
	df := opt.Dockerfile
	if df == "" {
		df = filepath.Join(ctxDir, "Dockerfile")
	}
	if df, err = filepath.Abs(df); err != nil {
		return nil, &UsageError{Err: err}
	}
	if fi, err := os.Stat(df); err != nil || !fi.Mode().IsRegular() {
		return nil, usageErr("no Dockerfile at %s", df)
	}
	in := &inputs{attrs: map[string]string{"filename": filepath.Base(df)}}
	for _, kv := range opt.BuildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &UsageError{Option: "BuildArgs", Value: kv, Err: errors.New("want KEY=VALUE")}
		}
		in.attrs["build-arg:"+k] = v
	}
	in.stages, _ = readStages(df)
	if opt.Target != "" {
		if in.stages != nil {
			if err := checkTarget(opt.Target, in.stages); err != nil {
				return nil, err
			}
		}
		in.attrs["target"] = opt.Target
	}
	if opt.NoCache {
		in.attrs["no-cache"] = ""
	}
	if opt.Pull {
		in.attrs["image-resolve-mode"] = "pull"
	}
	if err := addLabels(opt.Labels, in.attrs); err != nil {
		return nil, err
	}
	if in.annotations, err = parseAnnotations(opt.Annotations); err != nil {
		return nil, err
	}
	if v, err := provenanceAttr(opt.Provenance); err != nil {
		return nil, err
	} else if v != "" {
		in.attrs["attest:provenance"] = v
	}
	if v, err := sbomAttr(opt.SBOM); err != nil {
		return nil, err
	} else if v != "" {
		in.attrs["attest:sbom"] = v
	}
	cfs, err := fsutil.NewFS(ctxDir)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	dfs, err := fsutil.NewFS(filepath.Dir(df))
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	in.local = map[string]fsutil.FS{"context": cfs, "dockerfile": dfs}
	if err := addBuildContexts(opt.BuildContexts, in.attrs, in.local); err != nil {
		return nil, err
	}
	secrets, err := secretsAttachable(opt.Secrets)
	if err != nil {
		return nil, err
	}
	ssh, err := sshAttachable(opt.SSH)
	if err != nil {
		return nil, err
	}
	for _, a := range []session.Attachable{secrets, ssh} {
		if a != nil {
			in.session = append(in.session, a)
		}
	}
	return in, nil
}

// insecureSet is the set of registry hosts ("host:port") reached without
// TLS checks; an http:// or https:// prefix and a trailing slash are
// ignored.
func insecureSet(hosts []string) map[string]bool {
	m := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(h, "http://"), "https://"), "/")
		m[h] = true
	}
	return m
}

// isInsecure: the registry of ref is in insecure or on this machine
// ([manifest.LocalRegistry]).
func isInsecure(ref string, insecure map[string]bool) bool {
	h := manifest.RegistryHost(ref)
	return insecure[h] || manifest.LocalRegistry(h)
}

// InsecureRegistry says whether the registry of the image reference ref is
// reached over plain HTTP or unverified TLS by a build whose
// [BuildOptions.InsecureRegistries] are insecure: it is one of them, or it
// is on this machine.
func InsecureRegistry(ref string, insecure []string) bool {
	return isInsecure(ref, insecureSet(insecure))
}

// authProvider gives buildkitd the credentials of ~/.docker/config.json.
func authProvider(insecure map[string]bool) session.Attachable {
	tls := map[string]*authprovider.AuthTLSConfig{}
	for h := range insecure {
		tls[h] = &authprovider.AuthTLSConfig{Insecure: true}
	}
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: authprovider.LoadAuthConfig(dockerconfig.LoadDefaultConfigFile(io.Discard)),
		TLSConfigs:         tls,
	})
}

// AllPlatforms, as the only platform asked for, builds for every platform
// the worker reports (`mabd build --platform all`).
const AllPlatforms = "all"

// choosePlatforms decides what `mabd build` builds for, as buildx does:
// the platforms asked for (--platform, normalized by
// [NormalizePlatforms]), each of which one of the worker's platforms must
// run; with none asked for, the build host's own (the worker's first
// platform, which BuildKit lists first: linux/amd64 on an x86-64 host);
// with [AllPlatforms], every platform the worker reports (all it
// verified), one per OS and architecture (the first it lists: linux/amd64
// rather than its v2, v3 variants). Platforms the worker does not run are
// refused with an *[UnsupportedPlatformError] that says, from the
// binfmt_misc table at binfmtMount ("" for the host's), why each is
// missing.
func choosePlatforms(asked []string, worker []ocispecs.Platform, binfmtMount string) ([]string, error) {
	switch {
	case len(asked) == 1 && asked[0] == AllPlatforms:
		return builder.OnePerArch(worker), nil
	case len(asked) == 0 && len(worker) > 0:
		return builder.OnePerArch(worker[:1]), nil
	case len(asked) == 0:
		return []string{platforms.DefaultString()}, nil
	}
	var bad []UnsupportedPlatform
	for _, a := range asked {
		p, err := platforms.Parse(a)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		if !runs(worker, p) {
			bad = append(bad, whyUnsupported(a, binfmtMount))
		}
	}
	if len(bad) > 0 {
		return nil, &UnsupportedPlatformError{Unsupported: bad, Supported: builder.OnePerArch(worker)}
	}
	return asked, nil
}

// runs: one of the worker's platforms runs p (the same architecture, the
// same or a later variant).
func runs(worker []ocispecs.Platform, p ocispecs.Platform) bool {
	p = platforms.Normalize(p)
	for _, w := range worker {
		w = platforms.Normalize(w)
		if w.OS == p.OS && w.Architecture == p.Architecture && platforms.Only(w).Match(p) {
			return true
		}
	}
	return false
}

// whyUnsupported looks up what the binfmt_misc table at mount has for a
// platform the worker does not run.
func whyUnsupported(platform, mount string) UnsupportedPlatform {
	u := UnsupportedPlatform{Platform: platform, Reason: NoEmulator}
	a, err := binfmt.Lookup(platform)
	if err != nil || a.Platform == "" {
		return u
	}
	u.Arch = a.Name
	if emulator.IsNative(a.Name) {
		u.Reason = HandlerReady
	} else if mount == privateBuilder {
		u.Reason = NotInBuilder
	} else if e, err := (binfmt.Mount{Dir: mount}).Entry(a.HandlerName()); err == nil && e.Enabled {
		u.Reason = HandlerReady
	} else {
		u.Reason = NoHandler
	}
	return u
}
