package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mabd/internal/safefile"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// Bounds of the file a [VersionCache] is kept in. With the 33 emulators of
// qemu-user-static in two directories a cache holds 66 entries, about 12
// KiB.
const (
	// MaxVersionCacheBytes is the largest file [LoadVersionCache] reads;
	// a larger one is ignored (and replaced by [VersionCache.Save]).
	MaxVersionCacheBytes = 1 << 20
	// MaxVersionCacheEntries is how many emulators [VersionCache.Save]
	// keeps: those asked about since the cache was loaded first.
	MaxVersionCacheEntries = 256
)

// ErrNotRegularFile is matched (via [errors.Is]) by the errors of
// [LoadVersionCache] and [VersionCache.Save] when the cache's path is a
// symlink, a directory or any other file that is not a regular file: it
// is neither read nor replaced.
var ErrNotRegularFile = safefile.ErrNotRegular

// VersionCache remembers what emulators say with --version (see
// [Inspect]: their version and their target) by file identity (device,
// inode, size, modification and change time), so that reading it costs a
// stat instead of a process start. `mabd install` and the daemon keep one
// in their state directory: with 33 emulators, asking each for --version
// was most of an install's time.
//
// The file is JSON, an object keyed by the emulator's path. It is read
// once, by [LoadVersionCache], up to [MaxVersionCacheBytes]; [Save] writes
// it back only when something changed, without the entries whose file is
// gone or changed and with at most [MaxVersionCacheEntries], to a new
// file renamed over the old one.
//
// A nil *VersionCache asks every time. Its methods are safe for concurrent
// use.
type VersionCache struct {
	path string
	mu   sync.Mutex
	m    map[string]cachedVersion
	// used are the paths asked about since the cache was loaded.
	used map[string]bool
	// dirty says m changed since it was read, or the file must be rewritten.
	dirty bool
	// cachedOnly: Inspect answers from the cache only (see CachedOnly).
	cachedOnly bool
}

// ErrNotCached is the error of [VersionCache.Inspect] for an emulator
// the cache does not know, when it may not ask (see
// [VersionCache.CachedOnly]).
var ErrNotCached = errors.New("version not known yet")

// CachedOnly returns a cache that answers from what c knows and never
// starts an emulator: for what it does not know, Inspect fails with
// [ErrNotCached]. A health check (`mabd status`) reads versions so.
// Saving it saves nothing. A nil c gives a cache that knows nothing.
func (c *VersionCache) CachedOnly() *VersionCache {
	out := &VersionCache{m: map[string]cachedVersion{}, used: map[string]bool{}, cachedOnly: true}
	if c != nil {
		c.mu.Lock()
		for p, v := range c.m {
			out.m[p] = v
		}
		c.mu.Unlock()
	}
	return out
}

// cachedVersion is one entry: the identity of the file the answer came
// from, and the answer. Entries written before targets were cached have
// no target and count as misses.
type cachedVersion struct {
	FileID
	Version string `json:"version"`
	Target  string `json:"target"`
	// Static is what [IsStatic] answered for the file; nil when not asked.
	Static *bool `json:"static,omitempty"`
}

// sameFile reports whether two entries describe the same file contents.
func (v cachedVersion) sameFile(w cachedVersion) bool { return v.FileID == w.FileID }

// LoadVersionCache reads the cache stored at path. It always returns a
// usable cache; the error, when not nil, says why the stored file was
// ignored and the cache starts empty: the file is larger than
// [MaxVersionCacheBytes], is not valid JSON, cannot be read, or is not a
// regular file (matching [ErrNotRegularFile]; [VersionCache.Save] then
// leaves it alone too). It is a warning for the caller to show, not a
// failure. A missing file is no error: [VersionCache.Save] creates it.
// With path "" the cache lives only in memory.
func LoadVersionCache(path string) (*VersionCache, error) {
	c := &VersionCache{path: path, m: map[string]cachedVersion{}, used: map[string]bool{}}
	if path == "" {
		return c, nil
	}
	m, err := readVersionCache(path)
	switch {
	case err == nil:
		c.m = m
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case !errors.Is(err, ErrNotRegularFile):
		// Replace the file that was ignored, even if nothing is asked.
		c.dirty = true
	}
	if err != nil {
		return c, &fs.PathError{Op: "load emulator version cache", Path: path, Err: fmt.Errorf("%w: ignored, versions are read again", err)}
	}
	return c, nil
}

// OpenVersionCache is [LoadVersionCache] without the reason a stored file
// was ignored.
//
// Deprecated: use LoadVersionCache, whose error is a warning to show.
func OpenVersionCache(path string) *VersionCache {
	c, _ := LoadVersionCache(path)
	return c
}

// readVersionCache reads and decodes the file at path, without following
// a symlink and without blocking on a FIFO.
func readVersionCache(path string) (map[string]cachedVersion, error) {
	b, err := safefile.Read(path, MaxVersionCacheBytes, safefile.Options{NoFollow: true})
	var tooLarge *safefile.TooLargeError
	if errors.As(err, &tooLarge) {
		return nil, fmt.Errorf("%d bytes, larger than the %d a version cache may be", tooLarge.Size, MaxVersionCacheBytes)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	var m map[string]cachedVersion
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not a version cache: %w", err)
	}
	if m == nil {
		m = map[string]cachedVersion{}
	}
	return m, nil
}

// FileID identifies a file's contents as far as stat(2) can: the same
// device, inode, size, modification and change time. A file replaced
// (renamed over, as package managers do) or written to gets another.
type FileID struct {
	Dev        uint64 `json:"dev"`
	Ino        uint64 `json:"ino"`
	Size       int64  `json:"size"`
	ModTime    int64  `json:"mtime_ns"`
	ChangeTime int64  `json:"ctime_ns"`
}

// StatFileID returns the FileID of the file at path (symlinks followed);
// false when it cannot be stat'ed.
func StatFileID(path string) (FileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileID{}, false
	}
	return fileIDOf(fi)
}

// fileIDOf is the FileID of what fi describes.
func fileIDOf(fi fs.FileInfo) (FileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{}, false
	}
	return FileID{
		Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(), ModTime: fi.ModTime().UnixNano(),
		ChangeTime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
	}, true
}

// identity returns the identity of the file at path (symlinks followed).
func identity(path string) (cachedVersion, bool) {
	id, ok := StatFileID(path)
	return cachedVersion{FileID: id}, ok
}

// identityOr is identity(path), or the identity the caller stat'ed
// already when it is not zero.
func identityOr(path string, known FileID) (cachedVersion, bool) {
	if known != (FileID{}) {
		return cachedVersion{FileID: known}, true
	}
	return identity(path)
}

// Inspect is the package's [Inspect] — the emulator's version and target
// — answered from the cache when the file at path is the one that was
// asked before, and otherwise by running it once and remembering the
// answer. Failed runs are not remembered.
func (c *VersionCache) Inspect(ctx context.Context, path string) (version, target string, err error) {
	return c.inspect(ctx, path, FileID{})
}

// inspect is Inspect for the file at path whose identity the caller
// stat'ed already (known; zero: not yet).
func (c *VersionCache) inspect(ctx context.Context, path string, known FileID) (version, target string, err error) {
	if c == nil {
		return Inspect(ctx, path)
	}
	id, ok := identityOr(path, known)
	if ok {
		c.mu.Lock()
		v, hit := c.m[path]
		c.used[path] = true
		c.mu.Unlock()
		if hit && v.Target != "" && v.sameFile(id) {
			return v.Version, v.Target, nil
		}
	}
	if c.cachedOnly {
		return "", "", fmt.Errorf("%s: %w", path, ErrNotCached)
	}
	version, target, err = Inspect(ctx, path)
	if err != nil || !ok {
		return version, target, err
	}
	id.Version, id.Target = version, target
	c.mu.Lock()
	if v, hit := c.m[path]; hit && v.sameFile(id) {
		id.Static = v.Static
	}
	c.m[path] = id
	c.dirty = true
	c.mu.Unlock()
	return version, target, nil
}

// static is [IsStatic] for the file at path, answered from the cache when
// it is the file that was asked before (on a warm cache an install reads
// no ELF header). known is its identity when the caller stat'ed it
// already; zero: not yet. Errors are not cached.
func (c *VersionCache) static(path string, known FileID) (bool, error) {
	if c == nil {
		return IsStatic(path)
	}
	id, ok := identityOr(path, known)
	if ok {
		c.mu.Lock()
		v, hit := c.m[path]
		c.mu.Unlock()
		if hit && v.Static != nil && v.sameFile(id) {
			return *v.Static, nil
		}
	}
	static, err := IsStatic(path)
	if err != nil || !ok {
		return static, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, hit := c.m[path]; hit && v.sameFile(id) {
		id = v
	}
	id.Static = &static
	c.m[path] = id
	c.used[path] = true
	if !c.cachedOnly {
		c.dirty = true
	}
	return static, nil
}

// Save writes the cache back if it changed, creating its directory. It
// drops the entries whose file no longer exists or is no longer the file
// the entry describes, and keeps at most [MaxVersionCacheEntries] (those
// asked about since the cache was loaded first). The new contents go to a
// temporary file of a unique name in the same directory, which is renamed
// over the old file, or removed if anything fails. A path that is not a
// regular file (a symlink, a directory) is left alone: the error matches
// [ErrNotRegularFile].
func (c *VersionCache) Save() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty || c.path == "" {
		return nil
	}
	fail := func(err error) error {
		return &fs.PathError{Op: "save emulator version cache", Path: c.path, Err: err}
	}
	if err := checkReplaceable(c.path); err != nil {
		return fail(err)
	}
	m := c.pruned()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return fail(err)
	}
	if err := safefile.Write(c.path, b, 0o644); err != nil {
		return fail(err)
	}
	c.m = m
	c.dirty = false
	return nil
}

// checkReplaceable refuses a path that exists and is not a regular file
// (a symlink, a directory): mabd's state files are replaced only when
// they are files, never through a link.
func checkReplaceable(path string) error {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%w (%v): left alone", ErrNotRegularFile, fi.Mode().Type())
	}
	return nil
}

// pruned returns the entries whose file is still the one they describe,
// at most MaxVersionCacheEntries: those used since loading first, then
// the others in the order of their paths.
func (c *VersionCache) pruned() map[string]cachedVersion {
	paths := make([]string, 0, len(c.m))
	for p := range c.m {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		if c.used[paths[i]] != c.used[paths[j]] {
			return c.used[paths[i]]
		}
		return paths[i] < paths[j]
	})
	out := make(map[string]cachedVersion, min(len(paths), MaxVersionCacheEntries))
	for _, p := range paths {
		if len(out) == MaxVersionCacheEntries {
			break
		}
		v := c.m[p]
		if id, ok := identity(p); ok && v.Target != "" && v.sameFile(id) {
			out[p] = v
		}
	}
	return out
}
