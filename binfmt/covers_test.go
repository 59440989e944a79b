package binfmt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mabd/binfmt"
)

// TestCovers: an entry covers an architecture when it takes every program
// the table's spec takes. Debian's mips entries check byte 8
// (EI_ABIVERSION) with 0xfe and so do not; its aarch64 entry does; a
// wider mask does; another machine does not.
func TestCovers(t *testing.T) {
	arch := func(n string) binfmt.Arch {
		a, ok := binfmt.ArchByName(n)
		if !ok {
			t.Fatalf("no %s in the table", n)
		}
		return a
	}
	aarch64, mips := arch("aarch64"), arch("mips")
	want := func(a binfmt.Arch) binfmt.Spec { return a.Spec("/usr/bin/qemu-"+a.Name+"-static", binfmt.FixBinary) }
	wider := want(aarch64)
	wider.Mask = append([]byte(nil), wider.Mask...)
	wider.Mask[7] = 0 // already 0; also free EI_VERSION
	wider.Mask[6] = 0
	shorter := want(aarch64)
	shorter.Magic, shorter.Mask = shorter.Magic[:18], shorter.Mask[:18]
	debMips := want(mips)
	debMips.Mask = append([]byte(nil), debMips.Mask...)
	debMips.Mask[8] = 0xfe
	other := want(arch("riscv64"))
	tests := []struct {
		name    string
		entry   binfmt.Spec
		arch    binfmt.Arch
		covers  bool
		offset  int
		differs bool
	}{
		{"the table's own", want(aarch64), aarch64, true, 0, false},
		{"a wider mask", wider, aarch64, true, 0, false},
		{"a shorter magic (takes more files)", shorter, aarch64, true, 0, false},
		{"Debian's mips mask", debMips, mips, false, 8, false},
		{"another machine", other, aarch64, false, 18, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, n := tt.entry.Covers(want(tt.arch))
			if ok != tt.covers {
				t.Fatalf("Covers = %v, %+v; want %v", ok, n, tt.covers)
			}
			if ok {
				return
			}
			if n == nil || n.Offset != tt.offset || n.Differs != tt.differs {
				t.Fatalf("narrowing %+v; want offset %d, differs %v", n, tt.offset, tt.differs)
			}
		})
	}
}

// TestDebianMipsNarrowing reads Debian's own files: every mips-family
// entry is narrower than the table at byte 8, every other one covers it.
func TestDebianMipsNarrowing(t *testing.T) {
	files, _ := filepath.Glob("/usr/lib/binfmt.d/qemu-*.conf")
	if len(files) == 0 {
		t.Fatal("no /usr/lib/binfmt.d/qemu-*.conf: install qemu-user-static (make deps)")
	}
	for _, f := range files {
		specs, err := binfmt.ReadConf(f)
		if err != nil || len(specs) != 1 {
			t.Fatalf("%s: %v, %d specs", f, err, len(specs))
		}
		a, ok := binfmt.ArchByName(specs[0].Name)
		if !ok {
			t.Fatalf("%s: %s is not in the table", f, specs[0].Name)
		}
		ok, n := specs[0].Covers(a.Spec("/x", 0))
		mipsFamily := strings.HasPrefix(a.Name, "mips")
		switch {
		case mipsFamily && (ok || n.Offset != 8 || n.Extra != 0xfe):
			t.Errorf("%s: Covers = %v, %+v; want a narrowing at byte 8 of 0xfe", f, ok, n)
		case !mipsFamily && !ok:
			t.Errorf("%s: does not cover the table: %+v", f, n)
		}
	}
}

// TestNoArchSelectsAnother: every spec of the table takes its own
// architecture's header and no other's, so an entry that takes two is
// wrong by construction.
func TestNoArchSelectsAnother(t *testing.T) {
	for _, a := range binfmt.Arches() {
		s := a.Spec("/x", 0)
		for _, o := range binfmt.Arches() {
			if got := s.Matches(o.Magic); got != (o.Name == a.Name) {
				t.Errorf("%s matches the magic of %s: %v", a.Name, o.Name, got)
			}
		}
	}
}

// TestCheckMountPoint: binfmt_misc goes only on an empty directory (or
// where it is already); anything else is refused before mounting, so no
// file is ever hidden.
func TestCheckMountPoint(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir, says string
	}{
		{"", "no directory"},
		{"/etc", "holds files"},
		{full, "holds files (keep"},
		{file, "not a directory"},
		{filepath.Join(full, "nope"), "does not exist"},
	}
	for _, tt := range tests {
		err := binfmt.CheckMountPoint(tt.dir)
		var mp *binfmt.MountPointError
		if !errors.As(err, &mp) || !strings.Contains(err.Error(), tt.says) || !errors.Is(err, binfmt.ErrNotMounted) {
			t.Errorf("CheckMountPoint(%q) = %v; want a MountPointError saying %q", tt.dir, err, tt.says)
		}
		if tt.dir == "/etc" || mp == nil {
			continue // never risk the host's /etc: CheckMountPoint refusing it is enough
		}
		if mounted, err := binfmt.EnsureMounted(tt.dir); mounted || err == nil {
			t.Errorf("EnsureMounted(%q) = %v, %v; want a refusal", tt.dir, mounted, err)
		}
	}
	if err := binfmt.CheckMountPoint(t.TempDir()); err != nil {
		t.Errorf("an empty directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(full, "keep")); err != nil {
		t.Errorf("the file under the refused mount point: %v", err)
	}
}
