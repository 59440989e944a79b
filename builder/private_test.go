package builder_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/builder/buildertest"
	"mabd/host"
	"mabd/testing/sandbox"
)

// tableText is every file of a binfmt_misc directory and its content.
func tableText(t *testing.T, dir string) string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	var b strings.Builder
	for _, de := range des {
		c, _ := os.ReadFile(filepath.Join(dir, de.Name()))
		b.WriteString(de.Name() + ":\n" + string(c) + "\n")
	}
	return b.String()
}

// TestPrivateEmulation: whatever the table the builder's host holds (here
// a sandbox's instance with a handler for every architecture installed
// and a decoy of another name), the worker advertises the native
// platforms and those of its own private handlers, nothing else; changing
// its platforms changes its private instance; the host's table and the
// real host's are left as they were.
func TestPrivateEmulation(t *testing.T) {
	realHost := tableText(t, binfmt.DefaultDir)
	sandbox.Run(t, func(t *testing.T, mount string) {
		h := host.Host{Mount: binfmt.Mount{Dir: mount}, StateDir: "-"}
		if _, err := h.Install(context.Background(), host.InstallOptions{Arches: []string{"all"}}); err != nil {
			t.Fatal(err)
		}
		ppc, _ := binfmt.ArchByName("ppc64le")
		decoy := ppc.Spec("/usr/bin/qemu-ppc64le-static", binfmt.FixBinary)
		decoy.Name = "decoy-ppc64le"
		if err := (binfmt.Mount{Dir: mount}).Register(decoy); err != nil {
			t.Fatal(err)
		}
		entries, _ := binfmt.Mount{Dir: mount}.Entries()
		t.Logf("the builder's host table holds %d entries", len(entries))
		before := tableText(t, mount)

		s := buildertest.Start(t, "linux/arm64")
		workers := buildctl(t, s.Address(), "debug", "workers")
		st := s.Status()
		for _, p := range st.Platforms {
			if !strings.HasPrefix(p, "linux/amd64") && p != "linux/386" && p != "linux/arm64" {
				t.Errorf("the worker advertises %s, which its private instance does not hold: %q", p, st.Platforms)
			}
		}
		if !slices.Contains(st.Platforms, "linux/arm64") || strings.Contains(workers, "ppc64le") || strings.Contains(workers, "riscv64") {
			t.Errorf("buildctl debug workers:\n%s", workers)
		}
		if st.Emulation != builder.EmulationPrivate || len(st.Private) == 0 {
			t.Errorf("status: emulation %q, private %+v", st.Emulation, st.Private)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.SetPlatforms(ctx, []string{"linux/riscv64"}); err != nil {
			t.Fatal(err)
		}
		st = s.Status()
		if !slices.Contains(st.Platforms, "linux/riscv64") || slices.Contains(st.Platforms, "linux/arm64") {
			t.Errorf("after SetPlatforms(linux/riscv64): %q", st.Platforms)
		}
		if w := buildctl(t, s.Address(), "debug", "workers"); !strings.Contains(w, "linux/riscv64") || strings.Contains(w, "linux/arm64") {
			t.Errorf("buildctl debug workers after SetPlatforms(linux/riscv64):\n%s", w)
		}
		if after := tableText(t, mount); after != before {
			t.Errorf("the builder's host table changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	if after := tableText(t, binfmt.DefaultDir); after != realHost {
		t.Errorf("the real host's table changed:\nbefore:\n%s\nafter:\n%s", realHost, after)
	}
}

// TestPrivateHandlerRepaired: a private handler that stops working while
// buildkitd runs (here disabled from outside, through the agent's mount
// namespace) fails the next verification inside the namespace; it is
// withdrawn (counted) and buildkitd restarts in a fresh namespace, where
// the handler is registered and verified again: repaired.
func TestPrivateHandlerRepaired(t *testing.T) {
	o := buildertest.Options(t, buildertest.Dir(t), "linux/arm64")
	o.VerifyInterval = 300 * time.Millisecond
	s := builder.NewSupervisor(o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	st := s.Status()
	if !slices.Contains(st.Platforms, "linux/arm64") {
		t.Fatalf("platforms %q", st.Platforms)
	}
	entry := fmt.Sprintf("/proc/%d/root%s/qemu-aarch64", st.AgentPID, binfmt.DefaultDir)
	if err := os.WriteFile(entry, []byte("0"), 0o644); err != nil {
		t.Fatalf("disable the private entry: %v", err)
	}
	old := st.PID
	deadline := time.Now().Add(time.Minute)
	for {
		st = s.Status()
		if st.Withdrawn == 1 && st.Running && st.PID != old && slices.Contains(st.Platforms, "linux/arm64") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not withdrawn and repaired within a minute: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, h := range st.Private {
		if h.Name == "qemu-aarch64" && h.State != "ok" {
			t.Errorf("after the repair qemu-aarch64 is %s: %s", h.State, h.Reason)
		}
	}
	if w := buildctl(t, s.Address(), "debug", "workers"); !strings.Contains(w, "linux/arm64") {
		t.Errorf("buildctl debug workers after the repair:\n%s", w)
	}
}
