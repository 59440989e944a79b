package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mabd/daemon/api"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mabd/builder/wire"
	"mabd/internal/cli"
)

// Exit statuses of `mabd fleet`: 0 every node up, cli.ExitDegraded (1) a node
// is down, cli.ExitError (2) no daemon answers.
func newFleet() *cobra.Command {
	var asJSON, check bool
	var socket string
	cmd := &cobra.Command{
		Use:   "fleet [--check] [--json]",
		Short: "Show the BuildKit nodes mabd build routes platforms to, and each platform's route",
		Long: `Show the fleet of the mabd daemon on --socket: its own builder ("local") and
the [fleet.nodes] of its configuration, each as the daemon's last check found it
(up or down and why, latency, builds running, native and emulated platforms),
and where each platform would be built now: on a node that runs it natively,
else on one that emulates it (the local builder first). --check checks every
node now. Exit 0 every node up, 1 a node is down, 2 no daemon answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fi, err := fleetOf(cmd.Context(), socket, check)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd fleet:", err)
				return cli.ExitCode(cli.ExitError)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(fi); err != nil {
					return err
				}
			} else {
				printFleet(cmd.OutOrStdout(), fi)
			}
			for _, st := range fi.States {
				if !st.Up {
					return cli.ExitCode(cli.ExitDegraded)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&check, "check", false, "check every node now")
	cmd.PersistentFlags().StringVar(&socket, "socket", api.Socket(), "the daemon's control socket")
	cmd.AddCommand(newFleetBuildx(&socket))
	return cmd
}

// fleetOf asks the daemon on socket for its fleet.
func fleetOf(ctx context.Context, socket string, check bool) (*api.FleetInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	fi, err := api.NewClient(socket).Fleet(ctx, check)
	if err != nil {
		return nil, fmt.Errorf("%w: the fleet is the daemon's (start it: systemctl start mabd)", err)
	}
	return fi, nil
}

func newFleetBuildx(socket *string) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "buildx [--name NAME]",
		Short: "Print the docker buildx create lines of the same fleet, native nodes first",
		Long: `Print the docker buildx commands that make a builder of the same nodes with
BuildKit's remote driver. buildx sends a platform to the first node whose
platform list matches, so each node lists the platforms mabd routes to it now,
and the nodes that run platforms natively come first: buildx then builds each
platform where mabd would. Nodes over TCP get their CA, certificate, key and
server name as driver options.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fi, err := fleetOf(cmd.Context(), *socket, false)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd fleet buildx:", err)
				return cli.ExitCode(cli.ExitError)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), buildxLines(name, fi))
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "mabd", "the buildx builder's name")
	return cmd
}

// buildxLines are the docker buildx create commands of the fleet: a node
// per route target, native ones first, each listing the platforms routed
// to it (native first); nodes no platform is routed to follow with their
// native platforms.
func buildxLines(name string, fi *api.FleetInfo) string {
	routed := map[string][]string{}
	var order []string
	add := func(node string) {
		if !slices.Contains(order, node) {
			order = append(order, node)
		}
	}
	for _, native := range []bool{true, false} {
		for _, r := range fi.Routes {
			if r.Node != "" && r.Native == native {
				add(r.Node)
				routed[r.Node] = append(routed[r.Node], r.Platform)
			}
		}
	}
	for _, n := range fi.Nodes {
		add(n.Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# docker buildx takes the first node whose platforms match: natively\n# built platforms come first, as mabd routes them now.\n")
	for i, nodeName := range order {
		n, ok := nodeByName(fi.Nodes, nodeName)
		if !ok {
			continue
		}
		ps := routed[nodeName]
		if len(ps) == 0 {
			ps = n.Native
		}
		args := []string{"docker", "buildx", "create", "--name", shellQuote(name)}
		if i > 0 {
			args = append(args, "--append")
		}
		args = append(args, "--node", shellQuote(n.Name), "--driver", "remote")
		if len(ps) > 0 {
			args = append(args, "--platform", strings.Join(ps, ","))
		}
		var opts []string
		for _, kv := range [][2]string{{"cacert", n.CA}, {"cert", n.Cert}, {"key", n.Key}, {"servername", n.ServerName}} {
			if kv[1] != "" {
				opts = append(opts, kv[0]+"="+kv[1])
			}
		}
		if len(opts) > 0 {
			args = append(args, "--driver-opt", shellQuote(strings.Join(opts, ",")))
		}
		args = append(args, shellQuote(n.Address))
		b.WriteString(strings.Join(args, " ") + "\n")
	}
	return b.String()
}

func nodeByName(nodes []wire.Node, name string) (wire.Node, bool) {
	for _, n := range nodes {
		if n.Name == name {
			return n, true
		}
	}
	return wire.Node{}, false
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printFleet shows the nodes and the routes for people.
func printFleet(out io.Writer, fi *api.FleetInfo) {
	if !fi.Remote() {
		fmt.Fprintln(out, "fleet: the local builder only (add [fleet.nodes.NAME] tables to the configuration for more nodes)")
	} else {
		fmt.Fprintf(out, "fleet: %d nodes, checked every %s\n", len(fi.Nodes), time.Duration(fi.CheckIntervalSeconds*float64(time.Second)))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tADDRESS\tSTATE\tLATENCY\tBUILDS\tNATIVE\tEMULATED")
	for _, st := range fi.States {
		state, latency, builds := "up", fmt.Sprintf("%.1fms", st.LatencyMS), fmt.Sprint(st.Active)
		if !st.Up {
			state, latency, builds = "down", "-", "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", cli.Safe(st.Node), cli.Safe(st.Address), state, latency, builds, cli.Dash(strings.Join(st.Native, ",")), cli.Dash(strings.Join(st.Emulated, ",")))
	}
	tw.Flush()
	for _, st := range fi.States {
		if !st.Up {
			fmt.Fprintf(out, "  %s is down: %s\n", cli.Safe(st.Node), cli.Safe(st.LastError))
		}
	}
	if len(fi.Routes) == 0 {
		return
	}
	fmt.Fprintln(out, "routes:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PLATFORM\tNODE\tHOW\tWHY")
	for _, r := range fi.Routes {
		how := "emulated"
		if r.Native {
			how = "native"
		}
		if r.Node == "" {
			how = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Platform, cli.Dash(cli.Safe(r.Node)), how, cli.Safe(r.Why))
	}
	tw.Flush()
}
