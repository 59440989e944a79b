package manifest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxManifest bounds the manifests, indexes and configs read into memory.
const maxManifest = 16 << 20

// store holds the files of an OCI image layout: a directory or a tarball.
type store interface {
	// open opens a file of the layout ("index.json", "blobs/sha256/…").
	open(name string) (io.ReadCloser, int64, error)
	// where names the layout in errors.
	where() string
	close() error
}

// dirStore is an OCI image layout directory.
type dirStore struct{ dir string }

func (d dirStore) open(name string) (io.ReadCloser, int64, error) {
	f, err := os.Open(filepath.Join(d.dir, filepath.FromSlash(name)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("%s: %s: %w", d.dir, name, ErrNotFound)
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (d dirStore) where() string { return d.dir }
func (d dirStore) close() error  { return nil }

// tarStore is an OCI image layout tarball, read in place: opening it
// records where each file's data starts, and files are then read as
// sections of it.
type tarStore struct {
	file  string
	f     *os.File
	files map[string]section
}

type section struct{ off, size int64 }

func openTarStore(file string) (*tarStore, error) {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, err
	}
	s := &tarStore{file: file, f: f, files: map[string]section{}}
	if err := s.index(); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return s, nil
}

// index reads the tar headers. archive/tar reads no further than a header,
// and skips file data by seeking, so after Next the file's offset is where
// the entry's data starts.
func (s *tarStore) index() error {
	var magic [2]byte
	if n, _ := io.ReadFull(s.f, magic[:]); n == 2 && magic == [2]byte{0x1f, 0x8b} {
		return errors.New("the archive is gzip-compressed: gunzip it first (an OCI archive is a plain tar)")
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(s.f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := s.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		n := path.Clean(strings.TrimPrefix(h.Name, "./"))
		s.files[strings.TrimPrefix(n, "/")] = section{off: off, size: h.Size}
	}
	if _, ok := s.files["index.json"]; !ok {
		return errors.New("no index.json: not an OCI image layout archive")
	}
	return nil
}

func (s *tarStore) open(name string) (io.ReadCloser, int64, error) {
	sec, ok := s.files[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: %s: %w", s.file, name, ErrNotFound)
	}
	return io.NopCloser(io.NewSectionReader(s.f, sec.off, sec.size)), sec.size, nil
}

func (s *tarStore) where() string { return s.file }
func (s *tarStore) close() error  { return s.f.Close() }

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// readBlob reads a small blob (a manifest, index or config) and checks its
// digest.
func readBlob(s store, h v1.Hash) ([]byte, error) {
	rc, size, err := s.open(blobName(h))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxManifest {
		return nil, fmt.Errorf("%s: blob %s is %d bytes, too large for a manifest or config", s.where(), h, size)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: read blob %s: %w", s.where(), h, err)
	}
	if h.Algorithm == "sha256" {
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != h.Hex {
			return nil, fmt.Errorf("%s: blob %s does not match its digest", s.where(), h)
		}
	}
	return b, nil
}

// sniffMediaType returns the media type a manifest says it has or, for the
// OCI manifests that leave it out, the one its fields imply.
func sniffMediaType(raw []byte) types.MediaType {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return types.OCIImageIndex
	case m.Config != nil:
		return types.OCIManifestSchema1
	}
	return ""
}

// storeIndex is an image index of a layout (index.json or a blob).
type storeIndex struct {
	s    store
	desc v1.Descriptor
	raw  []byte
}

var _ v1.ImageIndex = (*storeIndex)(nil)

func newStoreIndex(s store, desc v1.Descriptor, raw []byte) *storeIndex {
	return &storeIndex{s: s, desc: desc, raw: raw}
}

func (i *storeIndex) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }
func (i *storeIndex) Digest() (v1.Hash, error)            { return i.desc.Digest, nil }
func (i *storeIndex) Size() (int64, error)                { return i.desc.Size, nil }
func (i *storeIndex) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storeIndex) Descriptor() (*v1.Descriptor, error) { d := i.desc; return &d, nil }
func (i *storeIndex) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(i.raw))
}

// child returns the descriptor of h in the index.
func (i *storeIndex) child(h v1.Hash) (v1.Descriptor, error) {
	im, err := i.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range im.Manifests {
		if d.Digest == h {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s: index %s has no manifest %s: %w", i.s.where(), i.desc.Digest, h, ErrNotFound)
}

func (i *storeIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := i.child(h)
	if err != nil {
		return nil, err
	}
	raw, err := readBlob(i.s, h)
	if err != nil {
		return nil, err
	}
	return newStoreImage(i.s, d, raw)
}

func (i *storeIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := i.child(h)
	if err != nil {
		return nil, err
	}
	raw, err := readBlob(i.s, h)
	if err != nil {
		return nil, err
	}
	return newStoreIndex(i.s, d, raw), nil
}

// storeImage is an image manifest of a layout.
type storeImage struct {
	s        store
	desc     v1.Descriptor
	raw      []byte
	manifest *v1.Manifest
}

var _ partial.CompressedImageCore = (*storeImage)(nil)

func newStoreImage(s store, desc v1.Descriptor, raw []byte) (v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", s.where(), desc.Digest, err)
	}
	return partial.CompressedToImage(&storeImage{s: s, desc: desc, raw: raw, manifest: m})
}

func (i *storeImage) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }
func (i *storeImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storeImage) Descriptor() (*v1.Descriptor, error) { d := i.desc; return &d, nil }
func (i *storeImage) RawConfigFile() ([]byte, error)      { return readBlob(i.s, i.manifest.Config.Digest) }

func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.manifest.Config.Digest {
		return &storeLayer{s: i.s, desc: i.manifest.Config}, nil
	}
	for _, l := range i.manifest.Layers {
		if l.Digest == h {
			return &storeLayer{s: i.s, desc: l}, nil
		}
	}
	return nil, fmt.Errorf("%s: manifest %s has no layer %s: %w", i.s.where(), i.desc.Digest, h, ErrNotFound)
}

// storeLayer is a blob of a layout; its bytes are streamed.
type storeLayer struct {
	s    store
	desc v1.Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storeLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *storeLayer) Descriptor() (*v1.Descriptor, error) { d := l.desc; return &d, nil }

func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	rc, _, err := l.s.open(blobName(l.desc.Digest))
	if err != nil || l.desc.Digest.Algorithm != "sha256" {
		return rc, err
	}
	return &verifyReader{rc: rc, h: sha256.New(), want: l.desc.Digest, where: l.s.where()}, nil
}

// verifyReader checks, when it reaches the end, that what it read has the
// digest it should.
type verifyReader struct {
	rc    io.ReadCloser
	h     hash.Hash
	want  v1.Hash
	where string
}

func (r *verifyReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(r.h.Sum(nil)) != r.want.Hex {
		return n, fmt.Errorf("%s: blob %s does not match its digest", r.where, r.want)
	}
	return n, err
}

func (r *verifyReader) Close() error { return r.rc.Close() }
