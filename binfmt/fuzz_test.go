package binfmt

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedLines are register lines from real sources: Debian's binfmt.d files
// on this machine, mabd's own table, and odd forms the kernel accepts.
func seedLines(f *testing.F) {
	files, _ := filepath.Glob("/usr/lib/binfmt.d/*.conf")
	for _, p := range files {
		fh, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, ":") {
				f.Add(l)
			}
		}
		fh.Close()
	}
	for _, a := range Arches() {
		f.Add(a.Spec("/usr/bin/qemu-"+a.Name+"-static", FixBinary|PreserveArgv0).Line())
	}
	for _, l := range []string{":py:E::py::/usr/bin/python3:POCF\n", "|a|M||a:b||/bin/true|", `:a:M:2:\\x41\x4:\xff\xff\xff\xff\xff:/i:`, ":a:M::x::/i:"} {
		f.Add(l)
	}
}

// FuzzParse checks that whatever Parse accepts is valid, formats to a line
// Parse reads back to the same Spec, and that Parse never panics.
func FuzzParse(f *testing.F) {
	seedLines(f)
	f.Fuzz(func(t *testing.T, line string) {
		s, err := Parse(line)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an invalid spec: %v", line, err)
		}
		if n := len(s.Line()); s.lineLen() != n {
			t.Fatalf("lineLen() of %q = %d, len(Line()) = %d", line, s.lineLen(), n)
		}
		again, err := Parse(s.Line())
		if err != nil {
			t.Fatalf("Parse(Line()) of %q: %v (line %q)", line, err, s.Line())
		}
		if !again.Equal(s) {
			t.Fatalf("round trip of %q:\n got %#v\nwant %#v", line, again, s)
		}
	})
}

// FuzzParseEntry checks that an entry ParseEntry accepts prints back
// (Text) to a text it reads to the same entry.
func FuzzParseEntry(f *testing.F) {
	files, _ := filepath.Glob("testdata/entries/*")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(filepath.Base(p), b)
		}
	}
	for _, a := range Arches() {
		f.Add(a.HandlerName(), []byte(Entry{Enabled: true, Spec: a.Spec("/usr/bin/qemu-"+a.Name, FixBinary)}.Text()))
	}
	f.Fuzz(func(t *testing.T, name string, text []byte) {
		e, err := ParseEntry(name, text)
		if err != nil {
			return
		}
		again, err := ParseEntry(name, []byte(e.Text()))
		if err != nil {
			t.Fatalf("ParseEntry(Text()) of %q: %v (text %q)", text, err, e.Text())
		}
		if !again.Spec.Equal(e.Spec) || again.Enabled != e.Enabled {
			t.Fatalf("round trip of %q:\n got %#v\nwant %#v", text, again, e)
		}
	})
}
