// Package safefile reads and writes the small files mabd keeps (its state,
// binfmt.d files, caches, configuration) without trusting what is on disk:
// a read takes only a regular file, without blocking on a FIFO and never
// more than a limit; a write replaces the file atomically through a
// temporary file of a unique name, removed on failure, so that concurrent
// writers never see each other's halves.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRegular is matched (errors.Is) by the error of reading something
// that is not a regular file: a FIFO, a device, a directory.
var ErrNotRegular = errors.New("not a regular file")

// TooLargeError says a file is larger than the limit it was read with.
type TooLargeError struct {
	Path  string
	Size  int64 // at least this many bytes
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: %d bytes or more, larger than the %d it may be", e.Path, e.Size, e.Limit)
}

// Options tune Read.
type Options struct {
	// NoFollow refuses a symlink (ErrNotRegular) instead of reading what
	// it points to.
	NoFollow bool
}

// Read returns the content of the regular file at path, of at most limit
// bytes. It opens without blocking (a FIFO is refused, not waited on) and
// reads through the limit even when the size the file reports is small (a
// file that grows, or /proc). Errors are *fs.PathError (wrapping
// ErrNotRegular for a FIFO, device or directory, fs.ErrNotExist for a
// missing file) or *TooLargeError.
func Read(path string, limit int64, opt Options) ([]byte, error) {
	// open, fstat, read, close: nothing else (status reads a file of
	// every binfmt.d directory for each of its entries).
	flags := syscall.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY | syscall.O_CLOEXEC
	if opt.NoFollow {
		flags |= syscall.O_NOFOLLOW
	}
	fd, err := openRetry(path, flags)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) && opt.NoFollow {
			return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("a symlink, %w", ErrNotRegular)}
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%v)", ErrNotRegular, fileType(st.Mode))}
	}
	if st.Size > limit {
		return nil, &TooLargeError{Path: path, Size: st.Size, Limit: limit}
	}
	// The file may grow under us: read until the end, but never more
	// than limit+1 bytes, whatever its size said. A file of size 0
	// (/proc, binfmt_misc, sysfs) says nothing of its size: start with
	// room for a small one, so that one read takes it whole.
	b := make([]byte, min(max(st.Size, procGuess), limit)+1)
	n := 0
	for {
		if n == len(b) {
			if int64(n) > limit {
				return nil, &TooLargeError{Path: path, Size: int64(n), Limit: limit}
			}
			b = append(b, make([]byte, min(int64(n), limit+1-int64(n)))...)
		}
		k, err := syscall.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if k == 0 {
			return b[:n], nil
		}
		n += k
	}
}

// procGuess is how much Read makes room for at first when a file reports
// a size smaller: a binfmt_misc entry (about 250 bytes) or a boot id is
// then read by one read(2) instead of one per doubling from a byte.
const procGuess = 511

// openRetry is open(2), again when a signal interrupts it.
func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := syscall.Open(path, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// fileType names the type of a file mode as fs.FileMode prints it.
func fileType(mode uint32) fs.FileMode {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return fs.ModeDir
	case syscall.S_IFLNK:
		return fs.ModeSymlink
	case syscall.S_IFIFO:
		return fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		return fs.ModeSocket
	case syscall.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// Write replaces the file at path with b, with the permission bits perm:
// it writes a temporary file of a unique name in path's directory, syncs
// it and renames it over path; on failure the temporary file is removed and
// path is left as it was.
func Write(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}
