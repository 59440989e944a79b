package emulator

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultVersionTimeout bounds [Version] when its context has no deadline.
const DefaultVersionTimeout = 5 * time.Second

// waitDelay is how long Version waits, after the emulator was killed or
// exited, for its output pipes to close (a grandchild may hold them open).
const waitDelay = time.Second

// maxOutput caps how much of the emulator's output Version keeps.
const maxOutput = 64 << 10

// versionRE matches the first line QEMU user-mode emulators print for
// --version, e.g. "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
// or, for old releases, "qemu-arm version 2.11.1(Debian 1:2.11+dfsg-1ubuntu7)":
// the target, then the version.
var versionRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^qemu-([\w.+-]{1,64}) version (\d+\.\d+(?:\.\d+)?)(?:[^\d.]|$)`)
})

// ErrUnknownVersion is matched (via [errors.Is]) by the error of [Inspect]
// and [Version] when the emulator ran but its output is not QEMU's
// "qemu-<target> version X.Y.Z" line.
var ErrUnknownVersion = errors.New("cannot parse version from output")

// Version runs the emulator at path with --version and returns its QEMU
// version, e.g. "7.2.22"; it is [Inspect] without the target.
func Version(ctx context.Context, path string) (string, error) {
	v, _, err := Inspect(ctx, path)
	return v, err
}

// Inspect runs the emulator at path once with --version and returns what
// the first line of its output says: the QEMU version and the target, the
// architecture (QEMU's name for it) whose programs the emulator runs, e.g.
// "7.2.22" and "arm" from
//
//	qemu-arm version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)
//
// The target is compiled into the emulator: it stays "arm" when
// qemu-arm-static is copied or linked as qemu-aarch64-static, which is
// how a wrong emulator is told apart (see [WrongTargetError]).
//
// If ctx has no deadline, the run is bounded by [DefaultVersionTimeout].
// When the deadline passes or ctx is cancelled, the emulator's process
// group is killed and the error wraps ctx's error (e.g.
// [context.DeadlineExceeded]). A failed run wraps the exec error and quotes
// what the emulator wrote to stderr; output whose first line does not parse
// is an error matching [ErrUnknownVersion] that quotes it. Only the first
// 64 KiB of output are kept. Errors read "run <path> --version: <cause>".
func Inspect(ctx context.Context, path string) (version, target string, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultVersionTimeout)
		defer cancel()
	}
	fail := func(format string, args ...any) (string, string, error) {
		return "", "", fmt.Errorf("run %s --version: "+format, append([]any{path}, args...)...)
	}

	var stdout, stderr cappedBuffer
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)

	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fail("%w", ctxErr)
		}
		if msg := trimOutput(stderr.String()); msg != "" {
			return fail("%w: %s", err, msg)
		}
		return fail("%w", err)
	}
	version, target, ok := parseVersion(stdout.String())
	if !ok {
		out := trimOutput(stdout.String())
		if out == "" {
			out = trimOutput(stderr.String())
		}
		return fail("%w %q", ErrUnknownVersion, out)
	}
	return version, target, nil
}

// parseVersion extracts the version and the target from the first
// non-empty line of out, which must look like "qemu-<target> version
// X.Y[.Z]...".
func parseVersion(out string) (version, target string, ok bool) {
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := versionRE().FindStringSubmatch(line)
		if m == nil {
			return "", "", false
		}
		return m[2], m[1], true
	}
	return "", "", false
}

// trimOutput trims space and shortens s for quoting in an error.
func trimOutput(s string) string {
	s = strings.TrimSpace(s)
	const max = 200
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return s
}

// PreservesArgv0 reports whether a QEMU user-mode emulator of the given
// version (as returned by [Version]) honours binfmt_misc's P
// ("preserve-argv[0]") flag. The kernel (5.12 and later) tells the
// interpreter that P is set through the AT_FLAGS auxiliary vector entry
// (AT_FLAGS_PRESERVE_ARGV0); QEMU reads it since 6.0 (patch "linux-user:
// manage binfmt-misc preserve-arg[0] flag", February 2021). Older emulators
// hand the original argv[0], which the kernel inserts under P, to the program
// as an extra first argument. An empty or unparsable version yields false.
func PreservesArgv0(version string) bool {
	return versionAtLeast(version, 6, 0)
}

var majorMinorRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(\d+)\.(\d+)(?:[^\d]|$)`) })

// versionAtLeast reports whether version "X.Y[...]" is at least major.minor.
func versionAtLeast(version string, major, minor int) bool {
	m := majorMinorRE().FindStringSubmatch(version)
	if m == nil {
		return false
	}
	x, err1 := strconv.Atoi(m[1])
	y, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return false
	}
	return x > major || x == major && y >= minor
}

// cappedBuffer keeps the first maxOutput bytes written to it and discards
// the rest, so a misbehaving emulator cannot exhaust memory.
type cappedBuffer struct{ b []byte }

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string { return string(c.b) }
