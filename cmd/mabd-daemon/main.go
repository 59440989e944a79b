// Command mabd-daemon is `mabd daemon`, the service (see package
// mabd/daemon): mabd runs it, in its own place, for that subcommand, so
// that mabd itself links none of the service's code (its metrics, the
// builder's supervision). Run directly it takes the same command line
// (`mabd-daemon daemon …`).
package main

import (
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"mabd/builder"
	"mabd/host"
	"mabd/internal/cli"
	"mabd/internal/daemoncli"
)

// The first thing the process does: when it was started as the first
// process of new namespaces (the builder's, a trial of a candidate
// emulator's), it becomes that and never gets to main.
func init() {
	builder.MaybeRunAgent()
	host.MaybeRunTrial()
}

func main() {
	// A service that idles in a few MiB: collect at half the default
	// heap growth (a burst of status requests leaves less behind).
	debug.SetGCPercent(50)
	root := &cobra.Command{
		Use:           "mabd",
		Short:         "mabd's service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(daemoncli.Command())
	os.Exit(cli.Run(root, "mabd", os.Args[1:], os.Stdout, os.Stderr))
}
