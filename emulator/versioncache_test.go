package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mabd/internal/safefile"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countingEmulator writes a fake emulator into dir that appends a line to
// a file each time it runs and prints a QEMU --version line for target,
// and returns its path and a function that counts its runs.
func countingEmulator(t *testing.T, dir, name, target string) (string, func() int) {
	t.Helper()
	runs := filepath.Join(dir, name+".runs")
	fake := filepath.Join(dir, name)
	script := "#!/bin/sh\necho x >> " + runs + "\necho 'qemu-" + target + " version 8.1.0 (test)'\n"
	writeFile(t, fake, []byte(script), 0o755)
	return fake, func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "x")
	}
}

// TestVersionCache runs a fake emulator that counts its runs: a cached
// answer is read without starting it, a changed file is asked again.
func TestVersionCache(t *testing.T) {
	dir := t.TempDir()
	fake, count := countingEmulator(t, dir, "qemu-fake-static", "fake")
	ctx := context.Background()
	store := filepath.Join(dir, "state", "emulators.json")

	c, err := LoadVersionCache(store)
	if err != nil {
		t.Fatalf("LoadVersionCache of a missing file: %v, want no warning", err)
	}
	for i := 0; i < 3; i++ {
		if v, target, err := c.Inspect(ctx, fake); err != nil || v != "8.1.0" || target != "fake" {
			t.Fatalf("Inspect = %q, %q, %v", v, target, err)
		}
	}
	if count() != 1 {
		t.Fatalf("the emulator ran %d times for 3 lookups, want 1", count())
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}

	c, err = LoadVersionCache(store)
	if err != nil {
		t.Fatal(err)
	}
	if v, target, _ := c.Inspect(ctx, fake); v != "8.1.0" || target != "fake" || count() != 1 {
		t.Fatalf("after reopening: %q, %q, %d runs; want the cached answer and no run", v, target, count())
	}

	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(fake, later, later); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := c.Inspect(ctx, fake); v != "8.1.0" || count() != 2 {
		t.Fatalf("after the file changed: %q, %d runs; want it asked again", v, count())
	}
	// A change that keeps size and modification time (cp --preserve over
	// the file, touch -d back) changes the change time.
	fi, _ := os.Stat(fake)
	if err := os.Chmod(fake, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fake, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, _, _ = c.Inspect(ctx, fake); count() != 3 {
		t.Fatalf("after a change that kept size and mtime: %d runs, want it asked again", count())
	}

	var none *VersionCache
	if v, target, err := none.Inspect(ctx, fake); err != nil || v != "8.1.0" || target != "fake" || count() != 4 {
		t.Fatalf("nil cache: %q, %q, %v, %d runs", v, target, err, count())
	}
	if err := none.Save(); err != nil {
		t.Fatalf("nil cache: Save = %v", err)
	}
}

// TestVersionCacheOldEntries: an entry written before targets were cached
// (no target) is a miss, so an emulator of the wrong architecture is not
// waved through by a cache that never read its target.
func TestVersionCacheOldEntries(t *testing.T) {
	dir := t.TempDir()
	fake, count := countingEmulator(t, dir, "qemu-aarch64-static", "arm")
	id, ok := identity(fake)
	if !ok {
		t.Fatal("identity")
	}
	old := fmt.Sprintf(`{%q: {"dev": %d, "ino": %d, "size": %d, "mtime_ns": %d, "version": "8.1.0"}}`, fake, id.Dev, id.Ino, id.Size, id.ModTime)
	store := filepath.Join(dir, "emulators.json")
	writeFile(t, store, []byte(old), 0o644)
	c, err := LoadVersionCache(store)
	if err != nil {
		t.Fatal(err)
	}
	if _, target, err := c.Inspect(context.Background(), fake); err != nil || target != "arm" || count() != 1 {
		t.Fatalf("Inspect = target %q, %v after %d runs; want arm, read by running it", target, err, count())
	}
}

// TestLoadVersionCacheIgnores: a stored file that is too large, corrupt
// or not a regular file is ignored with a warning and never blocks; one
// that is not a regular file is not replaced either, the others are.
func TestLoadVersionCacheIgnores(t *testing.T) {
	tests := []struct {
		name string
		// setup creates the file at p.
		setup func(t *testing.T, p string)
		says  string
		// kept: Save leaves the path as it was (not a regular file).
		kept bool
	}{
		{"larger than 1 MiB", func(t *testing.T, p string) {
			writeFile(t, p, bigVersionCache(t, MaxVersionCacheBytes+1), 0o644)
		}, "larger than the 1048576 a version cache may be: ignored", false},
		{"not JSON", func(t *testing.T, p string) {
			writeFile(t, p, []byte("not json"), 0o644)
		}, "not a version cache", false},
		{"JSON of another shape", func(t *testing.T, p string) {
			writeFile(t, p, []byte(`["a", "b"]`), 0o644)
		}, "not a version cache", false},
		{"a symlink", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "elsewhere.json")
			writeFile(t, target, []byte("{}"), 0o644)
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, "a symlink, not a regular file", true},
		{"a directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file", true},
		{"a FIFO with no writer", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fake, _ := countingEmulator(t, dir, "qemu-fake-static", "fake")
			store := filepath.Join(dir, "emulators.json")
			tt.setup(t, store)
			before, _ := os.Lstat(store)

			done := make(chan struct{})
			var c *VersionCache
			var err error
			go func() {
				defer close(done)
				c, err = LoadVersionCache(store)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("LoadVersionCache blocked")
			}
			t.Logf("LoadVersionCache: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), store) {
				t.Fatalf("warning %v, want one naming %s and saying %q", err, store, tt.says)
			}
			if c == nil || len(c.m) != 0 {
				t.Fatalf("cache %v, want an empty one", c)
			}
			if errors.Is(err, ErrNotRegularFile) != tt.kept {
				t.Errorf("errors.Is(warning, ErrNotRegularFile) = %v, want %v", !tt.kept, tt.kept)
			}
			if _, _, err := c.Inspect(context.Background(), fake); err != nil {
				t.Fatal(err)
			}
			err = c.Save()
			after, _ := os.Lstat(store)
			if tt.kept {
				if !errors.Is(err, ErrNotRegularFile) || !strings.Contains(err.Error(), "left alone") {
					t.Errorf("Save = %v, want it to leave the file alone", err)
				}
				if after == nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
					t.Errorf("Save replaced the %v at %s", before.Mode().Type(), store)
				}
				return
			}
			if err != nil {
				t.Fatalf("Save = %v", err)
			}
			c, err = LoadVersionCache(store)
			if err != nil || len(c.m) != 1 {
				t.Errorf("after Save: %d entries, %v; want the one emulator asked about", len(c.m), err)
			}
			if after.Size() > 4096 {
				t.Errorf("after Save the file has %d bytes", after.Size())
			}
		})
	}
}

// bigVersionCache returns a valid cache file of at least n bytes whose
// entries are files that do not exist.
func bigVersionCache(t *testing.T, n int) []byte {
	t.Helper()
	m := map[string]cachedVersion{}
	for i := 0; ; i++ {
		p := fmt.Sprintf("/nonexistent/%d/qemu-aarch64-static", i)
		m[p] = cachedVersion{FileID: FileID{Dev: 1, Ino: uint64(i), Size: 1}, Version: "7.2.22", Target: "aarch64"}
		if i%1000 != 999 {
			continue
		}
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= n {
			return b
		}
	}
}

// TestLoadVersionCacheTooLargeIsReplaced: a file that grew without bound (148
// MB were seen) is ignored, and the next save shrinks it even when every
// answer came from nowhere else.
func TestLoadVersionCacheTooLargeIsReplaced(t *testing.T) {
	store := filepath.Join(t.TempDir(), "emulators.json")
	writeFile(t, store, bigVersionCache(t, 4<<20), 0o644)
	c, err := LoadVersionCache(store)
	if err == nil {
		t.Fatal("no warning for a 4 MiB cache")
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(store); err != nil || fi.Size() > 16 {
		t.Fatalf("after Save: %v, %v; want an empty cache", fi.Size(), err)
	}
}

// TestVersionCacheSavePrunes: Save drops entries whose file is gone or
// changed and keeps at most MaxVersionCacheEntries, those asked about
// first.
func TestVersionCacheSavePrunes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var fakes []string
	for i := 0; i < MaxVersionCacheEntries+10; i++ {
		p := filepath.Join(dir, fmt.Sprintf("qemu-f%03d", i))
		if err := os.Symlink("/usr/bin/true", p); err != nil {
			t.Fatal(err)
		}
		fakes = append(fakes, p)
	}
	store := filepath.Join(dir, "emulators.json")
	c, _ := LoadVersionCache(store)
	// Entries as Inspect would leave them, for every file.
	for _, p := range fakes {
		id, _ := identity(p)
		id.Version, id.Target = "8.1.0", "f"
		c.m[p] = id
	}
	gone, changed := fakes[0], fakes[1]
	c.m[filepath.Join(dir, "deleted")] = cachedVersion{FileID: FileID{Dev: 1, Ino: 2}, Version: "8.1.0", Target: "x"}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	id := c.m[changed]
	id.Ino++
	c.m[changed] = id
	c.dirty = true
	// The last emulator is asked about in this run: it stays.
	last, count := countingEmulator(t, dir, "qemu-zzz", "zzz")
	if _, _, err := c.Inspect(ctx, last); err != nil || count() != 1 {
		t.Fatal(err)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c, err := LoadVersionCache(store)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.m) != MaxVersionCacheEntries {
		t.Errorf("saved %d entries, want %d", len(c.m), MaxVersionCacheEntries)
	}
	for _, p := range []string{filepath.Join(dir, "deleted"), gone, changed} {
		if _, ok := c.m[p]; ok {
			t.Errorf("entry %s kept", p)
		}
	}
	if _, ok := c.m[last]; !ok {
		t.Errorf("the emulator asked about was pruned")
	}
	noTemporaries(t, dir)
}

// TestVersionCacheConcurrentSaves: processes that save the same cache at
// once each write a file of their own, so every save succeeds and the
// result is one of them, whole.
func TestVersionCacheConcurrentSaves(t *testing.T) {
	dir := t.TempDir()
	fake, _ := countingEmulator(t, dir, "qemu-fake-static", "fake")
	store := filepath.Join(dir, "emulators.json")
	var caches []*VersionCache
	for i := 0; i < 16; i++ {
		c, _ := LoadVersionCache(store)
		if _, _, err := c.Inspect(context.Background(), fake); err != nil {
			t.Fatal(err)
		}
		caches = append(caches, c)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(caches))
	for i, c := range caches {
		wg.Go(func() { errs[i] = c.Save() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("save %d: %v", i, err)
		}
	}
	if c, err := LoadVersionCache(store); err != nil || len(c.m) != 1 {
		t.Errorf("after concurrent saves: %v, %v", c.m, err)
	}
	noTemporaries(t, dir)
}

// noTemporaries fails the test if a temporary file of Save is in dir.
func noTemporaries(t *testing.T, dir string) {
	t.Helper()
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".tmp") {
			t.Errorf("left behind: %s", de.Name())
		}
	}
}

// TestReplaceFileRemovesTemporary: when the rename fails the temporary
// file is removed and the target is untouched.
func TestReplaceFileRemovesTemporary(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "emulators.json")
	writeFile(t, filepath.Join(target, "inside"), []byte("x"), 0o644) // a non-empty directory
	if err := safefile.Write(target, []byte("{}"), 0o644); err == nil {
		t.Fatal("safefile.Write over a non-empty directory succeeded")
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 1 || des[0].Name() != "emulators.json" {
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		t.Errorf("directory holds %q, want only emulators.json", names)
	}
	if _, err := os.Stat(filepath.Join(target, "inside")); err != nil {
		t.Errorf("the directory was changed: %v", err)
	}
}

// TestVersionCacheStatic: IsStatic's answer is kept with the file's
// identity, served while the file is the same (even from the stored
// file) and asked again once it changes.
func TestVersionCacheStatic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "qemu-aarch64-static")
	writeFile(t, p, staticELF, 0o755)
	id, ok := identity(p)
	if !ok {
		t.Fatal("identity")
	}
	// A stored answer that disagrees with the file shows it is the
	// cache that answers.
	stored := fmt.Sprintf(`{%q: {"dev": %d, "ino": %d, "size": %d, "mtime_ns": %d, "ctime_ns": %d, "version": "7.2.22", "target": "aarch64", "static": false}}`,
		p, id.Dev, id.Ino, id.Size, id.ModTime, id.ChangeTime)
	store := filepath.Join(dir, "emulators.json")
	writeFile(t, store, []byte(stored), 0o644)
	c, err := LoadVersionCache(store)
	if err != nil {
		t.Fatal(err)
	}
	if static, err := c.static(p, FileID{}); err != nil || static {
		t.Fatalf("Static = %v, %v; want the stored false", static, err)
	}
	// Replaced (a new inode): read again, remembered, version kept apart.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, dynamicELF, 0o755)
	if static, err := c.static(p, FileID{}); err != nil || static {
		t.Fatalf("Static of the dynamic replacement = %v, %v; want false, nil", static, err)
	}
	os.Remove(p)
	writeFile(t, p, staticPIE, 0o755)
	if static, err := c.static(p, FileID{}); err != nil || !static {
		t.Fatalf("Static of the static-PIE replacement = %v, %v; want true, nil", static, err)
	}
	if v := c.m[p]; v.Static == nil || !*v.Static || v.Target != "" {
		t.Fatalf("entry after Static = %+v; want static true and no target for the new file", v)
	}
	// Errors are not cached.
	script := filepath.Join(dir, "qemu-arm-static")
	writeFile(t, script, []byte("#!/bin/sh\n"), 0o755)
	if _, err := c.static(script, FileID{}); !errors.Is(err, ErrNotELF) {
		t.Fatalf("Static(script) = %v; want ErrNotELF", err)
	}
	if _, hit := c.m[script]; hit {
		t.Fatal("a failed Static was cached")
	}
}
