package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/internal/cli"
	"mabd/internal/userns"
)

// init turns this process into the first process of the namespaces of
// `mabd exec` when it is one (see userns.MaybeRunChild): that must happen
// before cobra parses anything, and doing it here also covers the test
// binary of this package, which re-executes itself when a test calls
// run("exec", …) in-process. For every other process it only reads one
// environment variable.
// Exit statuses of `mabd exec` that are not CMD's own. They are the ones
// env(1), chroot(1) and `docker run` use, so that a caller can tell them
// from a program's usual small codes.
const (
	exitExecSetup    = 125 // mabd exec itself failed; CMD did not run
	exitExecCannot   = 126 // CMD was found but cannot be executed
	exitExecNotFound = 127 // CMD was not found
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
			target, err := resolveExec(cmd.Context(), platform, emulatorPath, emulatorDirs)
			if err != nil {
				return execFail(cmd, exitExecSetup, err)
			}
			for _, w := range target.warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "mabd exec: warning:", w)
			}
			path, code, err := execLookPath(args[0])
			if err != nil {
				return execFail(cmd, code, err)
			}
			prog := &exec.Cmd{Path: path, Args: args, Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			var spec *userns.Spec
			if !target.native {
				spec = &userns.Spec{Handlers: []binfmt.Spec{target.spec()}, AsCaller: true}
			}
			code, err = userns.Run(prog, spec)
			if err != nil {
				return execFail(cmd, execCode(err), explainExec(err))
			}
			if code != 0 {
				return cli.ExitCode(code)
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

// execFail prints err as mabd exec's and returns the exit status code,
// which run() passes on without printing anything more.
func execFail(cmd *cobra.Command, code int, err error) error {
	fmt.Fprintln(cmd.ErrOrStderr(), "mabd exec:", err)
	return cli.ExitCode(code)
}

// execTarget is what mabd exec runs CMD with: the handler of an
// architecture, or nothing when the host runs it natively.
type execTarget struct {
	arch     binfmt.Arch
	native   bool               // the host runs arch's programs itself
	emulator *emulator.Emulator // the handler's interpreter, unless native
	flags    binfmt.Flags       // F, plus P when the emulator honours it
	warnings []string           // what was noticed but not refused
}

// spec is the handler mabd exec registers: qemu-<arch>, the table's magic
// and mask, the emulator and the flags.
func (t execTarget) spec() binfmt.Spec { return t.arch.Spec(t.emulator.Path, t.flags) }

// resolveExec resolves what a user asked for: platform is an OCI platform,
// a QEMU name or an alias; emulatorPath the emulator to use, or "" to look
// for qemu-<arch>[-static] in dirs (nil: emulator.DefaultDirs). A platform
// the host runs natively needs nothing, unless emulatorPath asks for an
// emulator. The emulator must be one that only root or the caller can
// replace (emulator.CheckTrustedFor: CMD and every program it starts would
// run its code), checked before anything runs it; an ELF executable, and
// static, because the handler gets the F flag. It is run once with
// --version (ctx bounds that): an emulator whose target is another
// architecture is refused; its version decides on the P flag. When the
// output cannot be read, P is left out, with a warning.
func resolveExec(ctx context.Context, platform, emulatorPath string, dirs []string) (execTarget, error) {
	arch, err := binfmt.Lookup(platform)
	if err != nil {
		return execTarget{}, err
	}
	t := execTarget{arch: arch, flags: binfmt.FixBinary}
	if emulatorPath == "" && emulator.IsNative(arch.Name) {
		t.native = true
		return t, nil
	}
	if emulatorPath == "" {
		if t.emulator, err = emulator.Find(arch.Name, dirs); err != nil {
			return t, err
		}
		if err := emulator.CheckTrustedFor(t.emulator.Path, os.Geteuid()); err != nil {
			return t, err
		}
	} else {
		abs, err := filepath.Abs(emulatorPath)
		if err != nil {
			return t, fmt.Errorf("emulator %s: %w", emulatorPath, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return t, fmt.Errorf("emulator %w", err)
		}
		if err := emulator.CheckTrustedFor(abs, os.Geteuid()); err != nil {
			return t, err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return t, fmt.Errorf("emulator %s is not an executable file", abs)
		}
		static, err := emulator.IsStatic(abs)
		if err != nil {
			return t, &emulator.UnusableError{Arch: arch.Name, Path: abs, Err: err}
		}
		t.emulator = &emulator.Emulator{Arch: arch.Name, Path: abs, Static: static}
	}
	if err := t.emulator.CheckFixBinary(); err != nil {
		return t, fmt.Errorf("%w (mabd exec always registers its handler with F)", err)
	}
	if err := t.emulator.Inspect(ctx); err != nil {
		var wt *emulator.WrongTargetError
		if errors.As(err, &wt) {
			return t, err
		}
		t.warnings = append(t.warnings, fmt.Sprintf("%v: its architecture is not checked and the handler has no P flag", err))
	}
	if emulator.PreservesArgv0(t.emulator.Version) {
		t.flags |= binfmt.PreserveArgv0
	}
	return t, nil
}

// execLookPath resolves CMD as a shell does: a name without a slash in
// $PATH (an entry of "." or "" included), anything else relative to the
// working directory; the path it returns is absolute. Its errors come with
// the exit status: exitExecNotFound or exitExecCannot.
func execLookPath(name string) (string, int, error) {
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		err = nil // found through "." in $PATH: a shell runs it, so do we
	}
	if err != nil {
		code := exitExecCannot
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = exitExecNotFound
		}
		var ee *exec.Error
		if errors.As(err, &ee) && ee.Err != nil {
			err = ee.Err
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if code == exitExecNotFound && !strings.Contains(name, "/") {
			return "", code, fmt.Errorf("%s: command not found in $PATH", name)
		}
		return "", code, fmt.Errorf("%s: %w", name, err)
	}
	if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
		return "", exitExecCannot, fmt.Errorf("%s: is a directory", name)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", exitExecCannot, fmt.Errorf("%s: %w", name, err)
	}
	return abs, 0, nil
}

// execCode is the exit status for an error of userns.Run: for a CMD that
// could not be executed, exitExecNotFound when it is missing and
// exitExecCannot when it is no program the kernel can run; exitExecSetup
// for everything else (the namespaces, the instance, the handler).
func execCode(err error) int {
	var se *userns.StartError
	var errno syscall.Errno
	if !errors.As(err, &se) || !errors.As(se.Err, &errno) {
		return exitExecSetup
	}
	switch errno {
	case syscall.ENOENT:
		return exitExecNotFound
	case syscall.EACCES, syscall.ENOEXEC, syscall.EISDIR, syscall.ENOTDIR, syscall.ELOOP, syscall.ETXTBSY, syscall.E2BIG, syscall.ENAMETOOLONG:
		return exitExecCannot
	}
	return exitExecSetup
}

// explainExec adds to an error of userns.Run what to do about it, for the
// user of mabd exec.
func explainExec(err error) error {
	var old *userns.KernelTooOldError
	if errors.As(err, &old) {
		return fmt.Errorf("mabd exec needs Linux %d.%d or newer, where binfmt_misc is per user namespace; this kernel is %s",
			userns.MinKernelMajor, userns.MinKernelMinor, old.Release)
	}
	var ue *userns.UnavailableError
	if !errors.As(err, &ue) {
		return err
	}
	var fix string
	switch ue.Reason {
	case userns.Disabled:
		fix = fmt.Sprintf("enable them (as root) with `sysctl -w %s=%s`", ue.Sysctl, ue.Allow)
		if ue.Sysctl == userns.SysctlUnprivilegedClone {
			fix += ", or run mabd exec as root"
		}
	case userns.Refused:
		fix = "check sysctl " + userns.SysctlUnprivilegedClone + " (Debian and older Ubuntu kernels; `sysctl -w " + userns.SysctlUnprivilegedClone + "=1`), AppArmor's " +
			userns.SysctlAppArmorRestricted + " (Ubuntu 23.10 and later), and the seccomp profile of a container mabd runs in"
	case userns.Limit:
		fix = "raise `sysctl -w " + userns.SysctlMaxUserNamespaces + "=10000` and " + userns.SysctlMaxMntNamespaces + ", or end other namespaces of this user"
	case userns.NoFilesystem:
		fix = "load it (as root) with `modprobe binfmt_misc`"
	case userns.MountRefused:
		if ue.Sysctl == "" {
			return err
		}
		fix = fmt.Sprintf("allow mabd in an AppArmor profile, or (as root) `sysctl -w %s=%s`", ue.Sysctl, ue.Allow)
	default:
		return err
	}
	return fmt.Errorf("%w; %s", err, fix)
}
