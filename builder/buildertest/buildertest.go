// Package buildertest starts real buildkitd supervisors for tests: the
// binaries `make deps` builds into bin/ and a state directory that
// overlayfs works on.
//
// The supervisors use private emulation: buildkitd runs in a user and
// mount namespace of its own whose binfmt_misc instance holds the handlers
// of the foreign platforms asked for, with Debian's static emulators. The
// host's table is neither read nor changed, whatever it holds. A test
// binary that imports this package gets the builder's agent hook
// ([builder.MaybeRunAgent]) from its init function.
package buildertest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"mabd/builder"
	"mabd/testing/fixtures"
)

// Bin returns the path of bin/<name> (buildkitd, buildctl) at the
// repository root, failing the test when it is missing.
func Bin(t testing.TB, name string) string {
	t.Helper()
	root, err := fixtures.Root()
	if err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	p := filepath.Join(root, "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("buildertest: %s missing: run `make deps` (scripts/buildkit-deps.sh builds it from go.mod's tool directive)", p)
	}
	return p
}

// Dir returns a new, short directory for a builder's state, removed when
// the test ends: under /var/tmp when /tmp is a tmpfs (overlayfs's upper
// layer and the builder's cache want a real disk), else under the default
// temporary directory.
func Dir(t testing.TB) string {
	t.Helper()
	base := os.TempDir()
	var st unix.Statfs_t
	if unix.Statfs(base, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, "mabd-bk-")
	if err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	t.Cleanup(func() {
		if ms, _ := builder.MountsUnder(dir); len(ms) > 0 {
			t.Errorf("buildertest: still mounted under %s: %v", dir, ms)
			return // never remove through a mount
		}
		os.RemoveAll(dir)
	})
	return dir
}

func init() { builder.MaybeRunAgent() }

// Options returns supervisor options for a test: bin/buildkitd, state in
// dir, the socket at dir/bk.sock, private emulation of the given platforms
// (their handlers made from Debian's static emulators), a 1 GB cache and
// the supervisor's log (info and above) in the test's log.
func Options(t testing.TB, dir string, platforms ...string) builder.Options {
	return builder.Options{
		Binary:      Bin(t, "buildkitd"),
		Root:        filepath.Join(dir, "root"),
		Socket:      filepath.Join(dir, "bk.sock"),
		Platforms:   platforms,
		KeepStorage: 1e9,
		StopTimeout: 10 * time.Second,
		Logger:      zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
	}
}

// Start starts a supervisor with [Options] in a new [Dir] and stops it
// when the test ends, failing the test if Stop fails (a mount or the
// socket left behind). Foreign platforms among platforms are emulated in
// the builder's private binfmt_misc instance.
func Start(t testing.TB, platforms ...string) *builder.Supervisor {
	t.Helper()
	s := builder.NewSupervisor(Options(t, Dir(t), platforms...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("buildertest: start buildkitd: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("buildertest: stop buildkitd: %v", err)
		}
	})
	return s
}
