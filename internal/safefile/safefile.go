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
	"io"
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
	flags := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
	if opt.NoFollow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) && opt.NoFollow {
			return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("a symlink, %w", ErrNotRegular)}
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%v)", ErrNotRegular, fi.Mode().Type())}
	}
	if fi.Size() > limit {
		return nil, &TooLargeError{Path: path, Size: fi.Size(), Limit: limit}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Path: path, Size: int64(len(b)), Limit: limit}
	}
	return b, nil
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
