// Package cli is what mabd's commands share: the exit statuses of the
// health contract, running a cobra command tree as a process, the version,
// and showing strings from outside safely.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X mabd/internal/cli.Version=…".
var Version = "dev"

// Exit statuses: the health contract of `mabd status` and `mabd verify`,
// and of every command.
const (
	ExitOK       = 0 // healthy, or done
	ExitDegraded = 1 // something asked for is missing, conflicting or failing
	ExitError    = 2 // bad usage or input, or could not check
)

// ExitCode carries an exit status out of a command without an error
// message.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Run executes root with args and returns the exit status: an ExitCode
// returned by a command is its status; another error is printed as
// "NAME: ERROR" and is ExitError.
func Run(root *cobra.Command, name string, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	var code ExitCode
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &code):
		return int(code)
	}
	fmt.Fprintln(stderr, name+":", err)
	return ExitError
}

// Delegated are the subcommands of mabd that another program of mabd's
// serves (see package mabd/internal/libexec), with their one-line help:
// mabd runs Program with the same command line in its place.
var Delegated = []struct{ Name, Program, Short string }{
	{"daemon", "mabd-daemon", "Run mabd as a service: register, verify, keep the handlers right, serve the control API"},
	{"build", "mabd-build", "Build a Dockerfile for several platforms at once with mabd's BuildKit"},
	{"manifest", "mabd-build", "Inspect image manifests and indexes, and join images into a multi-platform index"},
	{"image", "mabd-build", "Check built images"},
}

// Short is the one-line help of the delegated subcommand name.
func Short(name string) string {
	for _, d := range Delegated {
		if d.Name == name {
			return d.Short
		}
	}
	return ""
}
