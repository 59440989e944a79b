package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	exact := filepath.Join(dir, "exact")
	if err := os.WriteFile(exact, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	var tooLarge *TooLargeError
	tests := []struct {
		name string
		path string
		opt  Options
		want string
		is   func(error) bool
	}{
		{"a small file", small, Options{}, "hello", nil},
		{"exactly the limit", exact, Options{}, "0123456789", nil},
		{"empty", empty, Options{}, "", nil},
		// Its size says 0: what is read past the size still counts.
		{"a /proc file longer than its size", "/proc/self/status", Options{}, "", func(err error) bool { return errors.As(err, &tooLarge) && tooLarge.Size == 11 }},
		{"over the limit", big, Options{}, "", func(err error) bool { return errors.As(err, &tooLarge) && tooLarge.Limit == 10 }},
		{"a FIFO", fifo, Options{}, "", func(err error) bool { return errors.Is(err, ErrNotRegular) }},
		{"/dev/zero", zero, Options{}, "", func(err error) bool { return errors.Is(err, ErrNotRegular) }},
		{"a directory", dir, Options{}, "", func(err error) bool { return errors.Is(err, ErrNotRegular) }},
		{"a symlink", link, Options{}, "hello", nil},
		{"a symlink, not followed", link, Options{NoFollow: true}, "", func(err error) bool { return errors.Is(err, ErrNotRegular) }},
		{"missing", filepath.Join(dir, "nope"), Options{}, "", func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
	}
	if b, err := Read("/proc/self/status", 1<<20, Options{}); err != nil || !strings.HasPrefix(string(b), "Name:") || !strings.Contains(string(b), "\nPid:") {
		t.Fatalf("Read(/proc/self/status) = %q, %v; want it whole", b, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read(tt.path, 10, tt.opt)
			switch {
			case tt.is == nil && (err != nil || string(b) != tt.want):
				t.Fatalf("Read = %q, %v; want %q", b, err, tt.want)
			case tt.is != nil && (err == nil || !tt.is(err)):
				t.Fatalf("Read = %q, %v; want that error", b, err)
			}
		})
	}
}

// TestWriteConcurrent: writers of one file never fail on each other's
// temporary files, and leave none behind.
func TestWriteConcurrent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() { errs[i] = Write(p, []byte(strings.Repeat("y", i+1)), 0o640) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 1 {
		t.Fatalf("files left: %v", des)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
	if err := Write(filepath.Join(dir, "missing-dir", "f"), nil, 0o644); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}
