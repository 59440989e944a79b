package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"mabd/binfmt"
	"mabd/host"
	"mabd/internal/cli"
)

// A trial of a candidate emulator (host.TryCandidates, which install and
// the daemon run before choosing one) is this binary re-executed in a
// private namespace: it proves the emulator there and exits, before
// anything else runs (see host.MaybeRunTrial).
func init() { host.MaybeRunTrial() }

func newInstall() *cobra.Command {
	var hf hostFlags
	var opt host.InstallOptions
	var pins []string
	cmd := &cobra.Command{
		Use:   "install [flags] ARCH...|all",
		Short: "Register QEMU emulators as binfmt_misc handlers",
		Long: `Register qemu-<arch> handlers for the named architectures: QEMU names
(aarch64), OCI platforms (linux/arm64, linux/arm/v7) or aliases (arm64, armhf,
x86_64). "all" means every architecture whose emulator is installed, except the
host's own. Entries are named qemu-<arch>; an equal entry is adopted, a
different one is left alone unless --replace: it is "served" when it runs every
program of the architecture in containers too (F, a static trusted emulator,
no mask refusing valid programs), and a conflict otherwise. A second run
changes nothing. --persist never overwrites a binfmt.d file mabd did not write.
Every qemu-<arch>-static and qemu-<arch> in the emulator directories is a
candidate; of several, each is proved in a private binfmt_misc instance (the
probe, the workload probe, the bench workload) and one that passes is chosen,
the fastest: the output says why. --emulator ARCH=PATH pins one instead.
Exit 0 done, 1 conflict or failure, 2 bad input (nothing changed).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt.Arches = args
			var err error
			if opt.Emulators, err = parsePins(pins); err != nil {
				return err
			}
			h, err := hf.host()
			if err != nil {
				return err
			}
			res, err := h.Install(cmd.Context(), opt)
			if err != nil {
				return err
			}
			printInstall(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
			if res.Degraded() {
				return cli.ExitCode(cli.ExitDegraded)
			}
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().StringVar(&opt.Flags, "flags", "", "handler flags (default F, plus P when the emulator honours it); C only when you need it")
	cmd.Flags().BoolVar(&opt.Replace, "replace", false, "replace conflicting entries of the same name")
	cmd.Flags().BoolVar(&opt.Persist, "persist", false, "also write /etc/binfmt.d/qemu-<arch>.conf so systemd-binfmt restores them at boot")
	cmd.Flags().StringVar(&hf.stateDir, "state-dir", host.DefaultStateDir, `where the emulators' versions and trials are remembered ("-": nowhere)`)
	cmd.Flags().StringArrayVar(&pins, "emulator", nil, "ARCH=PATH: register PATH for ARCH, whatever the other candidates (repeatable)")
	cmd.Flags().BoolVar(&opt.EmulateNative, "emulate-native", false, "also register the architectures named that this host runs natively besides its own (i386 on amd64): their programs then run under QEMU")
	return cmd
}

// parsePins reads --emulator ARCH=PATH flags.
func parsePins(flags []string) (map[string]string, error) {
	pins := map[string]string{}
	for _, f := range flags {
		arch, path, ok := strings.Cut(f, "=")
		if !ok || arch == "" || path == "" {
			return nil, &host.InputError{Err: fmt.Errorf("--emulator %q: give ARCH=PATH, e.g. arm64=/opt/qemu/bin/qemu-aarch64", f)}
		}
		pins[arch] = path
	}
	return pins, nil
}

func printInstall(out, errw io.Writer, res *host.InstallResult) {
	for _, w := range res.Warnings {
		fmt.Fprintln(errw, "warning:", w)
	}
	if res.Mounted {
		fmt.Fprintln(out, "mounted binfmt_misc")
	}
	changed := 0
	count := map[binfmt.Action]int{}
	for _, c := range res.Changes {
		count[c.Action]++
		if c.Action != binfmt.Unchanged {
			changed++
			fmt.Fprintln(out, c.Describe())
		}
	}
	for _, c := range res.Choices {
		fmt.Fprintf(out, "qemu-%s: chose %s\n", c.Arch, cli.Safe(c.Reason))
	}
	for _, n := range res.Served {
		fmt.Fprintf(out, "qemu-%s: %s; left alone (--replace registers mabd's)\n", n.Arch, cli.Safe(n.Reason))
	}
	for _, n := range res.Conflicts {
		fmt.Fprintf(out, "qemu-%s: conflict: %s; left alone (--replace replaces it)\n", n.Arch, cli.Safe(n.Reason))
	}
	for _, n := range res.Refused {
		fmt.Fprintf(out, "qemu-%s: refused: %s\n", n.Arch, cli.Safe(n.Reason))
	}
	for _, n := range res.Skipped {
		if n.Reason != host.NoEmulator {
			fmt.Fprintf(out, "qemu-%s: skipped: %s\n", n.Arch, cli.Safe(n.Reason))
		}
	}
	for _, p := range res.Persisted {
		fmt.Fprintln(out, "persisted", p)
	}
	for _, n := range res.PersistFailed {
		fmt.Fprintf(out, "qemu-%s: not persisted: %s\n", n.Arch, cli.Safe(n.Reason))
	}
	if changed == 0 && len(res.Refused)+len(res.PersistFailed)+len(res.Conflicts) == 0 {
		fmt.Fprintf(out, "nothing to do: %d handlers already registered", count[binfmt.Unchanged]+len(res.Served))
		if len(res.Served) > 0 {
			fmt.Fprintf(out, " (%d of them by other tools)", len(res.Served))
		}
		fmt.Fprintln(out)
		return
	}
	fmt.Fprintf(out, "%d registered, %d replaced, %d enabled, %d unchanged, %d served by other tools, %d conflicts, %d failed\n",
		count[binfmt.Registered], count[binfmt.Replaced], count[binfmt.Enabled], count[binfmt.Unchanged], len(res.Served), len(res.Conflicts), count[binfmt.Failed]+len(res.Refused))
}

func newUninstall() *cobra.Command {
	var hf hostFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "uninstall [--force] ARCH...|all",
		Short: "Remove mabd's binfmt_misc handlers and the files --persist wrote",
		Long: `Remove the qemu-<arch> handlers mabd registers (the table's magic and
mask, interpreter qemu-<arch>[-static]) and the binfmt.d files --persist wrote.
Entries of that name that are not mabd's are left alone unless --force; files
mabd did not write are never removed. It goes on past a failure and reports
each. Exit 0 done, 1 partly done or entries left alone, 2 nothing changed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := hf.host()
			if err != nil {
				return err
			}
			res, err := h.Uninstall(args, force)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, n := range res.Removed {
				fmt.Fprintln(out, n+": removed")
			}
			for _, p := range res.Unpersist {
				fmt.Fprintln(out, "removed", p)
			}
			for _, k := range res.Kept {
				fmt.Fprintf(out, "qemu-%s: kept: %s: left alone (--force removes it)\n", k.Arch, cli.Safe(k.Reason))
			}
			for _, p := range res.KeptFiles {
				fmt.Fprintf(out, "%s: kept: not written by mabd (mabd never removes it)\n", p)
			}
			for _, f := range res.Failed {
				fmt.Fprintf(cmd.ErrOrStderr(), "qemu-%s: failed: %s\n", f.Arch, cli.Safe(f.Reason))
			}
			if !res.Changed() && len(res.Kept)+len(res.Failed) == 0 {
				fmt.Fprintln(out, "nothing to do: no handler registered")
			}
			switch {
			case len(res.Failed) > 0 && !res.Changed():
				fmt.Fprintln(out, "nothing changed")
				return cli.ExitCode(cli.ExitError)
			case len(res.Failed) > 0:
				fmt.Fprintf(out, "partly done: %d removed, %d failed\n", len(res.Removed), len(res.Failed))
				return cli.ExitCode(cli.ExitDegraded)
			case res.Degraded():
				return cli.ExitCode(cli.ExitDegraded)
			}
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "also remove entries of the same name that are not mabd's")
	return cmd
}
