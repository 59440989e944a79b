// Command mabd-build serves mabd's subcommands that speak BuildKit and
// registries — build, manifest, image — and the daemon's checks of its
// fleet's nodes (see package mabd/internal/buildcli). mabd runs it for
// them; run directly, it takes the same command lines
// (`mabd-build build …`).
package main

import (
	"os"

	"github.com/spf13/cobra"

	"mabd/internal/buildcli"
	"mabd/internal/cli"
)

func main() {
	root := &cobra.Command{
		Use:           "mabd",
		Short:         "mabd's builds, manifests and image audits",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(buildcli.Commands()...)
	os.Exit(cli.Run(root, "mabd", os.Args[1:], os.Stdout, os.Stderr))
}
