package binfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"mabd/internal/safefile"
	"os"
	"path/filepath"
	"strings"
)

// DefaultPersistDir is where systemd-binfmt reads the administrator's
// handlers at boot; a file there overrides one of the same name in
// /usr/lib/binfmt.d.
const DefaultPersistDir = "/etc/binfmt.d"

// persistHeader marks the files mabd writes, so that it removes only those.
const persistHeader = "# Written by mabd; `mabd uninstall` removes it."

// PersistPath returns the binfmt.d file that holds the spec called name.
func PersistPath(dir, name string) string {
	if dir == "" {
		dir = DefaultPersistDir
	}
	return filepath.Join(dir, name+".conf")
}

// ForeignFileError is a binfmt.d file that mabd did not write (it lacks
// mabd's header line): Persist does not overwrite it and Unpersist does
// not remove it.
type ForeignFileError struct{ Path string }

func (e *ForeignFileError) Error() string {
	return e.Path + " was not written by mabd: left alone"
}

// written reads the file at p, if it exists, and reports whether mabd
// wrote it.
func written(p string) (body []byte, exists, ours bool, err error) {
	b, err := safefile.Read(p, maxConf, safefile.Options{})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, false, nil
	case err != nil:
		return nil, true, false, err
	}
	return b, true, bytes.HasPrefix(b, []byte(persistHeader)), nil
}

// Persist writes s to dir/<name>.conf in systemd's binfmt.d format, so that
// systemd-binfmt registers it at boot. The file is replaced atomically,
// and only if mabd wrote it: someone else's file of that name is left
// alone with a *ForeignFileError.
func Persist(dir string, s Spec) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	p := PersistPath(dir, s.Name)
	body := persistHeader + "\n" + s.Line() + "\n"
	old, exists, ours, err := written(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("persist %s: %w", p, err)
	case exists && !ours:
		return "", &ForeignFileError{Path: p}
	case exists && string(old) == body:
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("persist %s: %w", p, err)
	}
	if err := safefile.Write(p, []byte(body), 0o644); err != nil {
		return "", fmt.Errorf("persist %s: %w", p, err)
	}
	return p, nil
}

// Unpersist removes dir/<name>.conf if mabd wrote it, and reports whether
// it removed it. A file someone else wrote is never removed: it is left
// alone with a *ForeignFileError.
func Unpersist(dir, name string) (bool, error) {
	p := PersistPath(dir, name)
	_, exists, ours, err := written(p)
	switch {
	case err != nil:
		return false, err
	case !exists:
		return false, nil
	case !ours:
		return false, &ForeignFileError{Path: p}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// maxConf bounds a binfmt.d file mabd reads: the kernel takes lines of at
// most 1920 bytes, and such files hold a few of them.
const maxConf = 1 << 20

// ReadConf reads the register lines of a binfmt.d file: one per line,
// blank lines and lines starting with '#' or ';' skipped. A bad line is an
// error naming the file and line. The file must be a regular file of at
// most 1 MiB.
func ReadConf(path string) ([]Spec, error) {
	b, err := safefile.Read(path, maxConf, safefile.Options{})
	if err != nil {
		return nil, err
	}
	var out []Spec
	for n, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		s, err := Parse(l)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// WrittenByMabd reports whether the binfmt.d file at p is one mabd wrote
// (it starts with mabd's header).
func WrittenByMabd(p string) bool {
	_, _, ours, err := written(p)
	return err == nil && ours
}
