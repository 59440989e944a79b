package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mabd/daemon/api"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mabd/builder/wire"
	"mabd/host"
	"mabd/internal/cli"
)

func newStatus() *cobra.Command {
	var hf hostFlags
	var asJSON, all, local bool
	var socket string
	cmd := &cobra.Command{
		Use:   "status [--json] [ARCH...]",
		Short: "Show the binfmt_misc handlers and whether they work",
		Long: `Show, per architecture, whether its handler is registered, enabled,
mabd's, and whether its interpreter exists and is static. With ARCH arguments,
health counts only those. When a mabd daemon answers on --socket (and neither
--binfmt-mount, --local nor ARCH is given), its view is shown, with health
counting the configured architectures; otherwise the host is inspected
directly. The output says which. Exit 0 healthy, 1 degraded, 2 could not check.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st *host.Status
			var out any
			var bk *wire.BuildKit
			var fi *api.FleetInfo
			c := api.NewClient(socket)
			useDaemon := !local && len(args) == 0 && !cmd.Flags().Changed("binfmt-mount")
			var raw []byte
			if useDaemon && c.Answers(cmd.Context(), time.Second) {
				if asJSON {
					// Printed as the daemon encoded it, indented:
					// not decoded to be encoded again.
					body, health, err := c.StatusJSON(cmd.Context())
					if err != nil {
						return err
					}
					raw, st = body, &host.Status{Health: health}
				} else {
					ds, err := c.Status(cmd.Context())
					if err != nil {
						return err
					}
					st, out, bk, fi = &ds.Status, ds, ds.Daemon.BuildKit, ds.Daemon.Fleet
				}
			} else {
				h, err := hf.host()
				if err != nil {
					return err
				}
				sopt := host.StatusOptions{Only: args}
				if all {
					sopt.Candidates = []string{"all"}
					if len(args) > 0 {
						sopt.Candidates = args
					}
				}
				hs, err := h.Status(cmd.Context(), sopt)
				if err != nil {
					return err
				}
				st, out = hs, hs
			}
			if raw != nil {
				var b bytes.Buffer
				if err := json.Indent(&b, raw, "", "  "); err != nil {
					return fmt.Errorf("mabd daemon at %s: GET /v1/status: %w", socket, err)
				}
				if _, err := cmd.OutOrStdout().Write(b.Bytes()); err != nil {
					return err
				}
			} else if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), st, all, socket)
				if all {
					printCandidates(cmd.OutOrStdout(), st)
				}
				if bk != nil {
					printBuildKit(cmd.OutOrStdout(), bk)
				}
				if fi != nil {
					printFleet(cmd.OutOrStdout(), fi)
				}
			}
			if !st.Healthy() {
				return cli.ExitCode(cli.ExitDegraded)
			}
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().StringVar(&hf.stateDir, "state-dir", host.DefaultStateDir, "where mabd verify saved its last result")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list architectures with no emulator installed, and every candidate emulator with its version, where it came from and its last result")
	cmd.Flags().StringVar(&socket, "socket", api.Socket(), "the daemon's control socket (an ordinary user's own daemon's when it runs, else the system daemon's)")
	cmd.Flags().BoolVar(&local, "local", false, "inspect the host directly even when a daemon answers")
	return cmd
}

func printStatus(out io.Writer, st *host.Status, all bool, socket string) {
	state := "disabled"
	if st.Enabled {
		state = "enabled"
	}
	if !st.Mounted {
		state = "not mounted"
	}
	source := "inspected the host directly"
	if st.Source == "daemon" {
		source = "from the mabd daemon at " + socket
	}
	fmt.Fprintf(out, "binfmt_misc %s at %s (%s)\n", state, cli.Safe(st.Mount), source)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLER\tPLATFORM\tSTATE\tFLAGS\tVERIFIED\tOWNER\tINTERPRETER\tDETAIL")
	hidden := 0
	for _, h := range st.Handlers {
		if !all && h.State == host.StateNoEmulator && !h.Registered {
			hidden++
			continue
		}
		verified := "-"
		if h.Verified != nil {
			verified = h.Verified.State
			if h.Verified.Stale {
				verified += " (stale)"
			}
		}
		owner := h.Owner
		if o, _, ok := strings.Cut(owner, " ("); ok {
			owner = o // the file is in the detail and in --json
		}
		detail := h.Detail
		if h.State == host.StateFailing && h.Verified != nil && h.Verified.Remedy != "" {
			detail += " (" + fixText(h.Verified.Remedy, h.QEMUArch, "") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, cli.Dash(h.Platform), h.State, cli.Dash(cli.Safe(h.Flags)), cli.Safe(verified), cli.Dash(cli.Safe(owner)), cli.Dash(cli.Safe(h.Interpreter)), cli.Safe(detail))
	}
	tw.Flush()
	if hidden > 0 {
		fmt.Fprintf(out, "(%d architectures without an emulator not shown; --all lists them)\n", hidden)
	}
	fmt.Fprintf(out, "supported: %v\n", st.Supported)
	fmt.Fprintf(out, "health: %s\n", st.Health)
	for _, p := range st.Problems {
		fmt.Fprintln(out, "  -", cli.Safe(p))
	}
}

// printCandidates lists the candidate emulators (status --all) and why
// each architecture's emulator was chosen.
func printCandidates(out io.Writer, st *host.Status) {
	if len(st.Candidates) == 0 {
		return
	}
	fmt.Fprintln(out, "candidates:")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ARCH\tEMULATOR\tVERSION\tFROM\tLAST RESULT")
	for _, c := range st.Candidates {
		path, result := c.Path, c.Result
		if c.Registered {
			path += " (registered)"
		}
		if c.Refused != "" {
			result = "refused: " + c.Refused
		} else if c.Last != nil {
			result += " (" + c.Last.At.Local().Format("2006-01-02 15:04") + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.QEMUArch, cli.Safe(path), cli.Dash(cli.Safe(c.Version)), cli.Safe(c.Source), cli.Safe(result))
	}
	tw.Flush()
	for _, h := range st.Handlers {
		if h.Choice != nil && h.Choice.Candidates > 1 {
			fmt.Fprintf(out, "  %s: chose %s\n", h.QEMUArch, cli.Safe(h.Choice.Reason))
		}
	}
}

func printBuildKit(out io.Writer, bk *wire.BuildKit) {
	if !bk.Running {
		fmt.Fprintf(out, "buildkit: down (%s), %d restarts\n", cli.Safe(bk.LastError), bk.Restarts)
	} else {
		fmt.Fprintf(out, "buildkit: %s, pid %d, up %s, %d restarts, %s\n  platforms: %v\n",
			bk.Version, bk.PID, time.Since(bk.Since).Round(time.Second), bk.Restarts, bk.Address, bk.Platforms)
	}
	if bk.Emulation != wire.EmulationPrivate {
		fmt.Fprintln(out, "  emulation: the host's binfmt_misc table")
		return
	}
	fmt.Fprintf(out, "  emulation: private binfmt_misc table in the builder's own namespace (verified there %s ago)\n", time.Since(bk.VerifiedAt).Round(time.Second))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  HANDLER\tPLATFORM\tSTATE\tFLAGS\tINTERPRETER\tREASON")
	for _, h := range bk.Private {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", h.Name, cli.Dash(h.Platform), h.State, cli.Dash(h.Flags), cli.Dash(cli.Safe(h.Interpreter)), cli.Safe(h.Reason))
	}
	tw.Flush()
	if bk.Withdrawn > 0 {
		fmt.Fprintf(out, "  %d handlers withdrawn after failing while buildkitd ran\n", bk.Withdrawn)
	}
}
