package testuser

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWithoutUser(t *testing.T) {
	in := "alice:100000:65536\nmabdb01:165536:65536\nbob:231072:65536\nmabdb012:296608:65536"
	got := string(withoutUser([]byte(in), "mabdb01"))
	want := "alice:100000:65536\nbob:231072:65536\nmabdb012:296608:65536"
	if got != want {
		t.Errorf("withoutUser = %q, want %q", got, want)
	}
}

// TestRestoreFile: the subordinate id files are put back as found after
// useradd and userdel of the bench's user, and nothing of someone else's
// is undone.
func TestRestoreFile(t *testing.T) {
	dir := t.TempDir()
	const name = "mabdb01"
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) (string, bool) {
		b, err := os.ReadFile(p)
		return string(b), err == nil
	}

	t.Run("absent, made empty for useradd", func(t *testing.T) {
		p := filepath.Join(dir, "subuid")
		write(p, "")
		if msg := restoreFile(p, fileState{}, name); msg != "" {
			t.Fatal(msg)
		}
		if _, ok := read(p); ok {
			t.Error("the file that was absent is still there")
		}
	})
	t.Run("absent backup is removed", func(t *testing.T) {
		p := filepath.Join(dir, "subuid-")
		write(p, "alice:100000:65536\n")
		if msg := restoreFile(p, fileState{}, name); msg != "" {
			t.Fatal(msg)
		}
		if _, ok := read(p); ok {
			t.Error("the backup that was absent is still there")
		}
	})
	t.Run("absent, someone else's lines kept", func(t *testing.T) {
		p := filepath.Join(dir, "subgid")
		write(p, "alice:100000:65536\n")
		if msg := restoreFile(p, fileState{}, name); msg == "" {
			t.Error("no word about the other user's lines")
		}
		if s, _ := read(p); s != "alice:100000:65536\n" {
			t.Errorf("the file is %q", s)
		}
	})
	t.Run("present, the user's line left", func(t *testing.T) {
		p := filepath.Join(dir, "subuid2")
		was := "alice:100000:65536\n"
		write(p, was+name+":165536:65536\n")
		if msg := restoreFile(p, fileState{exists: true, data: []byte(was), mode: 0o644}, name); msg != "" {
			t.Fatal(msg)
		}
		if s, _ := read(p); s != was {
			t.Errorf("the file is %q, want %q", s, was)
		}
	})
	t.Run("present, changed by someone else", func(t *testing.T) {
		p := filepath.Join(dir, "subuid3")
		was := "alice:100000:65536\n"
		write(p, was+"carol:165536:65536\n")
		if msg := restoreFile(p, fileState{exists: true, data: []byte(was), mode: 0o644}, name); msg == "" {
			t.Error("no word about someone else's change")
		}
		if s, _ := read(p); s != was+"carol:165536:65536\n" {
			t.Errorf("someone else's change was undone: %q", s)
		}
	})
	t.Run("present backup gets its content back", func(t *testing.T) {
		p := filepath.Join(dir, "subgid-")
		write(p, "alice:100000:65536\n"+name+":165536:65536\n")
		if msg := restoreFile(p, fileState{exists: true, data: nil, mode: 0o600}, name); msg != "" {
			t.Fatal(msg)
		}
		fi, err := os.Stat(p)
		if s, _ := read(p); err != nil || s != "" || fi.Mode().Perm() != 0o600 {
			t.Errorf("the backup is %q (%v), want empty with mode 0600", s, fi.Mode())
		}
	})
}
