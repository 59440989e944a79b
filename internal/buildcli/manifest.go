package buildcli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"mabd/builder/manifest"
	"mabd/internal/cli"
)

// newManifest is `mabd manifest`: inspect manifests and indexes, and join
// images into a multi-platform index, without a Docker engine.
func newManifest() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: cli.Short("manifest"),
		Long: `Inspect the manifest or index of an image, in a registry or in an OCI image
layout, and create an index of several single-platform images, as
"docker manifest inspect" and "docker manifest create" do, without a Docker
engine.

References: a registry reference (host:port/repo:tag, repo@sha256:…), or
oci-layout:DIR[:TAG|@DIGEST], or oci-archive:FILE[:TAG|@DIGEST] (the tarball
mabd build --output type=oci,dest=FILE writes). Registry credentials come from
the Docker config file (~/.docker/config.json, $DOCKER_CONFIG); --insecure
allows plain HTTP and unverified TLS, which registries on 127.0.0.1 and
localhost always get. --timeout (default 30s) bounds each registry request:
connecting, the TLS handshake, the response headers and a whole manifest
must each come within it, and a layer may not stall for longer.

Layout files and archive entries must be regular files (a symlink in a
layout directory is followed to one), and every blob must have the size
and digest (sha256 or sha512) its descriptor says.`,
	}
	cmd.AddCommand(newManifestInspect(), newManifestCreate())
	return cmd
}

func newManifestInspect() *cobra.Command {
	var opt manifest.Options
	var verbose, raw bool
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [--verbose] [--raw] [--insecure] [--timeout D] [--format json|table] REF",
		Short: "Print an image's manifest or a multi-platform index",
		Long: `Print the manifest or index REF names, as stored (indented; --raw: exactly
the stored bytes, whose sha256 is the digest). It may be a single-platform
image manifest, an OCI image index or a Docker manifest list, with Docker or
OCI media types.

--verbose prints, for each image manifest (nested indexes are followed), its
reference by digest, its descriptor with its platform, and the manifest
itself, like "docker manifest inspect --verbose": one object for an image, an
array for an index. --format table prints one line per image manifest: digest,
platform, size (config and compressed layers: what a pull downloads), layer
count and media type.

In an OCI layout, TAG selects the index.json entry with that
org.opencontainers.image.ref.name; with neither TAG nor DIGEST, an index.json
with one entry stands for it (BuildKit's tarball: its image index), and one
with several for index.json itself.

Exit status: 0 printed; 2 bad usage, or REF could not be read (the registry
did not answer within --timeout, a layout file is not a regular file or not
what its descriptor says).`,
		Example: `  mabd manifest inspect 127.0.0.1:5000/demo:v1
  mabd manifest inspect --verbose alpine:latest
  mabd manifest inspect --format table oci-archive:out.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "table" {
				return fmt.Errorf("manifest inspect: --format %q: json or table", format)
			}
			if raw && (verbose || format == "table") {
				return fmt.Errorf("manifest inspect: --raw prints the stored bytes: it goes with neither --verbose nor --format table")
			}
			if err := checkTimeout("manifest inspect", opt.Timeout); err != nil {
				return err
			}
			a, err := manifest.Resolve(cmd.Context(), args[0], opt)
			if err != nil {
				return registryHint(err)
			}
			defer a.Close()
			out := cmd.OutOrStdout()
			switch {
			case format == "table":
				ms, err := a.Manifests()
				if err != nil {
					return registryHint(fmt.Errorf("inspect %s: %w", args[0], err))
				}
				rows, err := manifest.Table(ms)
				if err != nil {
					return fmt.Errorf("inspect %s: %w", args[0], err)
				}
				return manifest.WriteTable(out, rows)
			case verbose:
				if err := a.WriteVerbose(out); err != nil {
					return registryHint(fmt.Errorf("inspect %s: %w", args[0], err))
				}
				return nil
			}
			return a.WriteJSON(out, raw)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&verbose, "verbose", "v", false, "per image manifest: reference, descriptor with platform, and the manifest")
	f.BoolVar(&raw, "raw", false, "print exactly the stored bytes")
	f.BoolVar(&opt.Insecure, "insecure", false, "allow plain HTTP and unverified TLS")
	timeoutFlag(f, &opt.Timeout)
	f.StringVar(&format, "format", "json", "json or table")
	return cmd
}

func newManifestCreate() *cobra.Command {
	var opt manifest.CreateOptions
	var annotations, overrides []string
	cmd := &cobra.Command{
		Use:   "create [--insecure] [--timeout D] [--format oci|docker] [--annotation K=V]... [--platform-override PLATFORM=SRC]... TARGET SRC...",
		Short: "Join images into a multi-platform index and push it",
		Long: `Create an index of the images SRC... and push it to the registry reference
TARGET, like "docker manifest create" followed by "docker manifest push".

Each SRC is an image or an index (whose images are all taken, nested indexes
included, with BuildKit's attestations of them), in a registry or an OCI
layout. Each image is listed with the platform of its config (os,
architecture, variant), not whatever a tag or an index says. Two different
images of one platform are refused unless --platform-override PLATFORM=SRC
says which source wins; the same image twice is listed once. Every source is
resolved before anything is written: a missing source is an error and
nothing is pushed. Images in other repositories or registries are copied (or
mounted) into TARGET's repository.

--format oci (default) writes an OCI image index, --format docker a Docker
manifest list; --annotation sets the index's annotations (OCI only).

The digest of the index is printed on stdout, what it lists on stderr.
Exit status: 0 pushed; 2 bad usage, a missing source, a platform conflict,
a registry that did not answer within --timeout, or the push failed.`,
		Example: `  mabd manifest create 127.0.0.1:5000/demo:v1 127.0.0.1:5000/demo:v1-amd64 127.0.0.1:5000/demo:v1-arm64
  mabd manifest create --platform-override linux/arm64=r/app:arm64-fixed r/app:v2 r/app:v1 r/app:arm64-fixed`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTimeout("manifest create", opt.Timeout); err != nil {
				return err
			}
			var err error
			if opt.Annotations, err = keyValues("--annotation", annotations); err != nil {
				return err
			}
			if opt.Overrides, err = keyValues("--platform-override", overrides); err != nil {
				return err
			}
			res, err := manifest.Create(cmd.Context(), args[0], args[1:], opt)
			if err != nil {
				return createHint(err)
			}
			errw := cmd.ErrOrStderr()
			for _, w := range res.Warnings {
				fmt.Fprintln(errw, "mabd manifest create: warning:", w)
			}
			switch res.MatchingFormat {
			case manifest.FormatOCI:
				fmt.Fprintln(errw, "mabd manifest create: warning: a Docker manifest list of OCI image manifests: some clients want Docker manifests in it (use --format oci)")
			case manifest.FormatDocker:
				fmt.Fprintln(errw, "mabd manifest create: warning: an OCI index of Docker image manifests: some clients want OCI manifests in it (use --format docker)")
			}
			for _, e := range res.Entries {
				fmt.Fprintf(errw, "%-14s %s from %s\n", e.Platform, e.Digest, e.Source)
			}
			fmt.Fprintf(errw, "pushed %s\n", res.Ref)
			fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opt.Insecure, "insecure", false, "allow plain HTTP and unverified TLS")
	timeoutFlag(f, &opt.Timeout)
	f.StringVar(&opt.Format, "format", manifest.FormatOCI, "oci (OCI image index) or docker (Docker manifest list)")
	f.StringArrayVar(&annotations, "annotation", nil, "K=V annotation of the index (repeatable)")
	f.StringArrayVar(&overrides, "platform-override", nil, "PLATFORM=SRC: SRC's image of PLATFORM wins over other sources' (repeatable)")
	return cmd
}

// timeoutFlag registers --timeout, the bound of each registry request.
func timeoutFlag(f *pflag.FlagSet, d *time.Duration) {
	f.DurationVar(d, "timeout", manifest.DefaultTimeout, "how long a registry may take to connect, to answer a request, to send a whole manifest; how long a layer may stall")
}

// checkTimeout refuses a --timeout that is not positive.
func checkTimeout(command string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s: --timeout %s: give a positive duration, such as 30s or 2m", command, d)
	}
	return nil
}

// registryHint adds to a registry's timeout what to do about it.
func registryHint(err error) error {
	var te *manifest.TimeoutError
	if errors.As(err, &te) {
		return fmt.Errorf("%w (check that a registry answers at %s; for a slow one, raise --timeout)", err, te.Host)
	}
	return err
}

// createHint adds to an error of manifest create what to do about it.
func createHint(err error) error {
	var ce *manifest.ConflictError
	switch {
	case errors.As(err, &ce) && ce.Override == "":
		return fmt.Errorf("%w; say which one wins with --platform-override %s=SOURCE", err, ce.Platform)
	case errors.Is(err, manifest.ErrDockerAnnotations):
		return fmt.Errorf("%w: use --format oci", err)
	}
	return registryHint(err)
}

// keyValues parses K=V flags; a key given twice with different values is
// an error.
func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		if old, dup := m[k]; dup && old != v {
			return nil, fmt.Errorf("%s: %s is given twice (%s and %s)", flag, k, old, v)
		}
		m[k] = v
	}
	return m, nil
}
