package emulator

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// VersionCache remembers emulator versions by file identity (device,
// inode, size and modification time), so that reading them costs a stat
// instead of a process start. `mabd install` and the daemon keep one in
// their state directory: with 33 emulators, asking each for --version was
// most of an install's time.
//
// A nil *VersionCache asks every time. Its methods are safe for concurrent
// use.
type VersionCache struct {
	path string
	mu   sync.Mutex
	m    map[string]cachedVersion
	// dirty says m changed since it was read.
	dirty bool
}

type cachedVersion struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Version string `json:"version"`
}

// OpenVersionCache reads the cache stored at path; a missing or unreadable
// file gives an empty cache that Save writes there. With path "" the cache
// lives only in memory.
func OpenVersionCache(path string) *VersionCache {
	c := &VersionCache{path: path, m: map[string]cachedVersion{}}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &c.m)
	}
	return c
}

func identity(path string) (cachedVersion, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return cachedVersion{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return cachedVersion{}, false
	}
	return cachedVersion{Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}, true
}

// Version returns the emulator's version from the cache when the file is
// the one that was asked before, and otherwise runs it (see [Version]) and
// remembers the answer.
func (c *VersionCache) Version(ctx context.Context, path string) (string, error) {
	if c == nil {
		return Version(ctx, path)
	}
	id, ok := identity(path)
	if ok {
		c.mu.Lock()
		v, hit := c.m[path]
		c.mu.Unlock()
		if hit && v.Dev == id.Dev && v.Ino == id.Ino && v.Size == id.Size && v.ModTime == id.ModTime {
			return v.Version, nil
		}
	}
	ver, err := Version(ctx, path)
	if err != nil || !ok {
		return ver, err
	}
	id.Version = ver
	c.mu.Lock()
	c.m[path] = id
	c.dirty = true
	c.mu.Unlock()
	return ver, nil
}

// Save writes the cache back if it changed. The file is replaced
// atomically; its directory is created.
func (c *VersionCache) Save() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty || c.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(c.m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return err
	}
	c.dirty = false
	return nil
}
