package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"mabd/builder"
	"mabd/builder/audit"
	"mabd/builder/manifest"
	"mabd/daemon"
	"mabd/emulator"
)

// Exit statuses of `mabd build`: 0 built, exitDegraded (1) the build
// failed, exitError (2) bad usage or the builder could not be reached.
func newBuild() *cobra.Command {
	var opt builder.BuildOptions
	var doAudit bool
	cmd := &cobra.Command{
		Use:   "build [-f Dockerfile] [--platform P,P…] [-t REF]… [--build-arg K=V]… [--output SPEC]… [--push] CONTEXT",
		Short: "Build a Dockerfile for several platforms at once with mabd's BuildKit",
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

Outputs: -t names the image; with --push it is pushed to its registry (over
plain HTTP for --insecure-registry hosts, localhost and 127.0.0.1), without it
kept in buildkitd's image store. --output adds BuildKit outputs:
type=oci,dest=FILE (an OCI image-layout tarball: index.json, then one image
index, then a manifest per platform), type=local,dest=DIR (the files, in a
directory per platform when there are several), type=image,name=REF,push=true,
type=docker and type=tar. With no -t and no --output the result only stays in
the build cache. The image digest is printed on stdout.

Exit status: 0 built; 1 the build failed (the failing step's output is in
the progress display, the error names the step); 2 bad usage, unsupported
platform or unreachable builder.`,
		Example: `  mabd build --platform linux/amd64,linux/arm64 -t 127.0.0.1:5000/hello:v1 --push examples/hello
  mabd build --platform linux/arm64 --output type=local,dest=out examples/hello`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if !doAudit {
				return nil
			}
			ref, err := auditRef(opt)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd build:", buildMessage(err, opt.Addr))
				return exitCode(exitError)
			}
			if ref == "" {
				return fmt.Errorf("--audit needs an image to read: --push with -t, or --output type=oci,dest=FILE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opt.Context = args[0]
			opt.ProgressOutput = cmd.ErrOrStderr()
			if len(opt.Platforms) == 0 {
				if p := os.Getenv("DOCKER_DEFAULT_PLATFORM"); p != "" {
					opt.Platforms = []string{p}
				}
			}
			// Ctrl-C cancels the solve, which stops the build in buildkitd.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := builder.Build(ctx, opt)
			if err != nil {
				errw := cmd.ErrOrStderr()
				var be *builder.BuildError
				if errors.As(err, &be) {
					be.PrintSources(errw)
					fmt.Fprintln(errw, "mabd build:", err)
					return exitCode(exitDegraded)
				}
				fmt.Fprintln(errw, "mabd build:", buildMessage(err, opt.Addr))
				return exitCode(exitError)
			}
			if res.Digest != "" {
				fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
			}
			if doAudit {
				return auditBuilt(cmd, opt)
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
	f.StringVar(&opt.Addr, "addr", builder.DefaultAddress, "buildkitd address: unix:///path (TCP needs client certificates, which mabd build does not take yet)")
	return cmd
}

// buildFlags name the flag of each builder.BuildOptions field that a
// builder.UsageError can be about.
var buildFlags = map[string]string{
	"Outputs":   "--output",
	"Platforms": "--platform",
	"Progress":  "--progress",
	"BuildArgs": "--build-arg",
	"Tags":      "-t",
	"Push":      "--push",
}

// buildMessage words an error of builder.Build (or builder.ParseOutput)
// for the user of mabd build: the flag at fault, and what fixes it.
func buildMessage(err error, addr string) string {
	var ue *builder.UsageError
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
	var de *builder.DaemonError
	if errors.As(err, &de) {
		return err.Error() + ": is it running? (--addr selects another)"
	}
	var pe *builder.UnsupportedPlatformError
	if errors.As(err, &pe) {
		return unsupportedMessage(pe, builderOf(addr))
	}
	return err.Error()
}

// builderOf returns the status of the builder at addr when it is the one
// the mabd daemon on its default socket supervises, nil otherwise.
func builderOf(addr string) *builder.Status {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ds, err := daemon.NewClient("").Status(ctx)
	if err != nil || ds.Daemon.BuildKit == nil || ds.Daemon.BuildKit.Address != addr {
		return nil
	}
	return ds.Daemon.BuildKit
}

// unsupportedMessage refuses the platforms the builder does not support,
// with what fixes each: for mabd's private builder (bk), the setting or
// why its handler failed; otherwise the host's handler to register.
func unsupportedMessage(e *builder.UnsupportedPlatformError, bk *builder.Status) string {
	var asked, install, ready, unknown []string
	var private []string
	for _, u := range e.Unsupported {
		asked = append(asked, u.Platform)
		if u.Reason == builder.NotInBuilder {
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
		case builder.NoHandler:
			install = append(install, u.Arch)
		case builder.HandlerReady:
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
func auditRef(opt builder.BuildOptions) (string, error) {
	var ref string
	for _, spec := range opt.Outputs {
		o, err := builder.ParseOutput(spec)
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
func auditBuilt(cmd *cobra.Command, opt builder.BuildOptions) error {
	ref, _ := auditRef(opt) // Build parsed the outputs
	insecure := builder.InsecureRegistry(ref, opt.InsecureRegistries)
	rep, err := audit.Audit(cmd.Context(), ref, audit.Options{Options: manifest.Options{Insecure: insecure}})
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "mabd build --audit:", err)
		return exitCode(exitError)
	}
	printAudit(cmd.ErrOrStderr(), rep)
	if !rep.OK() {
		return exitCode(exitDegraded)
	}
	return nil
}
