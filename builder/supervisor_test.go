package builder_test

// Integration tests with the real buildkitd (bin/buildkitd, `make deps`),
// runc and a real registry. They register no binfmt_misc handler in the
// host's table (cmd/mabd's tests, which run steps under QEMU, do): the
// builds here run no foreign program, so they show multi-platform output
// without emulation.

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mabd/builder"
	"mabd/builder/build"
	"mabd/builder/buildertest"
	"mabd/emulator"
	"mabd/testing/registry"
)

// buildctl runs bin/buildctl against addr.
func buildctl(t *testing.T, addr string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, buildertest.Bin(t, "buildctl"), append([]string{"--addr", addr}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("buildctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// copyBuild builds, for amd64 and arm64, an image of the base plus a file,
// into a local directory, and checks each platform's busybox is its own.
func copyBuild(t *testing.T, addr, base string) {
	t.Helper()
	ctxDir := t.TempDir()
	df := "ARG BASE\nFROM $BASE\nCOPY hello.txt /hello.txt\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := build.Build(ctx, build.Options{
		Addr:           addr,
		Context:        ctxDir,
		Platforms:      []string{"linux/amd64", "linux/arm64"},
		BuildArgs:      []string{"BASE=" + base},
		Outputs:        []string{"type=local,dest=" + out},
		Progress:       "plain",
		ProgressOutput: &progress,
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress.String())
	}
	if !slices.Equal(res.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("built %q", res.Platforms)
	}
	for dir, machine := range map[string]elf.Machine{"linux_amd64": elf.EM_X86_64, "linux_arm64": elf.EM_AARCH64} {
		if b, err := os.ReadFile(filepath.Join(out, dir, "hello.txt")); err != nil || string(b) != "hello\n" {
			t.Errorf("%s/hello.txt: %q, %v", dir, b, err)
		}
		f, err := elf.Open(filepath.Join(out, dir, "bin", "busybox"))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		if f.Machine != machine {
			t.Errorf("%s/bin/busybox is for %v, want %v", dir, f.Machine, machine)
		}
		f.Close()
	}
}

func TestSupervisor(t *testing.T) {
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")

	t0 := time.Now()
	s := buildertest.Start(t, "linux/amd64", "linux/arm64")
	t.Logf("buildkitd ready in %v", time.Since(t0))
	st := s.Status()
	if !st.Running || st.PID == 0 || st.Version != "v0.34.2" || st.Restarts != 0 || st.LastError != "" || st.Since.IsZero() {
		t.Errorf("status after Start: %+v", st)
	}
	// BuildKit adds the host's own variants (linux/amd64/v2, …).
	if !slices.Contains(st.Platforms, "linux/amd64") || !slices.Contains(st.Platforms, "linux/arm64") {
		t.Errorf("worker platforms %q", st.Platforms)
	}
	if st.Snapshotter != builder.SnapshotterOverlay {
		t.Errorf("snapshotter %q: overlayfs should work on %s", st.Snapshotter, filepath.Dir(st.Socket))
	}
	fi, err := os.Stat(st.Socket)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %s: %v, %v", st.Socket, fi.Mode(), err)
	}
	// The worker lists what its namespace verified: linux/386 too where
	// the kernel runs it.
	wantPlatforms := `platforms = ['linux/amd64', 'linux/arm64']`
	if emulator.IsNative("i386") {
		wantPlatforms = `platforms = ['linux/amd64', 'linux/386', 'linux/arm64']`
	}
	cfg, err := os.ReadFile(st.Config)
	if err != nil || !strings.Contains(string(cfg), wantPlatforms) || !strings.Contains(string(cfg), "gckeepstorage = 1000000000") {
		t.Errorf("config %s: %v\n%s", st.Config, err, cfg)
	}

	workers := buildctl(t, s.Address(), "debug", "workers")
	if !strings.Contains(workers, "linux/arm64") || !strings.Contains(workers, "linux/amd64") {
		t.Errorf("buildctl debug workers:\n%s", workers)
	}

	t.Run("SecondOnSameSocketRefused", func(t *testing.T) {
		o := buildertest.Options(t, buildertest.Dir(t))
		o.Socket = st.Socket
		err := builder.NewSupervisor(o).Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "already listens") {
			t.Fatalf("second supervisor on %s: %v", st.Socket, err)
		}
		if s.Status().PID != st.PID {
			t.Fatal("the first buildkitd was disturbed")
		}
	})

	t.Run("SecondOnSameRootRefused", func(t *testing.T) {
		o := buildertest.Options(t, buildertest.Dir(t))
		o.Root = filepath.Join(filepath.Dir(st.Socket), "root")
		err := builder.NewSupervisor(o).Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "another buildkitd uses") {
			t.Fatalf("second supervisor on the same root: %v", err)
		}
	})

	t.Run("Build", func(t *testing.T) { copyBuild(t, s.Address(), base) })

	t.Run("RestartAfterKill", func(t *testing.T) {
		old := s.Status().PID
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		deadline := t0.Add(5 * time.Second)
		for {
			st := s.Status()
			if st.Running && st.PID != old {
				t.Logf("restarted in %v: pid %d → %d", time.Since(t0), old, st.PID)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not restarted within 5s: %+v", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
		st := s.Status()
		if st.Restarts != 1 || !strings.Contains(st.LastError, "signal: killed") {
			t.Errorf("after one kill: restarts %d, last error %q", st.Restarts, st.LastError)
		}
		copyBuild(t, s.Address(), base)
	})

	t.Run("SetPlatforms", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pid := s.Status().PID
		if err := s.SetPlatforms(ctx, []string{"linux/arm64", "linux/amd64"}); err != nil {
			t.Fatal(err)
		}
		if s.Status().PID != pid {
			t.Error("the same platforms restarted buildkitd")
		}
		if err := s.SetPlatforms(ctx, []string{"linux/amd64"}); err != nil {
			t.Fatal(err)
		}
		st := s.Status()
		if !st.Running || st.PID == pid || !slices.Contains(st.Platforms, "linux/amd64") || slices.Contains(st.Platforms, "linux/arm64") || st.Restarts != 1 {
			t.Errorf("after SetPlatforms(linux/amd64): %+v", st)
		}
		if w := buildctl(t, s.Address(), "debug", "workers"); strings.Contains(w, "linux/arm64") {
			t.Errorf("buildctl debug workers still lists linux/arm64:\n%s", w)
		}
	})

	t.Run("Stop", func(t *testing.T) {
		root := filepath.Join(filepath.Dir(st.Socket), "root")
		pid := s.Status().PID
		// A leftover mount, as a killed buildkitd leaves them.
		left := filepath.Join(root, "leftover", "mnt")
		if err := os.MkdirAll(left, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", left, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		t0 := time.Now()
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("stopped in %v", time.Since(t0))
		if _, err := os.Lstat(st.Socket); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket left: %v", err)
		}
		if ms, err := builder.MountsUnder(root); err != nil || len(ms) > 0 {
			for _, m := range ms {
				syscall.Unmount(m.Point, syscall.MNT_DETACH)
			}
			t.Errorf("mounts left under %s: %v, %v", root, ms, err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("buildkitd %d still there: %v", pid, err)
		}
		if st := s.Status(); st.Running || st.PID != 0 {
			t.Errorf("status after Stop: %+v", st)
		}
		if err := s.WaitReady(ctx); !errors.Is(err, builder.ErrStopped) {
			t.Errorf("WaitReady after Stop: %v", err)
		}
		if err := s.Stop(ctx); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

func TestStartFails(t *testing.T) {
	dir := buildertest.Dir(t)
	o := buildertest.Options(t, dir)
	o.Binary = "/bin/false"
	o.ReadyTimeout = 20 * time.Second
	s := builder.NewSupervisor(o)
	err := s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "did not come up") {
		t.Fatalf("Start with /bin/false: %v", err)
	}
	if st := s.Status(); st.Running || st.LastError == "" {
		t.Errorf("status: %+v", st)
	}
	if _, err := os.Lstat(o.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left: %v", err)
	}
	o.Binary = filepath.Join(dir, "no-such-buildkitd")
	err = builder.NewSupervisor(o).Start(context.Background())
	var be *builder.BinaryError
	if !errors.As(err, &be) || be.Binary != o.Binary || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Start without buildkitd: %v", err)
	}
}
