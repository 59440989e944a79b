package audit_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/binfmt"
	"mabd/builder/audit"
	"mabd/testing/fixtures"
)

const hostBusybox = "/bin/busybox" // Debian's busybox-static, x86-64

// tarFile is an entry of a test layer.
type tarFile struct {
	name string
	typ  byte
	data []byte
	link string
}

func layerTar(t testing.TB, files ...tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: f.name, Typeflag: typ, Mode: 0o755, Linkname: f.link}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (install busybox-static / run make deps)", err)
	}
	return b
}

// TestExpectedMatchesRealBinaries checks the table against Debian's busybox
// of every architecture the fixtures have, and the host's.
func TestExpectedMatchesRealBinaries(t *testing.T) {
	bins := map[string]string{"linux/amd64": hostBusybox}
	for deb := range fixtures.Arches {
		a, err := binfmt.Lookup(deb)
		if err != nil {
			t.Fatal(err)
		}
		bins[a.Platform] = fixtures.Busybox(t, deb)
	}
	for platform, bin := range bins {
		id, typ, ok := audit.ParseHeader(readFile(t, bin)[:audit.HeaderSize])
		if !ok || typ != elf.ET_EXEC {
			t.Errorf("%s: %s is not an ELF executable (%v %v)", platform, bin, ok, typ)
			continue
		}
		want, err := audit.Expected(platform)
		if err != nil {
			t.Fatal(err)
		}
		if id != want {
			t.Errorf("%s: busybox is %+v (%s), table says %+v (%s)", platform, id, id, want, want)
		}
	}
	// Every platform of the table, with its aliases normalized.
	for p, machine := range map[string]elf.Machine{
		"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64, "linux/arm/v6": elf.EM_ARM, "linux/386": elf.EM_386,
		"linux/ppc64le": elf.EM_PPC64, "linux/ppc64": elf.EM_PPC64, "linux/s390x": elf.EM_S390, "linux/riscv64": elf.EM_RISCV,
		"linux/mips64le": elf.EM_MIPS, "linux/mips64": elf.EM_MIPS, "linux/mipsle": elf.EM_MIPS, "linux/mips": elf.EM_MIPS,
		"linux/loong64": elf.EM_LOONGARCH, "linux/aarch64": elf.EM_AARCH64, "linux/x86_64": elf.EM_X86_64,
	} {
		id, err := audit.Expected(p)
		if err != nil || id.Machine != machine {
			t.Errorf("Expected(%s) = %+v, %v; want machine %v", p, id, err, machine)
		}
	}
	if len(audit.Architectures()) != 13 {
		t.Errorf("table has %d architectures, want Go's 13 Linux ones: %v", len(audit.Architectures()), audit.Architectures())
	}
	if id, _ := audit.Expected("linux/s390x"); id.Data != elf.ELFDATA2MSB || id.Class != elf.ELFCLASS64 {
		t.Errorf("s390x: %+v", id)
	}
	if id, _ := audit.Expected("linux/mips"); id.Data != elf.ELFDATA2MSB || id.Class != elf.ELFCLASS32 {
		t.Errorf("mips: %+v", id)
	}
	if _, err := audit.Expected("linux/sparc64"); err == nil {
		t.Error("sparc64 has an entry")
	}
}

func TestScanLayer(t *testing.T) {
	amd64 := readFile(t, hostBusybox)
	arm64 := readFile(t, fixtures.Busybox(t, "arm64"))
	layer := layerTar(t,
		tarFile{name: "./bin/", typ: tar.TypeDir},
		tarFile{name: "./bin/busybox", data: arm64},
		tarFile{name: "./bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		tarFile{name: "./bin/hard", typ: tar.TypeLink, link: "bin/busybox"},
		tarFile{name: "usr/local/bin/app", data: amd64},
		tarFile{name: "usr/local/bin/run.sh", data: []byte("#!/bin/sh\nexec app \"$@\"\n")},
		tarFile{name: "etc/data.bin", data: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 10000)},
		tarFile{name: "etc/short", data: []byte("\x7fELF\x02\x01\x01")},
		tarFile{name: "etc/fake", data: append([]byte("\x7fELF\x02\x01\x07"), make([]byte, 60)...)}, // bad version
		tarFile{name: "etc/empty"},
		tarFile{name: "etc/.wh.gone"},
	)
	fs, err := audit.ScanLayer(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 {
		t.Fatalf("findings %+v, want busybox and app", fs)
	}
	if fs[0].Path != "/bin/busybox" || fs[0].Arch != "aarch64" || fs[0].Machine != elf.EM_AARCH64 || fs[0].Size != int64(len(arm64)) {
		t.Errorf("busybox: %+v", fs[0])
	}
	if fs[1].Path != "/usr/local/bin/app" || fs[1].Arch != "x86_64" || fs[1].Class != elf.ELFCLASS64 || fs[1].Data != elf.ELFDATA2LSB {
		t.Errorf("app: %+v", fs[1])
	}
	// A layer that is not a tar is an error, not an empty result.
	if _, err := audit.ScanLayer(strings.NewReader(strings.Repeat("not a tar", 100))); err == nil {
		t.Error("garbage scanned without an error")
	}
}

// TestScanLayerStreams scans a 64 MB layer made on the fly and checks that
// it allocates next to nothing: files are skipped, not buffered.
func TestScanLayerStreams(t *testing.T) {
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fs, err := audit.ScanLayer(generatedLayer(size))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatal("no ELF file found in the generated layer")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("scanning %d MB allocated %d bytes", size>>20, alloc)
	}
}

// generatedLayer streams an uncompressed layer of about size bytes,
// written on the fly by a goroutine, never stored: 8 MB files, one in four
// of them an x86-64 ELF file, the others data, and scripts in between.
func generatedLayer(size int64) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		chunk := make([]byte, 1<<20)
		hdr := make([]byte, 1<<20)
		copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 62, 0})
		script := []byte("#!/bin/sh\necho hello\n")
		const fileSize = 8 << 20
		var written int64
		for i := 0; written < size; i++ {
			first := chunk
			if i%4 == 0 {
				first = hdr
			}
			if err := tw.WriteHeader(&tar.Header{Name: "data/f" + itoa(i), Typeflag: tar.TypeReg, Mode: 0o755, Size: fileSize}); err != nil {
				pw.CloseWithError(err)
				return
			}
			for n := 0; n < fileSize; n += len(chunk) {
				b := chunk
				if n == 0 {
					b = first
				}
				if _, err := tw.Write(b); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			if err := tw.WriteHeader(&tar.Header{Name: "data/s" + itoa(i), Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(script))}); err != nil {
				pw.CloseWithError(err)
				return
			}
			tw.Write(script)
			written += fileSize + int64(len(script))
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// image builds an image of the layers for platform.
func image(t *testing.T, platform v1.Platform, layers ...[]byte) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, data := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestAuditLayers audits an OCI layout: a wrong-architecture file that a
// later layer deletes, replaces or hides under an opaque directory is
// reported hidden and does not fail; one that stays does; a config that
// disagrees with its index entry is a problem.
func TestAuditLayers(t *testing.T) {
	amd64 := readFile(t, hostBusybox)
	arm64 := readFile(t, fixtures.Busybox(t, "arm64"))
	base := layerTar(t,
		tarFile{name: "bin/busybox", data: arm64},
		tarFile{name: "usr/bin/deleted", data: amd64},
		tarFile{name: "usr/bin/replaced", data: amd64},
		tarFile{name: "opt/tool/bin/x", data: amd64},
		tarFile{name: "usr/local/bin/stays", data: amd64},
		tarFile{name: "usr/share/doc/readme", data: []byte("text")},
	)
	fix := layerTar(t,
		tarFile{name: "usr/bin/.wh.deleted"},
		tarFile{name: "usr/bin/replaced", data: arm64},
		tarFile{name: "opt/tool/", typ: tar.TypeDir},
		tarFile{name: "opt/tool/.wh..wh..opq"},
	)
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	good := image(t, arm, base, fix)
	mislabeled := image(t, v1.Platform{OS: "linux", Architecture: "amd64"}, layerTar(t, tarFile{name: "bin/true", data: arm64}))
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: good, Descriptor: v1.Descriptor{Platform: &arm}},
		mutate.IndexAddendum{Add: mislabeled, Descriptor: v1.Descriptor{Platform: &arm}},
	)
	dir := t.TempDir()
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Audit(context.Background(), "oci-layout:"+dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Platforms) != 2 {
		t.Fatalf("platforms: %+v", rep.Platforms)
	}
	first := rep.Platforms[0]
	hidden := map[string]bool{}
	for _, p := range first.Problems {
		hidden[p.Path] = p.HiddenBy != ""
		if p.Kind != audit.KindELF || p.Found != "x86_64" || p.Expected != "aarch64" || !strings.HasPrefix(p.Layer, "sha256:") {
			t.Errorf("problem %+v", p)
		}
	}
	want := map[string]bool{"/usr/bin/deleted": true, "/usr/bin/replaced": true, "/opt/tool/bin/x": true, "/usr/local/bin/stays": false}
	if len(hidden) != len(want) {
		t.Errorf("problems %+v, want %v", first.Problems, want)
	}
	for p, h := range want {
		if got, ok := hidden[p]; !ok || got != h {
			t.Errorf("%s: reported %v, hidden %v; want hidden %v", p, ok, got, h)
		}
	}
	if !first.Failed() || first.Layers[0].ELF != 5 || first.Layers[1].ELF != 1 || first.Layers[0].Files != 6 {
		t.Errorf("first image: failed %v, layers %+v", first.Failed(), first.Layers)
	}
	second := rep.Platforms[1]
	if len(second.Problems) != 1 || second.Problems[0].Kind != audit.KindConfig || second.Config != "linux/amd64" || second.Platform != "linux/arm64" {
		t.Errorf("mislabeled image: %+v", second)
	}
	if rep.OK() || len(rep.Problems()) != 2 {
		t.Errorf("report OK %v, problems %+v", rep.OK(), rep.Problems())
	}
	msg := rep.Problems()[0].Message
	if !strings.HasPrefix(msg, "linux/arm64 image contains x86_64 /usr/local/bin/stays (layer sha256:") {
		t.Errorf("message %q", msg)
	}

	// Without the file that stays, the image is clean.
	clean := image(t, arm, layerTar(t, tarFile{name: "usr/bin/app", data: amd64}), layerTar(t, tarFile{name: "usr/bin/.wh.app"}))
	dir2 := t.TempDir()
	p, err := layout.Write(dir2, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(clean); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.Audit(context.Background(), "oci-layout:"+dir2, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Platforms) != 1 || len(rep.Platforms[0].Problems) != 1 || rep.Platforms[0].Problems[0].HiddenBy == "" {
		t.Errorf("deleted file: %+v", rep)
	}
	if _, err := audit.Audit(context.Background(), "oci-layout:"+dir2, audit.Options{Platforms: []string{"linux/s390x"}}); err == nil || !strings.Contains(err.Error(), "no linux/s390x image (it has linux/arm64)") {
		t.Errorf("missing platform: %v", err)
	}
}
