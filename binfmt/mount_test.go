package binfmt

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadFileBounded: a file of the mount is read whole up to one page;
// anything larger, or missing, is an error naming the path.
func TestReadFileBounded(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int // -1: no file
		wantErr error
		anyErr  bool
	}{
		{name: "empty", size: 0},
		{name: "entry-sized", size: 300},
		{name: "one page", size: maxFileBytes},
		{name: "larger than a page", size: maxFileBytes + 1, anyErr: true},
		{name: "missing", size: -1, wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if tt.size >= 0 {
				if err := os.WriteFile(p, bytes.Repeat([]byte("x"), tt.size), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := readFile(p)
			if tt.wantErr == nil && !tt.anyErr {
				if err != nil || len(b) != tt.size {
					t.Fatalf("readFile = %d bytes, %v; want %d, nil", len(b), err, tt.size)
				}
				return
			}
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), p) {
				t.Fatalf("readFile = %v; want an error about %s (wrapping %v)", err, p, tt.wantErr)
			}
		})
	}
}
