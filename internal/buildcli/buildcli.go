// Package buildcli is the part of mabd's command line that speaks BuildKit
// and registries: `mabd build`, `mabd manifest`, `mabd image` and the
// fleet's node checks. It links BuildKit's client, gRPC and
// go-containerregistry, which the host agent (cmd/mabd: install, status,
// verify, the daemon) never needs: it is its own program, mabd-build
// (cmd/mabd-build), which mabd runs for these subcommands, as git and
// docker run theirs.
package buildcli

import (
	"github.com/spf13/cobra"
)

// Commands are the subcommands mabd-build serves.
func Commands() []*cobra.Command {
	return []*cobra.Command{newBuild(), newManifest(), newImage(), newFleetCheck()}
}
