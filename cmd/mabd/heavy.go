package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"mabd/internal/cli"
	"mabd/internal/libexec"
)

// newDelegated returns the subcommands another program of mabd's serves
// (daemon: mabd-daemon; build, manifest, image: mabd-build): each runs that
// program with the same command line in place of this process — the same
// process id, so that systemd's ExecStart=mabd daemon, sd_notify and
// socket activation hold — so that mabd links none of their code.
func newDelegated() []*cobra.Command {
	var cmds []*cobra.Command
	for _, d := range cli.Delegated {
		cmds = append(cmds, &cobra.Command{
			Use:                d.Name,
			Short:              d.Short,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				path, err := libexec.Path(d.Program)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "mabd %s: %v: it comes with mabd (the Debian package, `make install`, or `make build` into bin/)\n", d.Name, err)
					return cli.ExitCode(cli.ExitError)
				}
				err = syscall.Exec(path, append([]string{path, d.Name}, args...), os.Environ())
				fmt.Fprintf(cmd.ErrOrStderr(), "mabd %s: run %s: %v\n", d.Name, path, err)
				return cli.ExitCode(cli.ExitError)
			},
		})
	}
	return cmds
}
