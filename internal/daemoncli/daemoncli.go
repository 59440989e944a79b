// Package daemoncli is `mabd daemon`'s command line: its flags, and the
// wording of why it cannot start. The program mabd-daemon
// (cmd/mabd-daemon) serves it; mabd runs that program for it.
package daemoncli

import (
	"errors"
	"fmt"
	"mabd/daemon/api"

	"github.com/spf13/cobra"

	"mabd/daemon"
	"mabd/internal/cli"
	"mabd/internal/userns"
)

// Command is `mabd daemon`.
func Command() *cobra.Command {
	var (
		configPath, mount, socket, stateDir, bkSocket string
		noBuildkit, checkOnly                         bool
	)
	cmd := &cobra.Command{
		Use:   "daemon [--config FILE] [--check-config]",
		Short: cli.Short("daemon"),
		Long: `Run the daemon: ensure binfmt_misc is mounted, register the configured
handlers, verify them, then report ready (sd_notify READY=1 under systemd) and
keep them registered: a reconcile pass every reconcile_interval restores
entries that disappear, change or are disabled. SIGHUP reloads the
configuration (a broken one keeps the old one running); SIGTERM stops.
The control API answers on a unix socket (or the one systemd passes).
Flags override the configuration file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			override := func(c *daemon.Config) {
				if f.Changed("binfmt-mount") {
					c.BinfmtMount = mount
				}
				if f.Changed("socket") {
					c.Control.Socket = socket
				}
				if f.Changed("state-dir") {
					c.StateDir = stateDir
				}
				if f.Changed("buildkit-socket") {
					c.BuildKit.Socket = bkSocket
				}
				if noBuildkit {
					c.BuildKit.Enabled = false
				}
			}
			d, err := daemon.New(daemon.Options{ConfigPath: configPath, Explicit: f.Changed("config"), Override: override})
			if err != nil {
				return err
			}
			if checkOnly {
				for _, w := range d.Config().Warnings() {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration ok\n", configPath)
				return nil
			}
			if err := d.Run(cmd.Context()); err != nil {
				return errors.New(daemonMessage(err))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", api.ConfigPath(), "configuration file (TOML); an ordinary user's default is $XDG_CONFIG_HOME/mabd/mabd.toml")
	f.BoolVar(&checkOnly, "check-config", false, "validate the configuration and exit (0 ok, 2 bad)")
	f.StringVar(&mount, "binfmt-mount", "", "binfmt_misc mount (overrides binfmt_mount)")
	f.StringVar(&socket, "socket", "", "control API socket (overrides [control] socket)")
	f.StringVar(&stateDir, "state-dir", "", "state directory (overrides state_dir)")
	f.StringVar(&bkSocket, "buildkit-socket", "", "BuildKit socket (overrides [buildkit] socket)")
	f.BoolVar(&noBuildkit, "no-buildkit", false, "do not run BuildKit")
	return cmd
}

// daemonMessage words the daemon's error with the fix for its user, for
// the prerequisites of rootless mode.
func daemonMessage(err error) string {
	var re *daemon.RootlessError
	if !errors.As(err, &re) {
		return err.Error()
	}
	var (
		noIDs   *userns.NoSubIDsError
		tool    *userns.MissingToolError
		old     *userns.KernelTooOldError
		unavail *userns.UnavailableError
	)
	switch {
	case errors.As(err, &noIDs):
		return fmt.Sprintf("%v: rootless mode maps your subordinate ids into the builder's namespace; ask an administrator for a range: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s (any free range of 65536)", err, noIDs.User)
	case errors.As(err, &tool):
		return fmt.Sprintf("%v: rootless mode maps your subordinate ids with it; install %s (apt-get install %s)", err, tool.Package, tool.Package)
	case errors.As(err, &old):
		return fmt.Sprintf("%v: rootless mode needs Linux 6.7 or later (a binfmt_misc table per user namespace); run mabd as root instead", err)
	case errors.As(err, &unavail):
		fix := "allow unprivileged user namespaces"
		if unavail.Sysctl != "" {
			fix = fmt.Sprintf("an administrator sets sysctl %s=%s", unavail.Sysctl, unavail.Allow)
		}
		return fmt.Sprintf("%v: rootless mode needs user namespaces: %s", err, fix)
	}
	return err.Error()
}
