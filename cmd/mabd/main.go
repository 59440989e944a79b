// Command mabd registers QEMU user-mode emulators as binfmt_misc handlers,
// proves foreign execution works and reports the host's health.
package main

import (
	"errors"
	"io"
	"os"

	"github.com/spf13/cobra"

	"mabd/binfmt"
	"mabd/host"
	"mabd/internal/cli"
	"mabd/internal/userns"
)

// The first thing a mabd process does: when it was started as the first
// process of new namespaces (mabd exec's), it becomes that and never gets
// here.
func init() { userns.MaybeRunChild() }

// hostFlags are the flags every command that touches binfmt takes.
type hostFlags struct {
	mount        string
	emulatorDirs []string
	persistDir   string
	stateDir     string
}

func (f *hostFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mount, "binfmt-mount", binfmt.DefaultDir, "binfmt_misc mount to work on (a private instance in tests)")
	cmd.Flags().StringArrayVar(&f.emulatorDirs, "emulator-dir", nil, "directory to search for qemu-<arch>[-static] (repeatable; default /usr/bin, /usr/local/bin)")
	cmd.Flags().StringVar(&f.persistDir, "persist-dir", binfmt.DefaultPersistDir, "where --persist writes binfmt.d files")
	_ = cmd.Flags().MarkHidden("persist-dir")
}

// host returns the host the flags name. An empty --binfmt-mount is
// refused rather than taken for the host's table: it is what a script
// with an unset variable passes.
func (f *hostFlags) host() (host.Host, error) {
	if f.mount == "" {
		return host.Host{}, &host.InputError{Err: errors.New(`--binfmt-mount "": give a directory (the host's table is ` + binfmt.DefaultDir + ")")}
	}
	return host.Host{Mount: binfmt.Mount{Dir: f.mount}, EmulatorDirs: f.emulatorDirs, PersistDir: f.persistDir, StateDir: f.stateDir}, nil
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "mabd",
		Short:         "Multi-architecture builds: QEMU binfmt_misc handlers, verification and BuildKit",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInstall(), newUninstall(), newStatus(), newVerify(), newVersion(), newExec(), newFleet())
	root.AddCommand(newDelegated()...)
	return root
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run(newRoot(), "mabd", args, stdout, stderr)
}
