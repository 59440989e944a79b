package emulator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVersionCache runs a fake emulator that counts its runs: a cached
// version is read without starting it, a changed file is asked again.
func TestVersionCache(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	fake := filepath.Join(dir, "qemu-fake-static")
	script := "#!/bin/sh\necho x >> " + runs + "\necho 'qemu-fake version 8.1.0 (test)'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "x")
	}
	ctx := context.Background()
	store := filepath.Join(dir, "state", "emulators.json")

	c := OpenVersionCache(store)
	for i := 0; i < 3; i++ {
		if v, err := c.Version(ctx, fake); err != nil || v != "8.1.0" {
			t.Fatalf("Version = %q, %v", v, err)
		}
	}
	if count() != 1 {
		t.Fatalf("the emulator ran %d times for 3 lookups, want 1", count())
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}

	c = OpenVersionCache(store)
	if v, _ := c.Version(ctx, fake); v != "8.1.0" || count() != 1 {
		t.Fatalf("after reopening: %q, %d runs; want the cached version and no run", v, count())
	}

	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(fake, later, later); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Version(ctx, fake); v != "8.1.0" || count() != 2 {
		t.Fatalf("after the file changed: %q, %d runs; want it asked again", v, count())
	}

	var none *VersionCache
	if v, err := none.Version(ctx, fake); err != nil || v != "8.1.0" || count() != 3 {
		t.Fatalf("nil cache: %q, %v, %d runs", v, err, count())
	}
	if err := os.WriteFile(store, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := OpenVersionCache(store).Version(ctx, fake); err != nil || v != "8.1.0" {
		t.Fatalf("a corrupt cache file must read as empty: %q, %v", v, err)
	}
}
