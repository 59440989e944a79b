package binfmt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
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

// Persist writes s to dir/<name>.conf in systemd's binfmt.d format, so that
// systemd-binfmt registers it at boot. The file is replaced atomically.
func Persist(dir string, s Spec) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	p := PersistPath(dir, s.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	body := persistHeader + "\n" + s.Line() + "\n"
	if old, err := os.ReadFile(p); err == nil && string(old) == body {
		return p, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+s.Name+".conf.*")
	if err != nil {
		return "", err
	}
	_, err = tmp.WriteString(body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("persist %s: %w", p, err)
	}
	return p, nil
}

// Unpersist removes dir/<name>.conf if mabd wrote it, and reports whether
// it removed it. A file someone else wrote is left alone (unless force).
func Unpersist(dir, name string, force bool) (bool, error) {
	p := PersistPath(dir, name)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !force && !bytes.HasPrefix(b, []byte(persistHeader)) {
		return false, fmt.Errorf("%s was not written by mabd: left alone (use --force to remove it)", p)
	}
	if err := os.Remove(p); err != nil {
		return false, err
	}
	return true, nil
}

// ReadConf reads the register lines of a binfmt.d file: one per line,
// blank lines and lines starting with '#' or ';' skipped. A bad line is an
// error naming the file and line.
func ReadConf(path string) ([]Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Spec
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		s, err := Parse(l)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}
