package emulator

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mabd/binfmt"
)

// TestNativeFile: what NativeIn writes is read back by the same kernel
// only, and a file that names what binfmt.Native does not, or that is no
// regular file, is not believed (nor replaced).
func TestNativeFile(t *testing.T) {
	may := binfmt.Native("")
	if len(may) == 0 {
		t.Fatal("binfmt.Native knows nothing of this host")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, NativeFileName)
	if err := writeNative(path, nativeRecord{BootID: "boot-1", Native: may}); err != nil {
		t.Fatal(err)
	}
	if got, ok := readNative(path, "boot-1"); !ok || !slices.Equal(got, may) {
		t.Errorf("read back: %v, %v; want %v", got, ok, may)
	}
	for _, c := range []struct {
		name, file, boot string
	}{
		{"another boot", `{"boot_id":"boot-1","native":["x86_64"]}`, "boot-2"},
		{"no boot id", `{"boot_id":"","native":["x86_64"]}`, ""},
		{"not the host's first", `{"boot_id":"b","native":["i386","x86_64"]}`, "b"},
		{"a foreign architecture", `{"boot_id":"b","native":["` + may[0] + `","aarch64"]}`, "b"},
		{"nothing", `{"boot_id":"b","native":[]}`, "b"},
		{"not JSON", `x86_64`, "b"},
		{"too large", `{"boot_id":"b","native":["` + may[0] + `"]}` + strings.Repeat(" ", maxNativeFileBytes), "b"},
	} {
		if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, ok := readNative(path, c.boot); ok {
			t.Errorf("%s: believed %v", c.name, got)
		}
	}

	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte(`{"boot_id":"b","native":["`+may[0]+`"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if got, ok := readNative(link, "b"); ok {
		t.Errorf("followed a symlink: %v", got)
	}
	if err := writeNative(link, nativeRecord{BootID: "b", Native: may}); !errors.Is(err, ErrNotRegularFile) {
		t.Errorf("write over a symlink: %v, want ErrNotRegularFile", err)
	}
	if err := writeNative(filepath.Join(dir, "missing", NativeFileName), nativeRecord{BootID: "b", Native: may}); err == nil {
		t.Error("wrote into a directory that does not exist")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("created the missing directory")
	}
}
