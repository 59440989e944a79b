package buildcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mabd/daemon/api"
	"text/tabwriter"
	"time"

	"mabd/builder/build"
	"mabd/builder/fleet"
	"mabd/internal/cli"

	"github.com/spf13/cobra"
)

// daemonFleet is the fleet of the daemon on socket when it has nodes
// besides its own builder; nil otherwise (no daemon, or one builder: mabd
// build builds on --addr).
func daemonFleet(ctx context.Context, socket string) *api.FleetInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fi, err := api.NewClient(socket).Fleet(ctx, false)
	if err != nil || !fi.Remote() {
		return nil
	}
	return fi
}

// printBuilt is the summary of a build over the fleet: where each
// platform was built, native or emulated, how long it took, and why.
func printBuilt(w io.Writer, built []build.Built) {
	fmt.Fprintln(w, "mabd build: where each platform was built:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, b := range built {
		how := "emulated"
		if b.Native {
			how = "native"
		}
		why := b.Why
		if b.Retried != "" {
			why = b.Retried + "; built again on " + b.Node
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%.1fs\t%s\n", b.Platform, cli.Safe(b.Node), how, b.Seconds, cli.Safe(why))
	}
	tw.Flush()
}

// maxNodesJSON bounds the nodes fleet-check reads.
const maxNodesJSON = 1 << 20

// newFleetCheck is `mabd-build fleet-check`, the daemon's check of its
// fleet's nodes: it speaks gRPC, which the daemon does not link. It reads
// the nodes as JSON on stdin and writes what it found of each, in their
// order, as JSON on stdout.
func newFleetCheck() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:    "fleet-check [--timeout D] < NODES.json",
		Short:  "Check BuildKit nodes (for the mabd daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var nodes []fleet.Node
			if err := json.NewDecoder(io.LimitReader(cmd.InOrStdin(), maxNodesJSON)).Decode(&nodes); err != nil {
				return fmt.Errorf("fleet-check: the nodes on stdin: %w", err)
			}
			states := build.CheckNodes(cmd.Context(), nodes, timeout)
			return json.NewEncoder(cmd.OutOrStdout()).Encode(states)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long each node's check may take")
	return cmd
}
