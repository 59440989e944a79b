package userns

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	text := "root:100000:65536\nbuilder:165536:65536\n# a comment\n1002:231072:1000\nbuilder:300000:10\nbad:x:1\nbuilder:5:0\n"
	tests := []struct {
		name, uid string
		want      []IDRange
	}{
		{"builder", "1001", []IDRange{{165536, 65536}, {300000, 10}}},
		{"other", "1002", []IDRange{{231072, 1000}}},
		{"nobody", "65534", nil},
	}
	for _, tt := range tests {
		if got := parseSubIDs(text, tt.name, tt.uid); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMapArgs(t *testing.T) {
	got := strings.Join(mapArgs(1001, []IDRange{{100000, 65536}, {300000, 10}}), " ")
	if want := "0 1001 1 1 100000 65536 65537 300000 10"; got != want {
		t.Errorf("mapArgs = %q, want %q", got, want)
	}
}

func TestReadSubIDsMissing(t *testing.T) {
	dir := t.TempDir()
	var ns *NoSubIDsError
	if _, err := readSubIDs(filepath.Join(dir, "subuid"), "u", "1"); !errors.As(err, &ns) {
		t.Errorf("no file: %v", err)
	}
	f := filepath.Join(dir, "subgid")
	if err := os.WriteFile(f, []byte("other:1:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readSubIDs(f, "u", "1"); !errors.As(err, &ns) || ns.File != f {
		t.Errorf("no range: %v", err)
	}
}
