package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"mabd/builder/fleet"
	"mabd/daemon"
)

// daemonFleet is the fleet of the daemon on socket when it has nodes
// besides its own builder; nil otherwise (no daemon, or one builder: mabd
// build builds on --addr).
func daemonFleet(ctx context.Context, socket string) *daemon.FleetInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fi, err := daemon.NewClient(socket).Fleet(ctx, false)
	if err != nil || !fi.Remote() {
		return nil
	}
	return fi
}

// printBuilt is the summary of a build over the fleet: where each
// platform was built, native or emulated, how long it took, and why.
func printBuilt(w io.Writer, built []fleet.Built) {
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
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%.1fs\t%s\n", b.Platform, safe(b.Node), how, b.Seconds, safe(why))
	}
	tw.Flush()
}
