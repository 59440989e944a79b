package binfmt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"mabd/binfmt"
)

// TestPersistOnlyOwnFiles: mabd writes and removes only the binfmt.d files
// it wrote; an administrator's file of the same name is never overwritten
// nor removed.
func TestPersistOnlyOwnFiles(t *testing.T) {
	a, _ := binfmt.ArchByName("aarch64")
	s := a.Spec("/usr/bin/qemu-aarch64-static", binfmt.FixBinary)
	t.Run("own file", func(t *testing.T) {
		dir := t.TempDir()
		p, err := binfmt.Persist(dir, s)
		if err != nil {
			t.Fatal(err)
		}
		if !binfmt.WrittenByMabd(p) {
			t.Fatalf("%s: not marked as mabd's", p)
		}
		specs, err := binfmt.ReadConf(p)
		if err != nil || len(specs) != 1 || !specs[0].Equal(s) {
			t.Fatalf("ReadConf = %v, %v", specs, err)
		}
		if _, err := binfmt.Persist(dir, s); err != nil {
			t.Fatalf("second Persist: %v", err)
		}
		removed, err := binfmt.Unpersist(dir, s.Name)
		if !removed || err != nil {
			t.Fatalf("Unpersist = %v, %v", removed, err)
		}
		if removed, err := binfmt.Unpersist(dir, s.Name); removed || err != nil {
			t.Fatalf("Unpersist of a missing file = %v, %v", removed, err)
		}
		if des, _ := os.ReadDir(dir); len(des) != 0 {
			t.Fatalf("left behind: %v", des)
		}
	})
	t.Run("administrator's file", func(t *testing.T) {
		dir := t.TempDir()
		p := binfmt.PersistPath(dir, s.Name)
		admin := "# my own\n" + s.Line() + "\n"
		if err := os.WriteFile(p, []byte(admin), 0o644); err != nil {
			t.Fatal(err)
		}
		var foreign *binfmt.ForeignFileError
		if _, err := binfmt.Persist(dir, s); !errors.As(err, &foreign) || foreign.Path != p {
			t.Fatalf("Persist over it = %v; want a ForeignFileError", err)
		}
		if removed, err := binfmt.Unpersist(dir, s.Name); removed || !errors.As(err, &foreign) {
			t.Fatalf("Unpersist = %v, %v; want a ForeignFileError", removed, err)
		}
		if b, _ := os.ReadFile(p); string(b) != admin {
			t.Fatalf("the administrator's file changed: %q", b)
		}
		if des, _ := os.ReadDir(dir); len(des) != 1 {
			t.Fatalf("files in %s: %v", dir, des)
		}
	})
}

// TestReadConfBounded: a binfmt.d file must be a regular file of sane
// size; a FIFO or /dev/zero is refused at once instead of hanging or
// eating memory.
func TestReadConfBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", 2<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.conf")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.conf")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{big, zero, fifo} {
		if _, err := binfmt.ReadConf(p); err == nil {
			t.Errorf("ReadConf(%s) accepted it", p)
		}
	}
}
