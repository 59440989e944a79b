package buildcli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mabd/daemon/api"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"mabd/builder"
	"mabd/builder/audit"
	"mabd/builder/build"
	"mabd/builder/fleet"
	"mabd/builder/manifest"
	"mabd/emulator"
	"mabd/internal/cli"
)

// Exit statuses of `mabd build`: 0 built, cli.ExitDegraded (1) the build
// failed, cli.ExitError (2) bad usage or the builder could not be reached.
func newBuild() *cobra.Command {
	var opt build.Options
	var doAudit, quiet bool
	var reportSpec, socket string
	var report reportMode
	cmd := &cobra.Command{
		Use:   "build [-f Dockerfile] [--platform P,P…] [-t REF]… [--build-arg K=V]… [--output SPEC]… [--push] [--cache-to SPEC] [--cache-from SPEC]… [--target STAGE] [--secret SPEC]… [--metadata-file FILE] [--report MODE] CONTEXT",
		Short: cli.Short("build"),
		Long: `Build the Dockerfile in CONTEXT (or -f) for every --platform in one BuildKit
solve, on the buildkitd mabd supervises (--addr), with BuildKit's progress
display. The Dockerfile is built by BuildKit's built-in frontend, so it must
have no "# syntax=" line.

Platforms default, as with docker buildx, to the build host's own (the
builder's native platform, linux/amd64 on an x86-64 host), or to
$DOCKER_DEFAULT_PLATFORM when it is set; --platform all builds for every
platform the builder verified, one per architecture. A platform it does not
support is refused before the build starts, with what fixes it: mabd's
builder runs foreign RUN steps through the handlers of its own private
binfmt_misc table ([buildkit] architectures in /etc/mabd/mabd.toml).

With a fleet (the daemon on --socket has [fleet.nodes]) and no --addr, each
platform is built on a node that runs it natively, else on one that emulates
it (the local builder first), one solve per node at once, with one progress
display whose lines are tagged "[node platform]"; a platform no healthy node
builds is refused before anything starts. The images of several nodes are
joined into one index: pushed (each node pushes its images by digest, then the
index goes under each tag) or written as one OCI archive (type=oci,dest=FILE);
other outputs need one node (--addr). A node that goes away during its solve
is replaced once by the next node of the route. A summary says where each
platform was built, native or emulated, how long it took, and why.

Outputs: -t names the image; with --push it is pushed to its registry (over
plain HTTP for --insecure-registry hosts, localhost and 127.0.0.1), without it
kept in buildkitd's image store. --output adds BuildKit outputs:
type=oci,dest=FILE (an OCI image-layout tarball: index.json, then one image
index, then a manifest per platform), type=local,dest=DIR (the files, in a
directory per platform when there are several), type=image,name=REF,push=true,
type=docker and type=tar. With no -t and no --output the result only stays in
the build cache. The image digest is printed on stdout.

For CI, as docker buildx build: --cache-to and --cache-from keep the build
cache between runs (type=registry,ref=REF[,mode=max], type=local,dest=DIR /
src=DIR, type=inline; mode=max keeps every step, not only the image's);
--target, --secret id=ID,src=FILE|env=VAR (for RUN --mount=type=secret,
never stored in the image), --ssh default|ID=SOCKET, --build-context
NAME=DIR|docker-image://REF, --no-cache, --pull (resolve every base image
anew), --label and --annotation (on the index and every manifest);
--provenance mode=min|max attaches SLSA provenance to the index; --sbom
needs generator=REF, a scanner image the builder can pull. --metadata-file
writes the digests (containerimage.digest, mabd.index.digest, and each
platform's manifest in mabd.manifests), --iidfile the image digest, and
--quiet prints only the digest.

After a build for several platforms (or an emulated one) the emulation
report follows on stderr: the slowest steps of each platform with their
time, which ran under emulation and how much slower than on the build
platform, and, when an emulated step dominates the build, the Dockerfile
lines that move it to $BUILDPLATFORM and cross-compile instead.
--report json=FILE also writes it as JSON to FILE, --report json prints the
JSON instead of the text, --report none turns it off.

Every bad option (an unknown cache type, a missing secret file, a --target
that is no stage of the Dockerfile, a malformed --build-context, …) is
refused before anything is built.

Exit status: 0 built; 1 the build failed (the failing step's output is in
the progress display, the error names the step), or it was built but the
metadata, image ID or report file could not be written; 2 bad usage,
unsupported platform or unreachable builder.`,
		Example: `  mabd build --platform linux/amd64,linux/arm64 -t 127.0.0.1:5000/hello:v1 --push examples/hello
  mabd build --platform linux/arm64 --output type=local,dest=out examples/hello
  mabd build --platform linux/amd64,linux/arm64 -t reg.example/app:$CI_SHA --push \
      --cache-from type=registry,ref=reg.example/app:cache \
      --cache-to type=registry,ref=reg.example/app:cache,mode=max \
      --secret id=npmrc,src=$HOME/.npmrc --metadata-file build.json --report json=report.json .`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if report, err = parseReport(reportSpec); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd build:", err)
				return cli.ExitCode(cli.ExitError)
			}
			if !doAudit {
				return nil
			}
			ref, err := auditRef(opt)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd build:", buildMessage(err, opt.Addr))
				return cli.ExitCode(cli.ExitError)
			}
			if ref == "" {
				return fmt.Errorf("--audit needs an image to read: --push with -t, or --output type=oci,dest=FILE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opt.Context = args[0]
			opt.ProgressOutput = cmd.ErrOrStderr()
			if quiet {
				opt.Progress = "quiet"
			}
			if len(opt.Platforms) == 0 {
				if p := os.Getenv("DOCKER_DEFAULT_PLATFORM"); p != "" {
					opt.Platforms = []string{p}
				}
			}
			// BuildKit's client and containerd's content store (a
			// type=local cache) log through logrus.
			logrus.SetOutput(cmd.ErrOrStderr())
			logrus.SetFormatter(clientLog{})
			// Ctrl-C cancels the solve, which stops the build in buildkitd.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var fi *api.FleetInfo
			if !cmd.Flags().Changed("addr") {
				fi = daemonFleet(ctx, socket)
			}
			var res *build.Result
			var err error
			var built *build.FleetResult
			if fi != nil {
				built, err = build.OnFleet(ctx, fi.Nodes, build.FleetOptions{Options: opt})
				if built != nil {
					res = built.Single
					if res == nil {
						res = &build.Result{Digest: built.Digest}
					}
				}
			} else {
				res, err = build.Build(ctx, opt)
			}
			errw := cmd.ErrOrStderr()
			var be *build.BuildError
			var fe *build.OutputFileError
			var nr *fleet.NoRouteError
			var je *build.JoinError
			switch {
			case errors.As(err, &nr):
				fmt.Fprintln(errw, "mabd build:", cli.Safe(nr.Error())+": add a node that runs it to [fleet.nodes], or its architecture to the local builder's [buildkit] architectures, in "+api.ConfigPath())
				return cli.ExitCode(cli.ExitError)
			case errors.As(err, &be):
				be.PrintSources(errw)
				fmt.Fprintln(errw, "mabd build:", err)
				return cli.ExitCode(cli.ExitDegraded)
			case errors.As(err, &je):
				fmt.Fprintln(errw, "mabd build: every platform was built, but:", err)
				return cli.ExitCode(cli.ExitDegraded)
			case err != nil && !errors.As(err, &fe):
				fmt.Fprintln(errw, "mabd build:", buildMessage(err, opt.Addr))
				return cli.ExitCode(cli.ExitError)
			}
			if res.Digest != "" {
				fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
			}
			failed := false
			if fe != nil {
				fmt.Fprintln(errw, "mabd build: the image is built, but:", fe)
				failed = true
			}
			if built != nil && !quiet {
				printBuilt(errw, built.Built)
			}
			if err := report.write(errw, res.Report, quiet); err != nil {
				fmt.Fprintln(errw, "mabd build: the image is built, but:", err)
				failed = true
			}
			if doAudit {
				if err := auditBuilt(cmd, opt); err != nil {
					return err
				}
			}
			if failed {
				return cli.ExitCode(cli.ExitDegraded)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&doAudit, "audit", false, "after the build, audit the pushed image (or the type=oci output) for binaries of the wrong architecture, like mabd image audit")
	f.StringVarP(&opt.Dockerfile, "file", "f", "", "the Dockerfile (default CONTEXT/Dockerfile)")
	f.StringSliceVar(&opt.Platforms, "platform", nil, "target platforms, comma-separated, or all (default: the build host's platform, or $DOCKER_DEFAULT_PLATFORM)")
	f.StringArrayVarP(&opt.Tags, "tag", "t", nil, "image name, e.g. registry:5000/repo:tag (repeatable)")
	f.StringArrayVar(&opt.BuildArgs, "build-arg", nil, "KEY=VALUE for an ARG of the Dockerfile (repeatable)")
	f.StringArrayVarP(&opt.Outputs, "output", "o", nil, "BuildKit output: type=oci,dest=FILE | type=local,dest=DIR | type=image,name=REF[,push=true] (repeatable)")
	f.BoolVar(&opt.Push, "push", false, "push the image named by -t")
	f.StringArrayVar(&opt.InsecureRegistries, "insecure-registry", nil, "registry host:port to push to over plain HTTP or unverified TLS (repeatable)")
	f.StringVar(&opt.Progress, "progress", "auto", "progress display: auto, plain or tty (also quiet, rawjson)")
	f.StringVar(&socket, "socket", api.Socket(), "the mabd daemon whose fleet builds, when --addr is not given and it has [fleet.nodes]")
	f.StringVar(&opt.Addr, "addr", api.BuildKitAddress(), "buildkitd address: unix:///path (an ordinary user's own daemon's when it runs, else the system daemon's; TCP needs client certificates, which mabd build does not take yet)")
	f.StringArrayVar(&opt.CacheTo, "cache-to", nil, "export the build cache: type=registry,ref=REF[,mode=max] | type=local,dest=DIR | type=inline (repeatable)")
	f.StringArrayVar(&opt.CacheFrom, "cache-from", nil, "import a build cache: type=registry,ref=REF | type=local,src=DIR (repeatable)")
	f.StringVar(&opt.Target, "target", "", "the stage of the Dockerfile to build (default: the last)")
	f.StringArrayVar(&opt.Secrets, "secret", nil, "a secret for RUN --mount=type=secret: id=ID,src=FILE | id=ID,env=VAR (repeatable)")
	f.StringArrayVar(&opt.SSH, "ssh", nil, "an SSH agent for RUN --mount=type=ssh: default ($SSH_AUTH_SOCK) | ID=SOCKET | ID=KEYFILE (repeatable)")
	f.StringArrayVar(&opt.BuildContexts, "build-context", nil, "a named context for FROM and COPY --from: NAME=DIR | NAME=docker-image://REF (repeatable)")
	f.BoolVar(&opt.NoCache, "no-cache", false, "run every step again, whatever the cache holds")
	f.BoolVar(&opt.Pull, "pull", false, "resolve every base image anew in its registry, not from the builder's cache")
	f.StringArrayVar(&opt.Labels, "label", nil, "KEY=VALUE label of the image config (repeatable)")
	f.StringArrayVar(&opt.Annotations, "annotation", nil, "KEY=VALUE annotation of the image index and every manifest, or index:KEY=VALUE, manifest[PLATFORM]:KEY=VALUE (repeatable)")
	f.StringVar(&opt.Provenance, "provenance", "", "attach SLSA provenance to the image index: mode=min | mode=max | false (default: none)")
	f.StringVar(&opt.SBOM, "sbom", "", "attach an SBOM made by a scanner image you name: generator=REF")
	f.StringVar(&opt.MetadataFile, "metadata-file", "", "write the build's metadata (digests of the image, its index and each platform's manifest) as JSON to FILE")
	f.StringVar(&opt.IIDFile, "iidfile", "", "write the image's digest to FILE")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress and no report: print only the image's digest")
	f.StringVar(&reportSpec, "report", "text", "the emulation report after a multi-platform or emulated build: text (on stderr), json (on stderr), json=FILE (text on stderr and JSON in FILE), none")
	return cmd
}

// clientLog words what BuildKit's client logs in mabd build's process
// ("local cache import at DIR not found …", the first run of a CI job) as
// one line, and drops containerd's notice that a local cache directory's
// file system has no fs-verity, which says nothing about the build.
type clientLog struct{}

func (clientLog) Format(e *logrus.Entry) ([]byte, error) {
	if strings.Contains(e.Message, "fsverity") {
		return nil, nil
	}
	msg := "mabd build: " + e.Level.String() + ": " + e.Message
	if err, ok := e.Data[logrus.ErrorKey]; ok {
		msg += fmt.Sprintf(": %v", err)
	}
	return []byte(msg + "\n"), nil
}

// reportMode is what `mabd build --report` asked for.
type reportMode struct {
	// text prints the report for people on stderr; json prints it as
	// JSON there instead.
	text, json bool
	// file gets the JSON report.
	file string
}

// parseReport parses --report: text, json, json=FILE or none.
func parseReport(s string) (reportMode, error) {
	switch s {
	case "text", "":
		return reportMode{text: true}, nil
	case "json":
		return reportMode{json: true}, nil
	case "none":
		return reportMode{}, nil
	}
	if f, ok := strings.CutPrefix(s, "json="); ok && f != "" {
		if fi, err := os.Stat(filepath.Dir(f)); err != nil || !fi.IsDir() {
			return reportMode{}, fmt.Errorf("--report %q: the directory %s does not exist", s, filepath.Dir(f))
		}
		return reportMode{text: true, file: f}, nil
	}
	return reportMode{}, fmt.Errorf("--report %q: want text, json, json=FILE or none", s)
}

// write shows the report as asked: the text or JSON on w when the build
// has something to say about emulation (several platforms, or an emulated
// one) and not quiet; the JSON in the file always.
func (m reportMode) write(w io.Writer, r *build.Report, quiet bool) error {
	if r == nil {
		return nil
	}
	if m.file != "" {
		var b bytes.Buffer
		if err := r.WriteJSON(&b); err != nil {
			return err
		}
		if err := os.WriteFile(m.file, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if quiet || !r.Interesting() {
		return nil
	}
	switch {
	case m.json:
		return r.WriteJSON(w)
	case m.text:
		return r.WriteText(w)
	}
	return nil
}

// buildFlags name the flag of each build.Options field that a
// build.UsageError can be about.
var buildFlags = map[string]string{
	"Outputs":       "--output",
	"Platforms":     "--platform",
	"Progress":      "--progress",
	"BuildArgs":     "--build-arg",
	"Tags":          "-t",
	"Push":          "--push",
	"CacheTo":       "--cache-to",
	"CacheFrom":     "--cache-from",
	"Target":        "--target",
	"Secrets":       "--secret",
	"SSH":           "--ssh",
	"BuildContexts": "--build-context",
	"Labels":        "--label",
	"Annotations":   "--annotation",
	"Provenance":    "--provenance",
	"SBOM":          "--sbom",
	"MetadataFile":  "--metadata-file",
	"IIDFile":       "--iidfile",
}

// buildMessage words an error of build.Build (or build.ParseOutput)
// for the user of mabd build: the flag at fault, and what fixes it.
func buildMessage(err error, addr string) string {
	var ue *build.UsageError
	if errors.As(err, &ue) && ue.Option != "" {
		flag := buildFlags[ue.Option]
		switch {
		case ue.Option == "Push":
			return "--push needs an image name: give one with -t"
		case flag == "":
			return err.Error()
		case ue.Value == "":
			return flag + ": " + ue.Err.Error()
		}
		return fmt.Sprintf("%s %q: %v", flag, ue.Value, ue.Err)
	}
	var de *build.DaemonError
	if errors.As(err, &de) {
		return err.Error() + ": is it running? (--addr selects another)"
	}
	var pe *build.UnsupportedPlatformError
	if errors.As(err, &pe) {
		return unsupportedMessage(pe, builderOf(addr))
	}
	return err.Error()
}

// builderOf returns the status of the builder at addr when it is the one
// the mabd daemon on its default socket (the user's own, else the system's) supervises, nil otherwise.
func builderOf(addr string) *builder.Status {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ds, err := api.NewClient("").Status(ctx)
	if err != nil || ds.Daemon.BuildKit == nil || ds.Daemon.BuildKit.Address != addr {
		return nil
	}
	return ds.Daemon.BuildKit
}

// unsupportedMessage refuses the platforms the builder does not support,
// with what fixes each: for mabd's private builder (bk), the setting or
// why its handler failed; otherwise the host's handler to register.
func unsupportedMessage(e *build.UnsupportedPlatformError, bk *builder.Status) string {
	var asked, install, ready, unknown []string
	var private []string
	for _, u := range e.Unsupported {
		asked = append(asked, u.Platform)
		if u.Reason == build.NotInBuilder {
			why := fmt.Sprintf("add %s to [buildkit] architectures in /etc/mabd/mabd.toml and `systemctl reload mabd` (mabd's builder emulates in a binfmt_misc table of its own)", u.Arch)
			if bk != nil {
				for _, h := range bk.Private {
					if h.Platform == u.Platform && h.State == emulator.StateFailed {
						why = "its handler failed verification in the builder's namespace: " + h.Reason
					}
				}
			}
			private = append(private, u.Platform+": "+why)
			continue
		}
		switch u.Reason {
		case build.NoHandler:
			install = append(install, u.Arch)
		case build.HandlerReady:
			ready = append(ready, u.Platform)
		default:
			unknown = append(unknown, u.Platform)
		}
	}
	fixes := private
	if len(install) == 1 {
		fixes = append(fixes, fmt.Sprintf("register its emulator with `mabd install %s`", install[0]))
	} else if len(install) > 1 {
		fixes = append(fixes, fmt.Sprintf("register their emulators with `mabd install %s`", strings.Join(install, " ")))
	}
	if len(ready) > 0 {
		fixes = append(fixes, fmt.Sprintf("add %s to the builder's platforms (its emulator is ready)", joinAnd(ready)))
	}
	if len(unknown) > 0 {
		fixes = append(fixes, fmt.Sprintf("no emulator mabd knows runs %s", joinAnd(unknown)))
	}
	verb := "is"
	if len(asked) > 1 {
		verb = "are"
	}
	return fmt.Sprintf("%s %s not supported by the builder (its platforms: %s): %s", joinAnd(asked), verb, strings.Join(e.Supported, ", "), strings.Join(fixes, "; "))
}

// joinAnd joins "a", "b" and "c" as "a, b and c".
func joinAnd(ss []string) string {
	if len(ss) < 2 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " and " + ss[len(ss)-1]
}

// auditRef is what `mabd build --audit` reads back: the first pushed tag,
// else the OCI image layout (tarball or directory) of a type=oci output;
// "" when there is neither. An output that does not parse is an error.
func auditRef(opt build.Options) (string, error) {
	var ref string
	for _, spec := range opt.Outputs {
		o, err := build.ParseOutput(spec)
		if err != nil {
			return "", err
		}
		switch {
		case ref != "" || o.Type != "oci" || o.Dest == "-":
		case o.Dir:
			ref = manifest.LayoutPrefix + o.Dest
		default:
			ref = manifest.ArchivePrefix + o.Dest
		}
	}
	if opt.Push && len(opt.Tags) > 0 {
		return opt.Tags[0], nil
	}
	return ref, nil
}

// auditBuilt runs the image audit on what the build produced; the report
// goes to stderr (stdout holds the digest), a mismatch exits 1.
func auditBuilt(cmd *cobra.Command, opt build.Options) error {
	ref, _ := auditRef(opt) // Build parsed the outputs
	insecure := build.InsecureRegistry(ref, opt.InsecureRegistries)
	rep, err := audit.Audit(cmd.Context(), ref, audit.Options{Options: manifest.Options{Insecure: insecure}})
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "mabd build --audit:", err)
		return cli.ExitCode(cli.ExitError)
	}
	printAudit(cmd.ErrOrStderr(), rep)
	if !rep.OK() {
		return cli.ExitCode(cli.ExitDegraded)
	}
	return nil
}
