package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"mabd/internal/buildbin"
	"mabd/internal/cli"
)

// newHeavy returns the subcommands mabd-build serves (build, manifest,
// image): each runs mabd-build with the same arguments in place of this
// process, so that mabd links no BuildKit or registry client.
func newHeavy() []*cobra.Command {
	var cmds []*cobra.Command
	for _, h := range cli.Heavy {
		cmds = append(cmds, &cobra.Command{
			Use:                h.Name,
			Short:              h.Short,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				path, err := buildbin.Path()
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "mabd %s: %v: it comes with mabd (the Debian package, `make install`, or `make build` into bin/)\n", h.Name, err)
					return cli.ExitCode(cli.ExitError)
				}
				err = syscall.Exec(path, append([]string{path, h.Name}, args...), os.Environ())
				fmt.Fprintf(cmd.ErrOrStderr(), "mabd %s: run %s: %v\n", h.Name, path, err)
				return cli.ExitCode(cli.ExitError)
			},
		})
	}
	return cmds
}
