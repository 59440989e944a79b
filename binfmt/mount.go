package binfmt

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"mabd/internal/safefile"
)

// DefaultDir is where the host's binfmt_misc is mounted.
const DefaultDir = "/proc/sys/fs/binfmt_misc"

// magicFS is binfmt_misc's statfs type (BINFMTFS_MAGIC).
const magicFS = 0x42494e4d

// Errors that Mount's methods wrap, for errors.Is.
var (
	// ErrNotMounted: the directory is not a binfmt_misc mount.
	ErrNotMounted = errors.New("binfmt_misc is not mounted")
	// ErrExists: an entry of that name is already registered.
	ErrExists = errors.New("an entry of that name exists")
)

// Mount is one mounted binfmt_misc instance. Its zero value is unusable;
// a Mount with Dir "" means DefaultDir.
type Mount struct {
	Dir string
}

func (m Mount) dir() string {
	if m.Dir == "" {
		return DefaultDir
	}
	return m.Dir
}

// Path returns the path of a file in the mount.
func (m Mount) Path(name string) string { return filepath.Join(m.dir(), name) }

// Mounted reports whether dir is a binfmt_misc mount.
func Mounted(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return st.Type == magicFS, nil
}

// Check returns nil when m is a binfmt_misc mount, and otherwise an error
// wrapping ErrNotMounted that says how to mount it.
func (m Mount) Check() error {
	ok, err := Mounted(m.dir())
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: %w: mount it with `mount -t binfmt_misc binfmt_misc %s` (or run `mabd install`, which does)", m.dir(), ErrNotMounted, m.dir())
	}
	return nil
}

// MountPointError says why binfmt_misc may not be mounted on a
// directory: it is not a directory, or it holds files that the mount would
// hide. It wraps ErrNotMounted.
type MountPointError struct {
	Dir    string
	Reason string
}

func (e *MountPointError) Error() string {
	return fmt.Sprintf("%s: %s: binfmt_misc is mounted only on an empty directory or where it is mounted already", e.Dir, e.Reason)
}

func (e *MountPointError) Unwrap() error { return ErrNotMounted }

// CheckMountPoint returns nil when dir is a binfmt_misc mount, or an empty
// directory that one may be mounted on without hiding anything. Otherwise
// it returns a *MountPointError (not a directory, not empty, does not
// exist) or the error of reading it.
func CheckMountPoint(dir string) error {
	if dir == "" {
		return &MountPointError{Dir: `""`, Reason: "no directory given"}
	}
	ok, err := Mounted(dir)
	if err != nil || ok {
		return err
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &MountPointError{Dir: dir, Reason: "does not exist"}
	case err != nil:
		return err
	case !fi.IsDir():
		return &MountPointError{Dir: dir, Reason: "is not a directory"}
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return &fs.PathError{Op: "read", Path: dir, Err: err}
	}
	if len(names) > 0 {
		return &MountPointError{Dir: dir, Reason: "holds files (" + names[0] + ", …) that a mount would hide"}
	}
	return nil
}

// EnsureMounted mounts binfmt_misc on dir unless it is mounted already, and
// reports whether it did. It mounts only on an empty directory (see
// [CheckMountPoint]) and never unmounts anything.
func EnsureMounted(dir string) (mounted bool, err error) {
	ok, err := Mounted(dir)
	if err != nil || ok {
		return false, err
	}
	if err := CheckMountPoint(dir); err != nil {
		return false, err
	}
	if err := unix.Mount("binfmt_misc", dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return false, &fs.PathError{Op: "mount binfmt_misc on", Path: dir, Err: err}
	}
	return true, nil
}

// write writes value to a file of the mount in one write, as the kernel
// requires: an open, a write and a close, nothing more (an install writes
// 33 of them).
func (m Mount) write(op, name, value string) error {
	p := m.Path(name)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == nil {
		_, err = unix.Write(fd, []byte(value))
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return &fs.PathError{Op: op, Path: p, Err: err}
	}
	return nil
}

// maxFileBytes bounds what is read from a file of the mount: the kernel
// prints an entry into one page.
const maxFileBytes = 4096

// readFile reads the file of the mount at p, at most maxFileBytes, with an
// open, an fstat, reads and a close (status and install read every
// entry). The errors are *fs.PathError, as os.ReadFile's.
func readFile(p string) ([]byte, error) {
	b, err := safefile.Read(p, maxFileBytes, safefile.Options{})
	var tooLarge *safefile.TooLargeError
	if errors.As(err, &tooLarge) {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("larger than the %d bytes a binfmt_misc file may be", maxFileBytes)}
	}
	return b, err
}

// Register validates s and registers it. The kernel's refusals come back
// wrapped with what they most likely mean.
func (m Mount) Register(s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if _, err := os.Lstat(m.Path(s.Name)); err == nil {
		return &fs.PathError{Op: "register", Path: m.Path(s.Name), Err: ErrExists}
	}
	err := m.write("register "+s.Name+" in", "register", s.Line()+"\n")
	var pe *fs.PathError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	switch {
	case errors.Is(err, syscall.EEXIST):
		return &fs.PathError{Op: pe.Op, Path: pe.Path, Err: ErrExists}
	case errors.Is(err, syscall.ENOENT) && s.Flags.Has(FixBinary):
		return fmt.Errorf("%w: the F flag opens the interpreter %s now, and it does not exist", err, s.Interpreter)
	case errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: the kernel refused the line %q", err, s.Line())
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: registering handlers needs root (CAP_SYS_ADMIN in the mount's user namespace)", err)
	}
	return err
}

// Entry reads the entry called name. A missing entry gives an error that
// wraps fs.ErrNotExist.
func (m Mount) Entry(name string) (Entry, error) {
	if err := ValidName(name); err != nil {
		return Entry{}, err
	}
	b, err := readFile(m.Path(name))
	if err != nil {
		return Entry{}, err
	}
	return ParseEntry(name, b)
}

// Entries reads every entry of the mount, sorted by name.
func (m Mount) Entries() ([]Entry, error) {
	if err := m.Check(); err != nil {
		return nil, err
	}
	des, err := os.ReadDir(m.dir())
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if n := de.Name(); n == "register" || n == "status" {
			continue
		}
		e, err := m.Entry(de.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove unregisters the entry called name.
func (m Mount) Remove(name string) error { return m.entryWrite("remove", name, "-1") }

// Enable enables the entry called name.
func (m Mount) Enable(name string) error { return m.entryWrite("enable", name, "1") }

// Disable disables the entry called name; the kernel then skips it.
func (m Mount) Disable(name string) error { return m.entryWrite("disable", name, "0") }

func (m Mount) entryWrite(op, name, v string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	return m.write(op, name, v)
}

// Enabled reads the facility's state from the status file.
func (m Mount) Enabled() (bool, error) {
	b, err := readFile(m.Path("status"))
	if err != nil {
		return false, err
	}
	switch s := strings.TrimSpace(string(b)); s {
	case "enabled":
		return true, nil
	case "disabled":
		return false, nil
	default:
		return false, fmt.Errorf("%s: unexpected %q", m.Path("status"), s)
	}
}

// SetEnabled enables or disables the whole facility.
func (m Mount) SetEnabled(on bool) error {
	if on {
		return m.write("enable", "status", "1")
	}
	return m.write("disable", "status", "0")
}

// RemoveAll unregisters every entry of the instance, whoever registered it.
func (m Mount) RemoveAll() error { return m.write("remove all entries", "status", "-1") }
