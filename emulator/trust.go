package emulator

import (
	"context"
	"fmt"
	"mabd/binfmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds the symlinks CheckTrusted follows, as the kernel's
// ELOOP limit does.
const maxSymlinks = 40

// CheckTrusted returns nil when path may be a binfmt_misc interpreter: an
// absolute path that leads to a regular file owned by root and not
// writable by everyone, through directories that are owned by root and not
// writable by everyone (unless sticky, like /tmp) — so that nobody but
// root can replace the emulator that the kernel runs for every program of
// its architecture, whoever runs that program. Symlinks on the way are
// followed one by one and everything they lead through is held to the same
// rules; a symlink itself must be root's only in a sticky directory (where
// its owner could replace it).
//
// The error says which file or directory is at fault, what is wrong with
// it, and how to fix it, e.g.
//
//	/tmp/x/qemu-aarch64 is writable by everyone (mode 0777): anyone could replace the emulator that runs every arm64 program; chmod o-w it or install qemu-user-static
func CheckTrusted(path string) error { return checkTrusted(path, 0) }

// CheckTrustedFor is [CheckTrusted] for an emulator that only programs of
// uid run (mabd exec): files and directories owned by uid are accepted as
// well as root's. For uid 0 it is CheckTrusted.
func CheckTrustedFor(path string, uid int) error { return checkTrusted(path, uid) }

// checkTrusted walks path from / one component at a time, as the kernel
// resolves it, checking everything it passes.
func checkTrusted(path string, uid int) error {
	if path == "" || !filepath.IsAbs(path) {
		return fmt.Errorf("emulator path %q is not absolute: the kernel would look for it relative to the working directory of every program it runs; give its absolute path", path)
	}
	c := trustCheck{given: path, uid: uid, role: emulatorRole(path)}
	st, err := c.lstat("/")
	if err != nil {
		return err
	}
	if err := c.dir("/", st, path); err != nil {
		return err
	}
	cur := "/" // resolved, no symlinks in it
	rest := splitPath(path)
	links := 0
	var last *syscall.Stat_t
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			last = nil
			continue
		}
		next := filepath.Join(cur, name)
		st, err := c.lstat(next)
		if err != nil {
			return err
		}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			if err := c.symlink(next, cur, st); err != nil {
				return err
			}
			links++
			if links > maxSymlinks {
				return fmt.Errorf("emulator %s: too many levels of symbolic links", path)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("emulator %s: %w", path, err)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(splitPath(target), rest...)
			last = nil
		case syscall.S_IFDIR:
			if err := c.dir(next, st, path); err != nil {
				return err
			}
			cur, last = next, st
		default:
			if len(rest) > 0 {
				return fmt.Errorf("emulator %s: %s is not a directory", path, next)
			}
			cur, last = next, st
		}
	}
	if last == nil || last.Mode&syscall.S_IFMT != syscall.S_IFREG {
		kind := "a directory"
		if last != nil && last.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			kind = "not a regular file"
		}
		return fmt.Errorf("%s is %s, not an emulator's executable: give the path of qemu-<arch>-static (install qemu-user-static)", c.name(cur), kind)
	}
	if !c.ownerOK(last) {
		return fmt.Errorf("%s is owned by uid %d, not %s: that user could replace %s; %s it or install qemu-user-static",
			c.name(cur), last.Uid, c.owners(), c.role, c.chown(""))
	}
	if last.Mode&0o002 != 0 {
		return fmt.Errorf("%s is writable by everyone (mode %04o): anyone could replace %s; chmod o-w it or install qemu-user-static",
			c.name(cur), last.Mode&0o7777, c.role)
	}
	return nil
}

type trustCheck struct {
	given string // the path as given
	uid   int    // besides root, the owner accepted
	role  string // "the emulator that runs every arm64 program"
}

func (c trustCheck) lstat(p string) (*syscall.Stat_t, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		if p == c.given {
			return nil, fmt.Errorf("emulator %w", err)
		}
		return nil, fmt.Errorf("emulator %s: %w", c.given, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("emulator %s: cannot read the owner of %s", c.given, p)
	}
	return st, nil
}

// name is the file p that the given path resolved to, saying so when it
// is not the path given.
func (c trustCheck) name(p string) string {
	if p == c.given {
		return p
	}
	return fmt.Sprintf("%s (which %s leads to)", p, c.given)
}

func (c trustCheck) ownerOK(st *syscall.Stat_t) bool {
	return st.Uid == 0 || int(st.Uid) == c.uid
}

func (c trustCheck) owners() string {
	if c.uid == 0 {
		return "root"
	}
	return fmt.Sprintf("root or you (uid %d)", c.uid)
}

// chown is the command that fixes an owner (opt: "-h " for a symlink).
func (c trustCheck) chown(opt string) string {
	if c.uid == 0 {
		return "chown " + opt + "root"
	}
	return fmt.Sprintf("chown %sroot (or %d)", opt, c.uid)
}

// dir checks a directory on the way: its owner may replace anything in
// it, and so may everyone when it is writable by everyone without the
// sticky bit.
func (c trustCheck) dir(p string, st *syscall.Stat_t, path string) error {
	if !c.ownerOK(st) {
		return fmt.Errorf("directory %s is owned by uid %d, not %s: that user could replace %s, %s; %s %s or install qemu-user-static",
			p, st.Uid, c.owners(), path, c.role, c.chown(""), p)
	}
	if st.Mode&0o002 != 0 && st.Mode&syscall.S_ISVTX == 0 {
		return fmt.Errorf("directory %s is writable by everyone (mode %04o) without the sticky bit: anyone could replace %s, %s; chmod o-w %s or install qemu-user-static",
			p, st.Mode&0o7777, path, c.role, p)
	}
	return nil
}

// symlink checks a symlink on the way: nobody can change one, but in a
// directory writable by everyone (sticky, or dir would have refused it)
// its owner can replace it.
func (c trustCheck) symlink(p, parent string, st *syscall.Stat_t) error {
	if c.ownerOK(st) {
		return nil
	}
	pst, err := c.lstat(parent)
	if err != nil {
		return err
	}
	if pst.Mode&0o002 != 0 {
		return fmt.Errorf("symlink %s is owned by uid %d, not %s, in the directory %s that everyone may write to (mode %04o): that user could point it at another program and replace %s; %s it or install qemu-user-static",
			p, st.Uid, c.owners(), parent, pst.Mode&0o7777, c.role, c.chown("-h "))
	}
	return nil
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// emulatorRole says what the file at path is for, from its name
// (qemu-<arch>[-static]): "the emulator that runs every arm64 program".
func emulatorRole(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), "-static")
	if name, ok := strings.CutPrefix(base, "qemu-"); ok {
		if a, err := binfmt.Lookup(name); err == nil {
			what := strings.TrimPrefix(a.Platform, "linux/")
			if what == "" {
				what = a.Name
			}
			return "the emulator that runs every " + what + " program"
		}
	}
	return "the emulator that runs every program it is registered for"
}

// FindTrusted is [FindTrustedWith] with a cache that lives for this call
// when withVersion is true, and none otherwise.
func FindTrusted(ctx context.Context, arches, dirs []string, withVersion bool) (found map[string]*Emulator, refused map[string]error, err error) {
	var versions *VersionCache
	if withVersion {
		versions, _ = LoadVersionCache("")
	}
	return FindTrustedWith(ctx, arches, dirs, versions)
}

// FindTrustedWith finds the emulator of each architecture in arches (QEMU
// names; duplicates are looked up once) in dirs (nil: [DefaultDirs]) as
// [Find] does, and sorts out those that must not be registered. found
// holds the emulators that may be, keyed by architecture; refused holds,
// keyed by architecture, why the one found for it may not:
//
//   - a file that cannot be an emulator: not an ELF executable (a shell
//     script) or unreadable, an [*UnusableError];
//   - an emulator that someone other than root could replace (see
//     [CheckTrusted]), refused before it ever runs;
//   - with a cache, an emulator of another architecture (qemu-arm-static
//     named qemu-aarch64-static), a [*WrongTargetError].
//
// An architecture with no emulator in dirs is in neither map.
//
// With a non-nil cache, each trusted emulator's version and target are
// read through it (see [VersionCache.Inspect]: a process start per
// emulator the cache does not know, concurrently, each bounded by ctx or
// [DefaultVersionTimeout]) and filled in. An emulator whose --version
// fails or cannot be parsed is still found, with Version and Target ""
// (so no P flag and no target check), and the reason is in err, which
// joins such warnings and invalid architecture names in the order of
// arches. With a nil cache nothing runs, and Version and Target stay "".
func FindTrustedWith(ctx context.Context, arches, dirs []string, versions *VersionCache) (found map[string]*Emulator, refused map[string]error, err error) {
	return find(ctx, arches, dirs, versions, CheckTrusted)
}
