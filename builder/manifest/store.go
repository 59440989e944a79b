package manifest

import (
	"archive/tar"
	"bytes"
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
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Limits of what is read from a layout or an archive.
const (
	// maxManifest bounds the manifests, indexes and configs read into
	// memory (index.json included).
	maxManifest = 16 << 20
	// maxArchiveEntries bounds the entries of an OCI archive.
	maxArchiveEntries = 1 << 16
)

// ErrNotRegular is wrapped by the errors of layout files, archives and
// archive entries that are not regular files: a FIFO, a device, a
// directory, a symlink or hard link inside an archive.
var ErrNotRegular = errors.New("not a regular file")

// store holds the files of an OCI image layout: a directory or a tarball.
type store interface {
	// open opens a regular file of the layout ("index.json",
	// "blobs/sha256/…") and returns its size.
	open(name string) (io.ReadCloser, int64, error)
	// where names the layout in errors.
	where() string
	close() error
}

// openRegular opens the regular file p to read it. A symlink is followed,
// and its target must be a regular file too. The file is opened with
// O_NONBLOCK so that a FIFO cannot block the open; anything but a regular
// file is then refused with [ErrNotRegular], before a byte is read.
func openRegular(p string) (*os.File, int64, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		what := fileKind(fi.Mode())
		if target, err := filepath.EvalSymlinks(p); err == nil && target != p {
			what += " (through a symlink to " + target + ")"
		}
		return nil, 0, fmt.Errorf("%s: %w: it is %s", p, ErrNotRegular, what)
	}
	return f, fi.Size(), nil
}

// fileKind names the type of a file that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "of mode " + m.String()
}

// dirStore is an OCI image layout directory. Its files may be symlinks
// to regular files (a layout whose blobs are shared with another one).
type dirStore struct{ dir string }

func (d dirStore) open(name string) (io.ReadCloser, int64, error) {
	f, size, err := openRegular(filepath.Join(d.dir, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %s: %w", d.dir, name, ErrNotFound)
	}
	return f, size, err
}

func (d dirStore) where() string { return d.dir }
func (d dirStore) close() error  { return nil }

// tarStore is an OCI image layout tarball, read in place: opening it
// records where each file's data starts, and files are then read as
// sections of it.
type tarStore struct {
	file  string
	f     *os.File
	size  int64
	files map[string]section
}

type section struct{ off, size int64 }

func openTarStore(file string) (*tarStore, error) {
	f, size, err := openRegular(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, err
	}
	s := &tarStore{file: file, f: f, size: size, files: map[string]section{}}
	if err := s.index(); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return s, nil
}

// index reads the tar headers. archive/tar reads no further than a header,
// and skips file data by seeking, so after Next the file's offset is where
// the entry's data starts. Only regular files and directories may be in
// the archive: a symlink, hard link, device or FIFO is refused (the
// layout's files are read as sections of the archive, never through the
// file system), and so is an entry whose data would run past the end of
// the archive.
func (s *tarStore) index() error {
	var magic [2]byte
	if n, _ := io.ReadFull(s.f, magic[:]); n == 2 && magic == [2]byte{0x1f, 0x8b} {
		return errors.New("the archive is gzip-compressed: gunzip it first (an OCI archive is a plain tar)")
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(s.f)
	for entries := 0; ; entries++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w", err)
		}
		if entries >= maxArchiveEntries {
			return fmt.Errorf("more than %d entries: not an OCI image layout archive", maxArchiveEntries)
		}
		n := strings.TrimPrefix(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg:
			if sparse(h) {
				return fmt.Errorf("entry %s: %w: it is a sparse file", h.Name, ErrNotRegular)
			}
		default:
			return fmt.Errorf("entry %s: %w: it is %s", h.Name, ErrNotRegular, tarKind(h))
		}
		off, err := s.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if h.Size > s.size-off {
			return fmt.Errorf("entry %s: its %d bytes would end past the end of the archive (%d bytes): the archive is truncated", h.Name, h.Size, s.size)
		}
		s.files[n] = section{off: off, size: h.Size}
	}
	if _, ok := s.files["index.json"]; !ok {
		return errors.New("no index.json: not an OCI image layout archive")
	}
	return nil
}

// sparse says whether a regular tar entry is a GNU sparse file, whose data
// is not its content.
func sparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// tarKind names the type of a tar entry that is not a regular file.
func tarKind(h *tar.Header) string {
	switch h.Typeflag {
	case tar.TypeSymlink:
		return "a symlink to " + h.Linkname
	case tar.TypeLink:
		return "a hard link to " + h.Linkname
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a FIFO"
	case tar.TypeGNUSparse:
		return "a sparse file"
	}
	return fmt.Sprintf("of type %q", h.Typeflag)
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

// readBlob reads a small blob (a manifest, index or config) whose
// descriptor says it has size bytes (-1: unknown), and checks its size and
// its digest. It reads at most size bytes, and never more than
// maxManifest.
func readBlob(s store, h v1.Hash, size int64) ([]byte, error) {
	limit := int64(maxManifest)
	if size > limit {
		return nil, fmt.Errorf("%s: blob %s is %d bytes, too large for a manifest or config (at most %d)", s.where(), h, size, limit)
	}
	if size >= 0 {
		limit = size
	}
	hasher, err := hasherOf(h)
	if err != nil {
		return nil, fmt.Errorf("%s: blob %s: %w", s.where(), h, err)
	}
	rc, have, err := s.open(blobName(h))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if err := checkSize(s, h, have, size); err != nil {
		return nil, err
	}
	if have > limit {
		return nil, fmt.Errorf("%s: blob %s is %d bytes, too large for a manifest or config (at most %d)", s.where(), h, have, limit)
	}
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read blob %s: %w", s.where(), h, err)
	}
	if int64(len(b)) != have {
		return nil, fmt.Errorf("%s: blob %s changed while it was read (%d bytes, then %d)", s.where(), h, have, len(b))
	}
	hasher.Write(b)
	if hex.EncodeToString(hasher.Sum(nil)) != h.Hex {
		return nil, fmt.Errorf("%s: blob %s does not match its digest", s.where(), h)
	}
	return b, nil
}

// checkSize compares a blob's size in the layout with its descriptor's
// (want -1: unknown).
func checkSize(s store, h v1.Hash, have, want int64) error {
	if want >= 0 && have != want {
		return fmt.Errorf("%s: blob %s is %d bytes, its descriptor says %d", s.where(), h, have, want)
	}
	return nil
}

// hasherOf returns a hash for h's algorithm: sha256 or sha512, the ones
// go-containerregistry computes; digests of other algorithms are refused,
// never left unchecked.
func hasherOf(h v1.Hash) (hash.Hash, error) {
	if h.Algorithm == "" {
		return nil, errors.New("no digest")
	}
	hasher, err := v1.Hasher(h.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("cannot check a %s digest (sha256 and sha512 can be): %w", h.Algorithm, err)
	}
	return hasher, nil
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
	raw, err := readBlob(i.s, h, d.Size)
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
	raw, err := readBlob(i.s, h, d.Size)
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
func (i *storeImage) RawConfigFile() ([]byte, error) {
	return readBlob(i.s, i.manifest.Config.Digest, i.manifest.Config.Size)
}

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

// Compressed streams the blob, which must have the size of its
// descriptor: reading stops there, and ends with an error if the blob has
// another size or digest.
func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	hasher, err := hasherOf(l.desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: blob %s: %w", l.s.where(), l.desc.Digest, err)
	}
	rc, size, err := l.s.open(blobName(l.desc.Digest))
	if err != nil {
		return nil, err
	}
	if err := checkSize(l.s, l.desc.Digest, size, l.desc.Size); err != nil {
		rc.Close()
		return nil, err
	}
	return newVerifyReader(rc, l.desc, hasher, l.s.where()), nil
}

// verifyReader reads a blob no further than one byte past its
// descriptor's size, and checks, when it reaches the end, that what it
// read has the size and digest it should.
type verifyReader struct {
	rc    io.ReadCloser
	r     io.Reader // rc, limited
	h     hash.Hash
	n     int64
	want  v1.Descriptor
	where string
	err   error
}

// newVerifyReader reads rc as the blob want describes, hashing it with h.
func newVerifyReader(rc io.ReadCloser, want v1.Descriptor, h hash.Hash, where string) *verifyReader {
	return &verifyReader{rc: rc, r: io.LimitReader(rc, want.Size+1), h: h, want: want, where: where}
}

func (r *verifyReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if r.n+int64(n) > r.want.Size {
		n = int(r.want.Size - r.n)
		err = fmt.Errorf("%s: blob %s is longer than the %d bytes its descriptor says", r.where, r.want.Digest, r.want.Size)
	}
	r.n += int64(n)
	r.h.Write(p[:n])
	if err == io.EOF {
		switch {
		case r.n != r.want.Size:
			err = fmt.Errorf("%s: blob %s is %d bytes, its descriptor says %d", r.where, r.want.Digest, r.n, r.want.Size)
		case hex.EncodeToString(r.h.Sum(nil)) != r.want.Digest.Hex:
			err = fmt.Errorf("%s: blob %s does not match its digest", r.where, r.want.Digest)
		}
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

func (r *verifyReader) Close() error { return r.rc.Close() }
