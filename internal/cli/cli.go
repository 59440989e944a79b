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

// Heavy are the subcommands of mabd that the program mabd-build serves
// (they speak BuildKit and registries), with their one-line help: mabd
// runs mabd-build for them.
var Heavy = []struct{ Name, Short string }{
	{"build", "Build a Dockerfile for several platforms at once with mabd's BuildKit"},
	{"manifest", "Inspect image manifests and indexes, and join images into a multi-platform index"},
	{"image", "Check built images"},
}

// Short is the one-line help of the heavy subcommand name.
func Short(name string) string {
	for _, h := range Heavy {
		if h.Name == name {
			return h.Short
		}
	}
	return ""
}
