package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"mabd/binfmt"
	"mabd/emulator"
)

// init turns this process into the helper of `mabd exec` when it is one
// (see emulator.MaybeRunExecChild): that must happen before cobra parses
// anything, and doing it here also covers the test binary of this package,
// which re-executes itself when a test calls run("exec", …) in-process.
// For every other process it only reads one environment variable.
func init() { emulator.MaybeRunExecChild() }

// Exit statuses of `mabd exec` besides the program's own.
const (
	exitExecSetup    = emulator.ExitSetup     // 125: mabd exec itself failed
	exitExecCannot   = emulator.ExitCannotRun // 126: CMD cannot be executed
	exitExecNotFound = emulator.ExitNotFound  // 127: CMD not found
)

func newExec() *cobra.Command {
	var platform, emulatorPath string
	var emulatorDirs []string
	cmd := &cobra.Command{
		Use:                   "exec --platform PLATFORM [--emulator PATH] [--emulator-dir DIR]... -- CMD [ARG...]",
		DisableFlagsInUseLine: true,
		Short:                 "Run a foreign program under QEMU, without root and without touching the host's handlers",
		Long: `Run CMD, a program built for PLATFORM, under QEMU user-mode emulation
without root and without touching the host's binfmt_misc table.

mabd starts CMD in a new user and mount namespace that holds a private
binfmt_misc instance (binfmt_misc is per user namespace since Linux 6.7) with
one handler: qemu-<arch> for PLATFORM, with flags F, plus P when the emulator
honours it, and as interpreter --emulator or the qemu-<arch>[-static] found in
--emulator-dir (default /usr/bin, /usr/local/bin), which must be static and
an emulator for PLATFORM (its --version names its architecture: a
qemu-arm-static copied as qemu-aarch64-static is refused). Programs of that
architecture that CMD starts run through it too. The instance is mounted
over /proc/sys/fs/binfmt_misc in CMD's mount namespace only: CMD sees its
one handler there, the host never sees it, and it vanishes when CMD's
namespace ends, leaving nothing behind even if mabd is killed.

PLATFORM is an OCI platform (linux/arm64, linux/arm/v7), a QEMU name
(aarch64) or an alias (arm64, armhf). A platform this host runs natively
(linux/amd64 on amd64) runs CMD directly, unless --emulator is given.

CMD runs as you: your uid and gid, no capabilities (unless you are root),
your environment, working directory, stdin, stdout and stderr. Inside the
namespace other users' and groups' files show as owned by nobody/nogroup
(65534), setuid programs gain nothing, and CMD cannot mount. SIGTERM,
SIGHUP, SIGUSR1 and SIGUSR2 sent to mabd are passed on to CMD; SIGINT and
SIGQUIT reach CMD from the terminal directly.

Flags of mabd go before CMD: everything from CMD on is CMD's ("--" is
optional). Exit status: CMD's own, 128+N when signal N killed it; 125 when
mabd exec failed (bad usage, unknown platform, no usable emulator, kernel
older than 6.7, user namespaces disabled, binfmt_misc missing); 126 when CMD
cannot be executed; 127 when CMD is not found.`,
		Example: `  mabd exec --platform linux/arm64 -- ./busybox uname -m
  echo hi | mabd exec --platform armhf --emulator ~/qemu/qemu-arm -- ./hello`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return execFail(cmd, exitExecSetup, errors.New("no command given: mabd exec --platform PLATFORM -- CMD [ARG...]"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if platform == "" {
				return execFail(cmd, exitExecSetup, errors.New("--platform is required: the platform CMD is built for, e.g. linux/arm64"))
			}
			if err := checkExecEmulator(platform, emulatorPath, emulatorDirs); err != nil {
				return execFail(cmd, exitExecSetup, err)
			}
			sb, err := emulator.NewSandbox(cmd.Context(), platform, emulatorPath, emulatorDirs)
			if err != nil {
				return execFail(cmd, execCode(err), err)
			}
			for _, w := range sb.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd exec: warning:", w)
			}
			code, err := sb.Run(emulator.SandboxCommand{
				Args:   args,
				Stdin:  cmd.InOrStdin(),
				Stdout: cmd.OutOrStdout(),
				Stderr: cmd.ErrOrStderr(),
			})
			if err != nil {
				return execFail(cmd, code, err)
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&platform, "platform", "", "platform CMD is built for: linux/arm64, linux/arm/v7, riscv64, … (required)")
	cmd.Flags().StringVar(&emulatorPath, "emulator", "", "static QEMU user-mode emulator to run CMD with (default: qemu-<arch>[-static] from --emulator-dir)")
	cmd.Flags().StringArrayVar(&emulatorDirs, "emulator-dir", nil, "directory to search for qemu-<arch>[-static] (repeatable; default /usr/bin, /usr/local/bin)")
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return execFail(cmd, exitExecSetup, err)
	})
	return cmd
}

// checkExecEmulator refuses, before anything runs it, an emulator that
// someone other than root or the caller could replace (see
// emulator.CheckTrustedFor): CMD and every program it starts would run
// their code. Other problems are left to NewSandbox, which reports them.
func checkExecEmulator(platform, path string, dirs []string) error {
	if path == "" {
		a, err := emulator.LookupArch(platform)
		if err != nil || binfmt.IsNative(a.Name) {
			return nil
		}
		e, err := emulator.Find(a.Name, dirs)
		if err != nil {
			return nil
		}
		path = e.Path
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil
		}
		if _, err := os.Stat(abs); err != nil {
			return nil
		}
		path = abs
	}
	return emulator.CheckTrustedFor(path, os.Geteuid())
}

// execFail prints err as mabd exec's and returns the exit status code,
// which run() passes on without printing anything more.
func execFail(cmd *cobra.Command, code int, err error) error {
	fmt.Fprintln(cmd.ErrOrStderr(), "mabd exec:", err)
	return exitCode(code)
}

// execCode is the exit status for an error of the emulator package's
// sandbox: its Code, or exitExecSetup.
func execCode(err error) int {
	var se *emulator.SandboxError
	if errors.As(err, &se) {
		return se.Code
	}
	return exitExecSetup
}
