package buildcli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"mabd/builder/audit"
	"mabd/internal/cli"
)

// newImage is `mabd image`: checks of built images.
func newImage() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: cli.Short("image"),
	}
	cmd.AddCommand(newImageAudit())
	return cmd
}

func newImageAudit() *cobra.Command {
	var opt audit.Options
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit [--json] [--insecure] [--timeout D] [--platform P]... REF",
		Short: "Check that every program in an image is built for the image's platform",
		Long: `For each platform of REF (or each --platform), read the image's layers and
compare every ELF file's class, byte order and machine with the platform's,
and the config's os, architecture and variant with the index's platform: an
"arm64" image built FROM a cached amd64 base, or holding a binary copied from
the build host, is caught before it fails with "exec format error".

Layers are streamed and only the first 64 bytes of each file are read.
Scripts, data and other non-ELF files are never flagged. A mismatching file
that a later layer deletes or replaces is reported as hidden, without failing.
Known platforms: linux/ amd64, arm64, arm, 386, ppc64le, ppc64, s390x, riscv64,
mips64le, mips64, mipsle, mips, loong64.

REF is a registry reference, oci-layout:DIR[:TAG] or oci-archive:FILE (see
mabd manifest --help). Each layer must have the size and digest its
manifest says, and is read no further than that size. --timeout (default
30s) bounds each registry request; a layer may take longer, but may not
stall for longer.

An audit that audits no image fails: an index that lists none, or only
attestations and platforms without an entry above. --platform that REF does
not have is an error.

Exit status: 0 clean; 1 a mismatch, or no image audited; 2 bad usage, or REF
could not be read (the registry did not answer within --timeout, a layer is
not what its manifest says).`,
		Example: `  mabd image audit 127.0.0.1:5000/demo:v1
  mabd image audit --platform linux/arm64 --json oci-archive:out.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkTimeout("image audit", opt.Timeout); err != nil {
				return err
			}
			if cmd.Flags().Changed("platform") && len(opt.Platforms) == 0 {
				return fmt.Errorf("image audit: --platform is empty: give a platform such as linux/arm64, or leave it out to audit all")
			}
			rep, err := audit.Audit(cmd.Context(), args[0], opt)
			if err != nil {
				return registryHint(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
				if rep.Failure != "" {
					fmt.Fprintln(cmd.ErrOrStderr(), "mabd image audit: failed:", rep.Failure)
				}
			} else {
				printAudit(out, rep)
			}
			if !rep.OK() {
				return cli.ExitCode(cli.ExitDegraded)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&opt.Insecure, "insecure", false, "allow plain HTTP and unverified TLS")
	timeoutFlag(f, &opt.Timeout)
	f.StringSliceVar(&opt.Platforms, "platform", nil, "audit only this platform (repeatable, or comma-separated)")
	return cmd
}

// printAudit writes a report for people: a line per platform, then its
// problems.
func printAudit(w io.Writer, rep *audit.Report) {
	clean, failed, skipped := 0, 0, 0
	for _, p := range rep.Platforms {
		if p.Skipped != "" {
			skipped++
			fmt.Fprintf(w, "%s %s: skipped: %s\n", p.Platform, p.Digest, p.Skipped)
			continue
		}
		files, elfs, read := 0, 0, 0
		for _, l := range p.Layers {
			files += l.Files
			elfs += l.ELF
			if l.Skipped == "" {
				read++
			}
		}
		visible := 0
		for _, pr := range p.Problems {
			if pr.HiddenBy == "" {
				visible++
			}
		}
		verdict := "ok"
		if visible > 0 {
			verdict = plural(visible, "mismatch", "mismatches")
			failed++
		} else {
			clean++
		}
		fmt.Fprintf(w, "%s %s: %s, %s, %s (%s expected): %s\n", p.Platform, p.Digest,
			plural(read, "layer", "layers"), plural(files, "file", "files"), plural(elfs, "ELF file", "ELF files"), p.Expected, verdict)
		for _, pr := range p.Problems {
			prefix := "  "
			if pr.HiddenBy != "" {
				prefix = "  hidden: "
			}
			fmt.Fprintln(w, prefix+pr.Message)
		}
	}
	parts := []string{fmt.Sprintf("%d clean", clean), fmt.Sprintf("%d with mismatches", failed)}
	if skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", skipped))
	}
	fmt.Fprintf(w, "%s audited: %s\n", plural(len(rep.Platforms), "platform", "platforms"), strings.Join(parts, ", "))
	if rep.Failure != "" {
		fmt.Fprintln(w, "failed:", rep.Failure)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
