package emulator

import (
	"bytes"
	"debug/elf"
	"os"
	"testing"
)

// FuzzStaticFromHeaders checks IsStatic's fast path against debug/elf: on
// any input both accept, they agree on the type and on PT_INTERP.
func FuzzStaticFromHeaders(f *testing.F) {
	for _, seed := range [][]byte{staticELF, dynamicELF, staticPIE, objectELF} {
		f.Add(seed)
	}
	for _, p := range []string{"/usr/bin/qemu-aarch64-static", "/bin/ls"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b[:min(len(b), headerBytes)])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > headerBytes || !bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
			return
		}
		static, typ, ok := staticFromHeaders(b)
		if !ok {
			return
		}
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			// debug/elf also reads the section headers, which the
			// kernel (and the fast path) do not.
			return
		}
		want := true
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				want = false
			}
		}
		if static != want || typ != ef.Type {
			t.Fatalf("staticFromHeaders = %v, %v; debug/elf says %v, %v", static, typ, want, ef.Type)
		}
	})
}
