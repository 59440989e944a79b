package builder

import (
	"slices"
	"testing"
)

func TestTailWriter(t *testing.T) {
	w := newTailWriter(nil, 3)
	w.Write([]byte("a\nlevel=error msg=bad\nb\n"))
	w.Write([]byte("c\nd"))
	w.Write([]byte("\n"))
	if l := w.Lines(); !slices.Equal(l, []string{"b", "c", "d"}) {
		t.Errorf("lines %q", l)
	}
	if w.last() != "d" {
		t.Errorf("last %q", w.last())
	}
	w.Write([]byte("buildkitd: failed to lock\nx\n"))
	if w.last() != "buildkitd: failed to lock" {
		t.Errorf("last %q, want the error line", w.last())
	}
}
