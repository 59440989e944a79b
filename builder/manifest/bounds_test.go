package manifest_test

// Tests of what reading a hostile OCI layout or archive costs: every file
// must be a regular file, every read is bounded by the descriptor's size
// (or by the manifest limit), and every digest is checked, sha512 too.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/builder/manifest"
)

// testLayout is a one-image OCI layout: its blobs and index.json, kept in
// memory so that cases can change them before writing it out.
type testLayout struct {
	img                     v1.Image
	manifest, config, layer []byte
	// desc is the index.json entry of the manifest.
	desc v1.Descriptor
	// configDesc and layerDesc are the manifest's descriptors.
	configDesc, layerDesc v1.Descriptor
}

// newTestLayout builds a linux/amd64 image with one gzip layer holding a
// small file; its manifest is stored under the digest algorithm alg
// (default sha256). before, if not nil, may then change the layout.
func newTestLayout(t *testing.T, alg string, before func(*testLayout)) *testLayout {
	t.Helper()
	if alg == "" {
		alg = "sha256"
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := []byte("#!/bin/sh\necho hello\n")
	tw.WriteHeader(&tar.Header{Name: "bin/hello", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	l := &testLayout{img: img}
	m, _ := img.Manifest()
	l.configDesc, l.layerDesc = m.Config, m.Layers[0]
	l.manifest, _ = img.RawManifest()
	l.config, _ = img.RawConfigFile()
	rc, _ := layer.Compressed()
	l.layer, _ = io.ReadAll(rc)
	l.desc = v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(l.manifest)), Digest: digestOf(alg, l.manifest)}
	if before != nil {
		before(l)
	}
	return l
}

func digestOf(alg string, b []byte) v1.Hash {
	var sum []byte
	switch alg {
	case "sha512":
		s := sha512.Sum512(b)
		sum = s[:]
	default:
		s := sha256.Sum256(b)
		sum = s[:]
	}
	return v1.Hash{Algorithm: alg, Hex: hex.EncodeToString(sum)}
}

// files returns the layout's files by name, index.json first.
func (l *testLayout) files() []layoutFile {
	idx, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{l.desc}})
	return []layoutFile{
		{"index.json", idx},
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{blobPath(l.desc.Digest), l.manifest},
		{blobPath(l.configDesc.Digest), l.config},
		{blobPath(l.layerDesc.Digest), l.layer},
	}
}

type layoutFile struct {
	name string
	data []byte
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeDir writes the layout to a new directory.
func (l *testLayout) writeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range l.files() {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeArchive writes the layout as a tarball; edit may change each
// entry's header and data before it is written.
func (l *testLayout) writeArchive(t *testing.T, edit func(h *tar.Header, data []byte) []byte) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range l.files() {
		h := &tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data)), Format: tar.FormatPAX}
		data := f.data
		if edit != nil {
			data = edit(h, data)
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		} else {
			h.Size, data = 0, nil
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "out.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// readEverything resolves ref and reads all of it: its manifests, each
// image's config, and each layer to its end.
func readEverything(ref string, opt manifest.Options) error {
	a, err := manifest.Resolve(context.Background(), ref, opt)
	if err != nil {
		return err
	}
	defer a.Close()
	ms, err := a.Manifests()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if _, err := manifest.ConfigPlatform(m.Image); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		ls, err := m.Image.Layers()
		if err != nil {
			return err
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				return fmt.Errorf("layer: %w", err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("layer: %w", err)
			}
		}
	}
	return nil
}

// replace puts what make creates in place of a layout file: a symlink to
// /dev/zero, a FIFO, a directory.
func replace(make func(p string) error) func(t *testing.T, p string) {
	return func(t *testing.T, p string) {
		t.Helper()
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := make(p); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	toDevZero = replace(func(p string) error { return os.Symlink("/dev/zero", p) })
	toFIFO    = replace(func(p string) error { return syscall.Mkfifo(p, 0o644) })
	toDir     = replace(func(p string) error { return os.Mkdir(p, 0o755) })
	appendTo  = func(extra string) func(t *testing.T, p string) {
		return func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(extra)
			f.Close()
		}
	}
	// toSymlinkedCopy moves the file elsewhere and links to it: a layout
	// whose blobs are symlinks to regular files reads as well as any.
	toSymlinkedCopy = func(t *testing.T, p string) {
		other := filepath.Join(t.TempDir(), "blob")
		if err := os.Rename(p, other); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(other, p); err != nil {
			t.Fatal(err)
		}
	}
)

// TestLayoutDirBounded reads OCI layout directories whose files are not
// what they should be: a symlink to /dev/zero (it used to grow past 2 GB
// in seconds), a FIFO (it used to hang), a directory, a blob longer than
// its descriptor, a blob of another digest, sha512 blobs.
func TestLayoutDirBounded(t *testing.T) {
	const (
		notRegular = "not a regular file"
		longer     = "its descriptor says"
		mismatch   = "does not match its digest"
	)
	for _, c := range []struct {
		name   string
		alg    string                     // of the manifest's digest (default sha256)
		before func(l *testLayout)        // changes the layout before it is written
		file   func(l *testLayout) string // the file to mangle
		mangle func(t *testing.T, p string)
		want   string // "" reads fine
	}{
		{name: "index.json links to the zero device", file: indexJSON, mangle: toDevZero, want: notRegular},
		{name: "index.json is a FIFO", file: indexJSON, mangle: toFIFO, want: notRegular},
		{name: "index.json is a directory", file: indexJSON, mangle: toDir, want: notRegular},
		{name: "index.json too large", file: indexJSON, mangle: appendTo(strings.Repeat(" ", 17<<20)), want: "too large"},
		{name: "manifest links to the zero device", file: manifestBlob, mangle: toDevZero, want: notRegular},
		{name: "manifest is a FIFO", file: manifestBlob, mangle: toFIFO, want: notRegular},
		{name: "manifest longer than its descriptor", file: manifestBlob, mangle: appendTo(" "), want: longer},
		{name: "config links to the zero device", file: configBlob, mangle: toDevZero, want: notRegular},
		{name: "config is a FIFO", file: configBlob, mangle: toFIFO, want: notRegular},
		{name: "layer links to the zero device", file: layerBlob, mangle: toDevZero, want: notRegular},
		{name: "layer is a FIFO", file: layerBlob, mangle: toFIFO, want: notRegular},
		{name: "layer longer than its descriptor", file: layerBlob, mangle: appendTo("trailing junk"), want: longer},
		{name: "layer of another digest", before: func(l *testLayout) { l.layer = bytes.Clone(l.layer); l.layer[len(l.layer)-1] ^= 1 }, want: mismatch},
		{name: "symlinked blobs are followed", file: layerBlob, mangle: toSymlinkedCopy},
		{name: "sha512 manifest", alg: "sha512"},
		{name: "sha512 manifest of another digest", alg: "sha512", before: tamperManifest, want: mismatch},
		{name: "sha256 manifest of another digest", before: tamperManifest, want: mismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newTestLayout(t, c.alg, c.before)
			dir := l.writeDir(t)
			if c.mangle != nil {
				c.mangle(t, filepath.Join(dir, filepath.FromSlash(c.file(l))))
			}
			err := readEverything("oci-layout:"+dir, manifest.Options{})
			checkErr(t, err, c.want)
		})
	}
}

func indexJSON(*testLayout) string      { return "index.json" }
func manifestBlob(l *testLayout) string { return blobPath(l.desc.Digest) }
func configBlob(l *testLayout) string   { return blobPath(l.configDesc.Digest) }
func layerBlob(l *testLayout) string    { return blobPath(l.layerDesc.Digest) }
func tamperManifest(l *testLayout)      { l.manifest = append(bytes.Clone(l.manifest), ' '); l.desc.Size++ }
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("error %v, want none", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("error %v, want one saying %q", err, want)
	}
}

// TestLayoutArchiveBounded reads OCI archives whose entries are not
// regular files, whose entries run past the end of the file, whose blobs
// are longer than their descriptors or of another digest, and archives
// that are not regular files.
func TestLayoutArchiveBounded(t *testing.T) {
	const (
		notRegular = "not a regular file"
		longer     = "its descriptor says"
		mismatch   = "does not match its digest"
	)
	// entry returns an edit that changes the entry named by name.
	entry := func(name func(*testLayout) string, l *testLayout, f func(h *tar.Header, data []byte) []byte) func(h *tar.Header, data []byte) []byte {
		return func(h *tar.Header, data []byte) []byte {
			if h.Name == name(l) {
				return f(h, data)
			}
			return data
		}
	}
	typ := func(flag byte, link string) func(h *tar.Header, data []byte) []byte {
		return func(h *tar.Header, data []byte) []byte {
			h.Typeflag, h.Linkname = flag, link
			return data
		}
	}
	for _, c := range []struct {
		name   string
		alg    string
		before func(l *testLayout)
		edit   func(l *testLayout) func(h *tar.Header, data []byte) []byte
		after  func(t *testing.T, file string) string // changes the written archive; returns the file to read
		want   string
	}{
		{name: "plain"},
		{name: "index.json is a symlink to the zero device", edit: func(l *testLayout) func(*tar.Header, []byte) []byte {
			return entry(indexJSON, l, typ(tar.TypeSymlink, "/dev/zero"))
		}, want: notRegular},
		{name: "manifest is a hard link", edit: func(l *testLayout) func(*tar.Header, []byte) []byte {
			return entry(manifestBlob, l, typ(tar.TypeLink, "oci-layout"))
		}, want: notRegular},
		{name: "layer is a FIFO", edit: func(l *testLayout) func(*tar.Header, []byte) []byte {
			return entry(layerBlob, l, typ(tar.TypeFifo, ""))
		}, want: notRegular},
		{name: "layer is a character device", edit: func(l *testLayout) func(*tar.Header, []byte) []byte {
			return entry(layerBlob, l, func(h *tar.Header, data []byte) []byte {
				h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 5
				return data
			})
		}, want: notRegular},
		{name: "layer longer than its descriptor", edit: func(l *testLayout) func(*tar.Header, []byte) []byte {
			return entry(layerBlob, l, func(_ *tar.Header, data []byte) []byte { return append(bytes.Clone(data), "junk"...) })
		}, want: longer},
		{name: "layer of another digest", before: func(l *testLayout) { l.layer = bytes.Clone(l.layer); l.layer[len(l.layer)-1] ^= 1 }, want: mismatch},
		{name: "sha512 manifest", alg: "sha512"},
		{name: "sha512 manifest of another digest", alg: "sha512", before: tamperManifest, want: mismatch},
		{name: "truncated", after: func(t *testing.T, file string) string {
			// Cut the end-of-archive blocks and the end of the last
			// entry's data (the layer's, < 512 bytes): its header claims more.
			fi, _ := os.Stat(file)
			if err := os.Truncate(file, fi.Size()-1024-512+5); err != nil {
				t.Fatal(err)
			}
			return file
		}, want: "past the end"},
		{name: "the archive links to the zero device", after: func(t *testing.T, file string) string {
			toDevZero(t, file)
			return file
		}, want: notRegular},
		{name: "the archive is a FIFO", after: func(t *testing.T, file string) string {
			toFIFO(t, file)
			return file
		}, want: notRegular},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newTestLayout(t, c.alg, c.before)
			var edit func(h *tar.Header, data []byte) []byte
			if c.edit != nil {
				edit = c.edit(l)
			}
			file := l.writeArchive(t, edit)
			if c.after != nil {
				file = c.after(t, file)
			}
			checkErr(t, readEverything("oci-archive:"+file, manifest.Options{}), c.want)
		})
	}
}

// TestLayoutUnknownDigestAlgorithm: an index entry with a digest algorithm
// go-containerregistry cannot compute is refused, naming the algorithm.
func TestLayoutUnknownDigestAlgorithm(t *testing.T) {
	l := newTestLayout(t, "", nil)
	dir := l.writeDir(t)
	idx := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":%q,"digest":"sha384:%s","size":%d}]}`, types.OCIManifestSchema1, strings.Repeat("ab", 48), len(l.manifest))
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	err := readEverything("oci-layout:"+dir, manifest.Options{})
	if err == nil || !strings.Contains(err.Error(), "sha384") {
		t.Errorf("error %v, want one naming sha384", err)
	}
	if errors.Is(err, manifest.ErrNotFound) {
		t.Errorf("%v is not a missing file", err)
	}
}
