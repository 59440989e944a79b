package builder

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	"mabd/builder/manifest"
	"mabd/emulator"
)

// BuildOptions are the arguments of `mabd build`.
type BuildOptions struct {
	// Addr is buildkitd's address ("unix:///run/mabd/buildkitd.sock");
	// "" means DefaultAddress.
	Addr string
	// Context is the build context directory.
	Context string
	// Dockerfile is the Dockerfile's path; "" means Context/Dockerfile.
	// It must have no `# syntax=` line: the built-in frontend builds it.
	Dockerfile string
	// Platforms are the target platforms; nil means every platform the
	// worker reports, one per architecture.
	Platforms []string
	// Tags name the image ("registry:5000/repo:tag"). Without Push, the
	// image is only kept in buildkitd's image store.
	Tags []string
	// BuildArgs are KEY=VALUE pairs for the Dockerfile's ARGs.
	BuildArgs []string
	// Outputs are BuildKit output specs: "type=oci,dest=FILE",
	// "type=local,dest=DIR", "type=image,name=REF,push=true", …
	Outputs []string
	// Push pushes the image named by Tags.
	Push bool
	// InsecureRegistries are registries ("host:port") pushed to over plain
	// HTTP or unverified TLS; localhost and 127.0.0.1 always are.
	InsecureRegistries []string
	// Progress is the progress display: auto (the default), plain, tty,
	// quiet or rawjson.
	Progress string
	// ProgressOutput gets the progress display; nil means os.Stderr.
	ProgressOutput io.Writer
	// BinfmtMount is the binfmt_misc instance consulted to say how to fix
	// an unsupported platform; "" means the host's.
	BinfmtMount string
}

// BuildResult is what a successful Build produced.
type BuildResult struct {
	// Digest is the image's (or image index's) digest, "" when nothing was
	// exported as an image.
	Digest string
	// Platforms are the platforms built.
	Platforms []string
	// ExporterResponse is BuildKit's full answer (containerimage.digest,
	// image.name, …).
	ExporterResponse map[string]string
}

// UsageError is bad input to Build: nothing was built.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// DaemonError says that buildkitd could not be reached: nothing was built.
type DaemonError struct {
	Addr string
	Err  error
}

func (e *DaemonError) Error() string {
	return fmt.Sprintf("cannot reach the builder (buildkitd) at %s: %v: is it running? (`mabd build --addr` selects another)", e.Addr, e.Err)
}
func (e *DaemonError) Unwrap() error { return e.Err }

// UnsupportedPlatformError refuses platforms the worker does not build
// for, before the build starts, saying how to fix it.
type UnsupportedPlatformError struct {
	// Platforms are the unsupported platforms asked for.
	Platforms []string
	// Supported are the worker's platforms, one per architecture.
	Supported []string
	// Fix says what to do.
	Fix string
}

func (e *UnsupportedPlatformError) Error() string {
	verb := "is"
	if len(e.Platforms) > 1 {
		verb = "are"
	}
	return fmt.Sprintf("%s %s not supported by the builder (its platforms: %s): %s", joinAnd(e.Platforms), verb, strings.Join(e.Supported, ", "), e.Fix)
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

func joinAnd(ss []string) string {
	switch len(ss) {
	case 0:
		return ""
	case 1:
		return ss[0]
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " and " + ss[len(ss)-1]
}

// Build runs one multi-platform Dockerfile build on buildkitd: one solve
// with the built-in dockerfile.v0 frontend for all platforms, with
// BuildKit's progress display. Bad input gives a *UsageError, an
// unreachable daemon a *DaemonError, an unsupported platform an
// *UnsupportedPlatformError (all before anything is built), and a failed
// build a *BuildError.
func Build(ctx context.Context, opt BuildOptions) (*BuildResult, error) {
	if opt.Addr == "" {
		opt.Addr = DefaultAddress
	}
	if opt.ProgressOutput == nil {
		opt.ProgressOutput = os.Stderr
	}
	mode, err := progressMode(opt.Progress)
	if err != nil {
		return nil, err
	}
	attrs, local, err := frontendInputs(opt)
	if err != nil {
		return nil, err
	}
	insecure := insecureSet(opt.InsecureRegistries)
	exports, err := exportEntries(opt, insecure)
	if err != nil {
		return nil, err
	}
	want, err := NormalizePlatforms(opt.Platforms)
	if err != nil {
		return nil, &UsageError{Err: err}
	}

	c, err := client.New(ctx, opt.Addr)
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
	for _, w := range workers {
		have = append(have, w.Platforms...)
	}
	if len(have) == 0 {
		return nil, &DaemonError{Addr: opt.Addr, Err: errors.New("it has no worker")}
	}
	if len(want) == 0 {
		want = defaultPlatforms(have)
	}
	if err := checkPlatforms(want, have, opt.BinfmtMount); err != nil {
		return nil, err
	}
	attrs["platform"] = strings.Join(want, ",")

	so := client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   local,
		Exports:       exports,
		Session:       []session.Attachable{authProvider(insecure)},
	}
	disp, err := progressui.NewDisplay(opt.ProgressOutput, mode)
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("--progress %s: %w", mode, err)}
	}
	ch := make(chan *client.SolveStatus)
	eg, ectx := errgroup.WithContext(ctx)
	var resp *client.SolveResponse
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(ectx, nil, so, ch)
		return err
	})
	eg.Go(func() error {
		// Not ectx: the display drains ch until Solve closes it.
		_, err := disp.UpdateFrom(context.WithoutCancel(ctx), ch)
		return err
	})
	if err := eg.Wait(); err != nil {
		return nil, &BuildError{Err: err, Sources: solvererrdefs.Sources(err)}
	}
	res := &BuildResult{Platforms: want, ExporterResponse: resp.ExporterResponse}
	res.Digest = resp.ExporterResponse[exptypes.ExporterImageDigestKey]
	return res, nil
}

func progressMode(s string) (progressui.DisplayMode, error) {
	switch m := progressui.DisplayMode(s); m {
	case "", progressui.AutoMode:
		return progressui.AutoMode, nil
	case progressui.PlainMode, progressui.TtyMode, progressui.QuietMode, progressui.RawJSONMode:
		return m, nil
	}
	return "", usageErr("--progress %q: want auto, plain, tty, quiet or rawjson", s)
}

// frontendInputs checks the context, Dockerfile and build args and returns
// the frontend's attributes and local directories.
func frontendInputs(opt BuildOptions) (map[string]string, map[string]fsutil.FS, error) {
	if opt.Context == "" {
		return nil, nil, usageErr("no build context given")
	}
	ctxDir, err := filepath.Abs(opt.Context)
	if err != nil {
		return nil, nil, &UsageError{Err: err}
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return nil, nil, usageErr("build context %s is not a directory", opt.Context)
	}
	df := opt.Dockerfile
	if df == "" {
		df = filepath.Join(ctxDir, "Dockerfile")
	}
	if df, err = filepath.Abs(df); err != nil {
		return nil, nil, &UsageError{Err: err}
	}
	if fi, err := os.Stat(df); err != nil || !fi.Mode().IsRegular() {
		return nil, nil, usageErr("no Dockerfile at %s", df)
	}
	attrs := map[string]string{"filename": filepath.Base(df)}
	for _, kv := range opt.BuildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, nil, usageErr("--build-arg %q: want KEY=VALUE", kv)
		}
		attrs["build-arg:"+k] = v
	}
	cfs, err := fsutil.NewFS(ctxDir)
	if err != nil {
		return nil, nil, &UsageError{Err: err}
	}
	dfs, err := fsutil.NewFS(filepath.Dir(df))
	if err != nil {
		return nil, nil, &UsageError{Err: err}
	}
	return attrs, map[string]fsutil.FS{"context": cfs, "dockerfile": dfs}, nil
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

// exportEntries turns -t/--push and --output into BuildKit's exports.
func exportEntries(opt BuildOptions, insecure map[string]bool) ([]client.ExportEntry, error) {
	if opt.Push && len(opt.Tags) == 0 {
		return nil, usageErr("--push needs an image name: give one with -t")
	}
	for _, t := range opt.Tags {
		if t == "" || strings.ContainsAny(t, ", \t") {
			return nil, usageErr("-t %q: not an image reference", t)
		}
	}
	var out []client.ExportEntry
	names := strings.Join(opt.Tags, ",")
	markInsecure := func(attrs map[string]string, names string) {
		if _, set := attrs[string(exptypes.OptKeyInsecure)]; set || names == "" {
			return
		}
		for _, n := range strings.Split(names, ",") {
			if isInsecure(n, insecure) {
				attrs[string(exptypes.OptKeyInsecure)] = "true"
				return
			}
		}
	}
	for _, spec := range opt.Outputs {
		e, err := parseOutput(spec)
		if err != nil {
			return nil, err
		}
		switch e.Type {
		case client.ExporterImage:
			if e.Attrs["name"] == "" && names != "" {
				e.Attrs["name"] = names
			}
			if opt.Push && e.Attrs["push"] == "" {
				e.Attrs["push"] = "true"
			}
			markInsecure(e.Attrs, e.Attrs["name"])
		case client.ExporterOCI, client.ExporterDocker:
			if e.Attrs["name"] == "" && names != "" {
				e.Attrs["name"] = names
			}
		}
		out = append(out, e)
	}
	hasImage := slices.ContainsFunc(out, func(e client.ExportEntry) bool { return e.Type == client.ExporterImage })
	if len(opt.Tags) > 0 && !hasImage {
		attrs := map[string]string{"name": names}
		if opt.Push {
			attrs["push"] = "true"
		}
		markInsecure(attrs, names)
		out = append(out, client.ExportEntry{Type: client.ExporterImage, Attrs: attrs})
	}
	return out, nil
}

// parseOutput parses one --output spec (comma-separated key=value, with
// CSV quoting). The file of a file output is only created when BuildKit
// writes it.
func parseOutput(spec string) (client.ExportEntry, error) {
	e := client.ExportEntry{Attrs: map[string]string{}}
	r := csv.NewReader(strings.NewReader(spec))
	r.LazyQuotes = true
	fields, err := r.Read()
	if err != nil {
		return e, usageErr("--output %q: %v", spec, err)
	}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return e, usageErr("--output %q: %q is not key=value", spec, f)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "type" {
			e.Type = v
		} else {
			e.Attrs[k] = v
		}
	}
	if e.Type == "registry" { // docker buildx's shorthand
		e.Type = client.ExporterImage
		e.Attrs["push"] = "true"
	}
	dest := e.Attrs["dest"]
	delete(e.Attrs, "dest")
	file, dir := false, false
	switch e.Type {
	case "":
		return e, usageErr("--output %q: no type= (oci, docker, tar, local, image)", spec)
	case client.ExporterLocal:
		dir = true
	case client.ExporterTar:
		file = true
	case client.ExporterOCI, client.ExporterDocker:
		tar := true
		if v, ok := e.Attrs["tar"]; ok {
			if tar, err = strconv.ParseBool(v); err != nil {
				return e, usageErr("--output %q: tar=%q: want true or false", spec, v)
			}
		}
		file, dir = tar, !tar
	case client.ExporterImage:
		if dest != "" {
			return e, usageErr("--output %q: type=image takes no dest", spec)
		}
		return e, nil
	default:
		return e, usageErr("--output %q: unknown type %q (oci, docker, tar, local, image, registry)", spec, e.Type)
	}
	if dest == "" {
		return e, usageErr("--output %q: type=%s needs dest=", spec, e.Type)
	}
	if dir {
		e.OutputDir = dest
		return e, nil
	}
	if file {
		if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
			return e, usageErr("--output %q: %s is a directory", spec, dest)
		}
		var once sync.Once
		e.Output = func(map[string]string) (io.WriteCloser, error) {
			var f *os.File
			var err error
			once.Do(func() { f, err = os.Create(dest) })
			if f == nil && err == nil {
				err = fmt.Errorf("%s: written twice", dest)
			}
			return f, err
		}
	}
	return e, nil
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

// defaultPlatforms picks one platform per OS and architecture from the
// worker's list (the first it lists: linux/amd64 rather than its v2, v3
// variants).
func defaultPlatforms(have []ocispecs.Platform) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range have {
		p = platforms.Normalize(p)
		k := p.OS + "/" + p.Architecture
		if !seen[k] {
			seen[k] = true
			out = append(out, platforms.Format(p))
		}
	}
	return out
}

// supports: one of the worker's platforms runs p (the same architecture,
// the same or a later variant).
func supports(have []ocispecs.Platform, p ocispecs.Platform) bool {
	p = platforms.Normalize(p)
	for _, h := range have {
		h = platforms.Normalize(h)
		if h.OS == p.OS && h.Architecture == p.Architecture && platforms.Only(h).Match(p) {
			return true
		}
	}
	return false
}

// checkPlatforms refuses the platforms none of the worker's runs.
func checkPlatforms(want []string, have []ocispecs.Platform, mount string) error {
	var bad []string
	for _, w := range want {
		p, err := platforms.Parse(w)
		if err != nil {
			return &UsageError{Err: err}
		}
		if !supports(have, p) {
			bad = append(bad, w)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &UnsupportedPlatformError{Platforms: bad, Supported: defaultPlatforms(have), Fix: platformFix(bad, mount)}
}

// platformFix says how to make the builder support the platforms bad.
func platformFix(bad []string, mount string) string {
	var install, registered, native, unknown []string
	m := binfmt.Mount{Dir: mount}
	for _, b := range bad {
		a, err := emulator.LookupArch(b)
		switch {
		case err != nil || a.Platform == "":
			unknown = append(unknown, b)
		case binfmt.IsNative(a.Name):
			native = append(native, b)
		default:
			if e, err := m.Entry(a.HandlerName()); err == nil && e.Enabled {
				registered = append(registered, b)
			} else {
				install = append(install, a.Name)
			}
		}
	}
	var fixes []string
	if len(install) == 1 {
		fixes = append(fixes, fmt.Sprintf("register its emulator with `mabd install %s`", install[0]))
	} else if len(install) > 1 {
		fixes = append(fixes, fmt.Sprintf("register their emulators with `mabd install %s`", strings.Join(install, " ")))
	}
	if len(registered)+len(native) > 0 {
		fixes = append(fixes, fmt.Sprintf("add %s to the builder's platforms (its emulator is ready)", joinAnd(append(registered, native...))))
	}
	if len(unknown) > 0 {
		fixes = append(fixes, fmt.Sprintf("no emulator mabd knows runs %s", joinAnd(unknown)))
	}
	return strings.Join(fixes, "; ")
}
