// Package buildertest starts real buildkitd supervisors for tests: the
// binaries `make deps` builds into bin/, a state directory that overlayfs
// works on, and the host binfmt_misc handlers that foreign RUN steps need.
//
// BuildKit runs RUN steps with runc in the host's user namespace, so a
// foreign platform needs its handler in the host's table. [Handler]
// registers one when it is missing and removes it when the last test
// process that uses it is done (a lock file and a marker under
// /run/mabd-test coordinate test binaries running in parallel); handlers
// that were there before are never touched.
package buildertest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/testing/fixtures"
)

// LockDir holds the lock files and markers of the handlers tests added.
const LockDir = "/run/mabd-test"

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

// Options returns supervisor options for a test: bin/buildkitd, state in
// dir, the socket at dir/bk.sock, the given platforms, a 1 GB cache and
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
// socket left behind). It registers no handler: RUN steps of a foreign
// platform need [Handler] first.
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

// Handler makes sure the host's binfmt_misc table runs the platform's
// (or architecture's) binaries: native ones need nothing; for a foreign
// one it registers qemu-<arch> with Debian's static emulator and flags F
// and P unless an enabled entry of that name with F is there. A handler it
// registered is removed when the last test process using it is done.
func Handler(t testing.TB, platform string) {
	t.Helper()
	a, err := binfmt.Lookup(platform)
	if err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	if binfmt.IsNative(a.Name) {
		return
	}
	if _, err := binfmt.EnsureMounted(binfmt.DefaultDir); err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	interp := "/usr/bin/qemu-" + a.Name + "-static"
	if _, err := os.Stat(interp); err != nil {
		t.Fatalf("buildertest: %v: install qemu-user-static (make deps)", err)
	}
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	name := a.HandlerName()
	marker := filepath.Join(LockDir, name+".added")
	f, err := os.OpenFile(filepath.Join(LockDir, name+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("buildertest: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("buildertest: lock %s: %v", f.Name(), err)
	}
	m := binfmt.Mount{}
	e, err := m.Entry(name)
	switch {
	case err == nil && !e.Enabled:
		f.Close()
		t.Fatalf("buildertest: the host's %s handler is disabled: enable it (echo 1 > %s) or remove it", name, m.Path(name))
	case err == nil && !e.Flags.Has(binfmt.FixBinary):
		f.Close()
		t.Fatalf("buildertest: the host's %s handler lacks the F flag, so it does not work in build containers: `mabd install --replace %s`", name, a.Name)
	case errors.Is(err, fs.ErrNotExist):
		if err := m.Register(a.Spec(interp, binfmt.FixBinary|binfmt.PreserveArgv0)); err != nil {
			f.Close()
			t.Fatalf("buildertest: %v", err)
		}
		if err := os.WriteFile(marker, []byte("registered by a mabd test\n"), 0o644); err != nil {
			m.Remove(name)
			f.Close()
			t.Fatalf("buildertest: %v", err)
		}
		t.Logf("buildertest: registered %s in the host's binfmt_misc table", name)
	case err != nil:
		f.Close()
		t.Fatalf("buildertest: %v", err)
	}
	// Share the handler with other test processes until this test ends.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		t.Fatalf("buildertest: %v", err)
	}
	t.Cleanup(func() {
		defer f.Close()
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		// Whoever gets the lock exclusively is its last user.
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			return
		}
		if _, err := os.Stat(marker); err != nil {
			return // not registered by a test: leave it
		}
		if err := m.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("buildertest: remove %s: %v", name, err)
			return
		}
		os.Remove(marker)
		t.Logf("buildertest: removed %s from the host's binfmt_misc table", name)
	})
}

// Registered reports whether the host's table has an enabled handler for
// the architecture (a QEMU name, alias or platform).
func Registered(arch string) bool {
	a, err := binfmt.Lookup(arch)
	if err != nil {
		return false
	}
	e, err := binfmt.Mount{}.Entry(a.HandlerName())
	return err == nil && e.Enabled
}
