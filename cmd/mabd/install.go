package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"mabd/binfmt"
	"mabd/daemon"
)

func newInstall() *cobra.Command {
	var hf hostFlags
	var opt daemon.InstallOptions
	cmd := &cobra.Command{
		Use:   "install [flags] ARCH...|all",
		Short: "Register QEMU emulators as binfmt_misc handlers",
		Long: `Register qemu-<arch> handlers for the named architectures: QEMU names
(aarch64), OCI platforms (linux/arm64, linux/arm/v7) or aliases (arm64, armhf,
x86_64). "all" means every architecture whose emulator is installed, except the
host's own. Entries are named qemu-<arch>; an equal entry is adopted, a
different one is a conflict, left alone unless --replace. A second run changes
nothing. Exit 0 done, 1 conflict or failure, 2 bad input (nothing changed).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt.Arches = args
			res, err := hf.host().Install(cmd.Context(), opt)
			if err != nil {
				return err
			}
			printInstall(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
			if res.Degraded() {
				return exitCode(exitDegraded)
			}
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().StringVar(&opt.Flags, "flags", "", "handler flags (default F, plus P when the emulator honours it); C only when you need it")
	cmd.Flags().BoolVar(&opt.Replace, "replace", false, "replace conflicting entries of the same name")
	cmd.Flags().BoolVar(&opt.Persist, "persist", false, "also write /etc/binfmt.d/qemu-<arch>.conf so systemd-binfmt restores them at boot")
	return cmd
}

func printInstall(out, errw io.Writer, res *daemon.InstallResult) {
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
	for _, n := range res.Refused {
		fmt.Fprintf(out, "qemu-%s: refused: %s\n", n.Arch, n.Reason)
	}
	for _, n := range res.Skipped {
		if n.Reason != daemon.NoEmulator {
			fmt.Fprintf(out, "qemu-%s: skipped: %s\n", n.Arch, n.Reason)
		}
	}
	for _, p := range res.Persisted {
		fmt.Fprintln(out, "persisted", p)
	}
	if changed == 0 && len(res.Refused) == 0 {
		fmt.Fprintf(out, "nothing to do: %d handlers already registered\n", count[binfmt.Unchanged])
		return
	}
	fmt.Fprintf(out, "%d registered, %d replaced, %d enabled, %d unchanged, %d conflicts, %d failed\n",
		count[binfmt.Registered], count[binfmt.Replaced], count[binfmt.Enabled], count[binfmt.Unchanged], count[binfmt.Conflict], count[binfmt.Failed]+len(res.Refused))
}

func newUninstall() *cobra.Command {
	var hf hostFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "uninstall [--force] ARCH...|all",
		Short: "Remove mabd's binfmt_misc handlers and the files --persist wrote",
		Long: `Remove the qemu-<arch> handlers mabd registers (the table's magic and
mask, interpreter qemu-<arch>[-static]) and the binfmt.d files --persist wrote.
Entries of that name that are not mabd's are left alone unless --force.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := hf.host().Uninstall(args, force)
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
				fmt.Fprintf(out, "qemu-%s: kept: %s\n", k.Arch, k.Reason)
			}
			if len(res.Removed) == 0 && len(res.Kept) == 0 {
				fmt.Fprintln(out, "nothing to do: no handler registered")
			}
			if res.Degraded() {
				return exitCode(exitDegraded)
			}
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "also remove entries of the same name that are not mabd's")
	return cmd
}
