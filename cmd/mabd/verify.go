package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"mabd/emulator"
	"mabd/host"
	"mabd/internal/cli"
)

func newVerify() *cobra.Command {
	var hf hostFlags
	var opt host.VerifyOptions
	var rootfs []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [--json] [--rootfs ARCH=DIR]... [--bench] [--deep] [ARCH...]",
		Short: "Prove that foreign programs run, and say why when they do not",
		Long: `For each architecture, run a tiny static probe in a chroot that holds
nothing else (so it passes only through a handler registered with F) and check
the machine it reports; with --rootfs ARCH=DIR, also run that root file
system's sh -c 'uname -m; echo ok'. Without ARCH, every architecture with a
probe whose emulator is installed, and the host's own (reported as native).
Probes run in parallel, each with a deadline. --bench adds the slowdown of a
fixed CPU workload under each emulator against the host. --deep also runs the
workload probe where the probe passed (the same program, in the same empty
chroot: threads and futexes, signals, fork and exec of itself, mmap and brk
growth, a few seconds of CPU; its whole output checked, within a minute).
Exit 0 all pass, 1 any fails, 2 could not check.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opt.Arches = args
			if opt.Timeout <= 0 {
				return &host.InputError{Err: fmt.Errorf("--timeout %s: give a duration above 0, like 10s", opt.Timeout)}
			}
			opt.Rootfs = map[string]string{}
			for _, r := range rootfs {
				name, dir, ok := strings.Cut(r, "=")
				if !ok || name == "" || dir == "" {
					return &host.InputError{Err: fmt.Errorf("--rootfs %q: give ARCH=DIR, e.g. arm64=/srv/rootfs/arm64", r)}
				}
				opt.Rootfs[name] = dir
			}
			h, err := hf.host()
			if err != nil {
				return err
			}
			v, err := h.Verify(cmd.Context(), opt)
			if err != nil {
				return err
			}
			for _, w := range v.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return err
				}
			} else {
				printVerify(cmd.OutOrStdout(), v, opt.Bench, opt.Deep)
			}
			if !v.OK() {
				return cli.ExitCode(cli.ExitDegraded)
			}
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().StringVar(&hf.stateDir, "state-dir", host.DefaultStateDir, `where the result is saved for mabd status ("-": do not save)`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringArrayVar(&rootfs, "rootfs", nil, "ARCH=DIR: also run DIR's /bin/sh in a chroot (repeatable)")
	cmd.Flags().BoolVar(&opt.Bench, "bench", false, "measure each emulator's slowdown on a fixed CPU workload")
	cmd.Flags().BoolVar(&opt.Deep, "deep", false, "also run the workload probe (threads, signals, fork/exec, memory growth, a few seconds of CPU)")
	cmd.Flags().DurationVar(&opt.Timeout, "timeout", 10*time.Second, "deadline of each probe")
	return cmd
}

func printVerify(out io.Writer, v *host.Verification, bench, deep bool) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	head := "PLATFORM\tQEMU\tSTATE\tMACHINE\tTIME"
	if bench {
		head += "\tSLOWDOWN"
	}
	if deep {
		head += "\tWORKLOAD"
	}
	fmt.Fprintln(tw, head+"\tREASON")
	failed := 0
	for _, r := range v.Results {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%.1fms", cli.Dash(r.Platform), r.QEMUArch, r.State, cli.Dash(cli.Safe(r.Machine)), r.DurationMS)
		if bench {
			s := "-"
			if r.Slowdown > 0 {
				s = fmt.Sprintf("%.1fx", r.Slowdown)
			}
			line += "\t" + s
		}
		if deep {
			w := "-"
			if r.Workload != nil {
				w = fmt.Sprintf("%s %.1fs", r.Workload.State, r.Workload.Duration.Seconds())
			}
			line += "\t" + w
		}
		reason := r.Reason
		if fix := fixText(r.Remedy, r.QEMUArch, r.Fix); fix != "" {
			reason += " — fix: " + fix
		}
		fmt.Fprintln(tw, line+"\t"+cli.Safe(reason))
		if r.State == emulator.StateFailed {
			failed++
		}
	}
	tw.Flush()
	for _, r := range v.Results {
		if r.Shell != "" {
			fmt.Fprintf(out, "%s foreign sh in %s: %q\n", r.QEMUArch, cli.Safe(r.Rootfs), r.Shell)
		}
	}
	fmt.Fprintf(out, "%d verified, %d failed\n", len(v.Results)-failed, failed)
}

// fixText words a fix for the command line: what mabd can do (the
// command that does it) and the rest of the fix.
func fixText(remedy emulator.Remedy, arch, fix string) string {
	var cmd string
	switch remedy {
	case emulator.RemedyRegister:
		cmd = "mabd install " + arch
	case emulator.RemedyReplace:
		cmd = "mabd install --replace " + arch
	}
	switch {
	case cmd == "":
		return fix
	case fix == "":
		return cmd
	}
	return fix + ", then " + cmd
}
