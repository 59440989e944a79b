package binfmt

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTableMatchesDebian checks every /usr/lib/binfmt.d/qemu-*.conf on this
// machine against the table: same magic, same mask, except byte 8
// (EI_ABIVERSION) of the mips family, which mabd masks with 0x00 as current
// QEMU does (TestMipsABIVersion shows why).
func TestTableMatchesDebian(t *testing.T) {
	files, err := filepath.Glob("/usr/lib/binfmt.d/qemu-*.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no /usr/lib/binfmt.d/qemu-*.conf: install qemu-user-static (make deps)")
	}
	for _, p := range files {
		for _, line := range confLines(t, p) {
			deb, err := Parse(line)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			a, ok := ArchByName(deb.Name)
			if !ok {
				t.Errorf("%s: %s is not in the table", p, deb.Name)
				continue
			}
			mask := append([]byte(nil), deb.Mask...)
			if strings.HasPrefix(a.Name, "mips") {
				if mask[8] != 0xfe {
					t.Errorf("%s: expected Debian's mips mask byte 8 to be 0xfe, got %#x: revisit the exception", p, mask[8])
				}
				mask[8] = 0x00
			}
			if !bytes.Equal(deb.Magic, a.Magic) {
				t.Errorf("%s: magic\n debian %x\n table  %x", a.Name, deb.Magic, a.Magic)
			}
			if !bytes.Equal(mask, a.Mask) {
				t.Errorf("%s: mask\n debian %x\n table  %x", a.Name, mask, a.Mask)
			}
		}
	}
	t.Logf("compared %d Debian files", len(files))
}

func confLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ";") {
			out = append(out, l)
		}
	}
	return out
}
