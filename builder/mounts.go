package builder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo, reduced to what the supervisor
// needs.
type Mount struct {
	Point  string // where it is mounted, unescaped
	FSType string // "overlay", "proc", "binfmt_misc", …
	Source string
}

// ParseMountinfo parses the format of /proc/<pid>/mountinfo (see proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Octal escapes (\040 for a space) in paths are decoded.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, line)
		}
		out = append(out, Mount{Point: unescapeOctal(f[4]), FSType: g[0], Source: unescapeOctal(g[1])})
	}
	return out, sc.Err()
}

// unescapeOctal decodes the \ooo escapes the kernel writes for space, tab,
// newline and backslash.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// MountsUnder returns the mounts of this process's mount namespace at or
// below dir, deepest first (the order to unmount them in). binfmt_misc
// mounts are never returned: unmounting the last one destroys its handlers.
func MountsUnder(dir string) ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	all, err := ParseMountinfo(f)
	if err != nil {
		return nil, err
	}
	return filterUnder(all, dir), nil
}

// filterUnder keeps the mounts at or below dir, minus binfmt_misc, deepest
// (then latest) first.
func filterUnder(all []Mount, dir string) []Mount {
	dir = filepath.Clean(dir)
	var out []Mount
	for i := len(all) - 1; i >= 0; i-- { // later mounts are on top: unmount them first
		m := all[i]
		if m.FSType == "binfmt_misc" {
			continue
		}
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i].Point, "/") > strings.Count(out[j].Point, "/")
	})
	return out
}

// UnmountUnder unmounts every mount strictly below dir (not dir itself, which
// may be a mount the administrator made for the builder) except binfmt_misc
// ones, deepest first, lazily when a plain unmount fails. It returns what it
// unmounted; the error lists what it could not.
func UnmountUnder(dir string) ([]string, error) {
	ms, err := MountsUnder(dir)
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var done []string
	var errs []error
	for _, m := range ms {
		if m.Point == dir {
			continue
		}
		err := unix.Unmount(m.Point, 0)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			err = unix.Unmount(m.Point, unix.MNT_DETACH)
		}
		switch {
		case err == nil:
			done = append(done, m.Point)
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// already gone (a parent's unmount took it along)
		default:
			errs = append(errs, fmt.Errorf("unmount %s (%s): %w", m.Point, m.FSType, err))
		}
	}
	return done, errors.Join(errs...)
}
