package manifest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AnnotationCreated is the creation time of an index.json entry, which
// BuildKit's oci exporter sets (RFC 3339, UTC).
const AnnotationCreated = "org.opencontainers.image.created"

// ArchiveOptions say how [CreateArchive] builds an index and names it.
type ArchiveOptions struct {
	CreateOptions
	// Names are the image names ("127.0.0.1:5000/app:v1", "app") that
	// index.json gives the index, as BuildKit's type=oci exporter does
	// with its name= option: one index.json entry per name, whose
	// io.containerd.image.name annotation is the normalized name
	// ("docker.io/library/app:latest") and whose
	// org.opencontainers.image.ref.name is its tag ("latest"), or the
	// whole normalized name when it has a digest instead of a tag. The
	// archive can then be read as oci-archive:FILE:TAG by mabd and skopeo.
	// Without names, index.json has one unnamed entry.
	Names []string
	// Created, when not zero, is each index.json entry's
	// org.opencontainers.image.created annotation (BuildKit writes the
	// build's time, or SOURCE_DATE_EPOCH). Zero leaves it out, so that the
	// same sources and names always give the same archive.
	Created time.Time
}

// CreateArchive builds the index of sources as [Create] does and writes it,
// with every blob it needs, as an OCI image-layout tarball at file: the
// oci-layout file, index.json (the index, named by opt.Names) and under
// blobs/ the index, every manifest (images and attestations), every config
// and every layer, each once however many images share it. It is the
// archive BuildKit's type=oci exporter writes for a multi-platform build,
// made of images that may come from several builds (one per node): mabd
// reads it as oci-archive:FILE, skopeo and containerd import it.
//
// Every source is resolved and every image's config read before file is
// touched. The archive is written to a temporary file next to file and
// renamed over it only once complete: on any error (a source that cannot
// be read, a layer whose size or digest is wrong, ctx ended) the temporary
// file is removed and file is left as it was. Layers are streamed, not held
// in memory, and their digests checked as they are read; manifests and
// configs are read whole, at most 16 MiB each.
//
// A file that exists but is not a regular file (a directory, a FIFO), or
// whose directory does not exist, is refused with an [*fs.PathError]
// naming it, wrapping [ErrNotRegular] or [fs.ErrNotExist].
func CreateArchive(ctx context.Context, file string, sources []string, opt ArchiveOptions) (*Created, error) {
	if err := checkArchivePath(file); err != nil {
		return nil, err
	}
	fail := func(err error) (*Created, error) {
		return nil, fmt.Errorf("create %s%s: %w", ArchivePrefix, file, err)
	}
	entries, err := indexJSONEntries(opt)
	if err != nil {
		return fail(err)
	}
	c, err := compose(ctx, sources, opt.CreateOptions)
	if err != nil {
		return fail(err)
	}
	defer c.close()
	blobs, err := archiveBlobs(c.index)
	if err != nil {
		return fail(err)
	}
	desc := v1.Descriptor{MediaType: c.index.mt, Digest: c.index.digest, Size: int64(len(c.index.raw))}
	var manifests []v1.Descriptor
	for _, a := range entries {
		d := desc
		d.Annotations = a
		manifests = append(manifests, d)
	}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: manifests})
	if err != nil {
		return fail(err)
	}
	if err := writeAtomically(file, func(w io.Writer) error { return writeArchive(ctx, w, blobs, idx) }); err != nil {
		return fail(err)
	}
	return c.created(ArchivePrefix + file + "@" + c.index.digest.String()), nil
}

// checkArchivePath refuses to write an archive at file when it is not a
// regular file, or when its directory is not an existing directory.
func checkArchivePath(file string) error {
	const op = "create archive"
	if file == "" {
		return &fs.PathError{Op: op, Path: file, Err: errors.New("no file name")}
	}
	if fi, err := os.Stat(file); err == nil {
		if !fi.Mode().IsRegular() {
			return &fs.PathError{Op: op, Path: file, Err: fmt.Errorf("%w: it is %s", ErrNotRegular, fileKind(fi.Mode()))}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return &fs.PathError{Op: op, Path: file, Err: err}
	}
	dir := filepath.Dir(file)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &fs.PathError{Op: op, Path: file, Err: fmt.Errorf("directory %s does not exist: %w", dir, fs.ErrNotExist)}
	case err != nil:
		return &fs.PathError{Op: op, Path: file, Err: err}
	case !fi.IsDir():
		return &fs.PathError{Op: op, Path: file, Err: fmt.Errorf("%s is not a directory", dir)}
	}
	return nil
}

// indexJSONEntries returns the annotations of each index.json entry: one
// per name (see [ArchiveOptions.Names]), or one entry, unnamed.
func indexJSONEntries(opt ArchiveOptions) ([]map[string]string, error) {
	base := map[string]string{}
	if !opt.Created.IsZero() {
		base[AnnotationCreated] = opt.Created.UTC().Format(time.RFC3339)
	}
	if len(opt.Names) == 0 {
		if len(base) == 0 {
			return []map[string]string{nil}, nil
		}
		return []map[string]string{base}, nil
	}
	var out []map[string]string
	for _, n := range opt.Names {
		full, ref, err := ImageName(n)
		if err != nil {
			return nil, err
		}
		a := map[string]string{AnnotationImageName: full, AnnotationRefName: ref}
		for k, v := range base {
			a[k] = v
		}
		out = append(out, a)
	}
	return out, nil
}

// ImageName normalizes an image name as BuildKit's oci exporter does for
// its index.json: full is the name with its registry, repository and tag
// ("app" is "docker.io/library/app:latest"), the io.containerd.image.name
// annotation; ref is its tag, or full when it names a digest, the
// org.opencontainers.image.ref.name annotation.
func ImageName(s string) (full, ref string, err error) {
	r, err := name.ParseReference(s)
	if err != nil {
		return "", "", fmt.Errorf("image name %q: %w", s, err)
	}
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	base := reg + "/" + r.Context().RepositoryStr()
	if d, ok := r.(name.Digest); ok {
		full = base + "@" + d.DigestStr()
		return full, full, nil
	}
	tag := r.Identifier()
	return base + ":" + tag, tag, nil
}

// archiveBlob is a blob of an archive: its descriptor, and either its
// bytes (an index, a manifest, a config) or the image whose layer it is.
type archiveBlob struct {
	desc v1.Descriptor
	raw  []byte
	img  v1.Image
}

// archiveBlobs lists the blobs of the index, each once: the index, then
// for each manifest it lists the manifest, its config and its layers. The
// manifests and configs are read (and checked) here, the layers when they
// are written.
func archiveBlobs(idx *createdIndex) ([]archiveBlob, error) {
	var out []archiveBlob
	seen := map[v1.Hash]int64{}
	add := func(b archiveBlob) error {
		if size, ok := seen[b.desc.Digest]; ok {
			if size != b.desc.Size {
				return fmt.Errorf("blob %s is listed as %d bytes and as %d", b.desc.Digest, size, b.desc.Size)
			}
			return nil
		}
		if _, err := hasherOf(b.desc.Digest); err != nil {
			return fmt.Errorf("blob %s: %w", b.desc.Digest, err)
		}
		if b.desc.Size < 0 {
			return fmt.Errorf("blob %s has a negative size, %d", b.desc.Digest, b.desc.Size)
		}
		if b.raw != nil {
			if err := checkRaw(b.desc, b.raw); err != nil {
				return err
			}
		}
		seen[b.desc.Digest] = b.desc.Size
		out = append(out, b)
		return nil
	}
	if err := add(archiveBlob{desc: v1.Descriptor{MediaType: idx.mt, Digest: idx.digest, Size: int64(len(idx.raw))}, raw: idx.raw}); err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		if err := add(archiveBlob{desc: d, raw: raw}); err != nil {
			return nil, err
		}
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		if _, ok := seen[m.Config.Digest]; !ok {
			if m.Config.Size > maxManifest {
				return nil, fmt.Errorf("manifest %s: its config %s is %d bytes, too large (at most %d)", d.Digest, m.Config.Digest, m.Config.Size, maxManifest)
			}
			cf, err := img.RawConfigFile()
			if err != nil {
				return nil, fmt.Errorf("manifest %s: config %s: %w", d.Digest, m.Config.Digest, registryError(err))
			}
			if err := add(archiveBlob{desc: m.Config, raw: cf}); err != nil {
				return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
		}
		for _, l := range m.Layers {
			if err := add(archiveBlob{desc: l, img: img}); err != nil {
				return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
		}
	}
	if len(out)+3+len(algorithms(out)) > maxArchiveEntries {
		return nil, fmt.Errorf("%d blobs: more than an archive may hold (%d entries)", len(out), maxArchiveEntries)
	}
	return out, nil
}

// checkRaw checks that raw has the size and digest of desc.
func checkRaw(desc v1.Descriptor, raw []byte) error {
	if int64(len(raw)) != desc.Size {
		return fmt.Errorf("blob %s is %d bytes, its descriptor says %d", desc.Digest, len(raw), desc.Size)
	}
	h, err := hasherOf(desc.Digest)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	h.Write(raw)
	if hex.EncodeToString(h.Sum(nil)) != desc.Digest.Hex {
		return fmt.Errorf("blob %s does not match its digest", desc.Digest)
	}
	return nil
}

// algorithms returns the digest algorithms of blobs, sorted.
func algorithms(blobs []archiveBlob) []string {
	seen := map[string]bool{}
	var out []string
	for _, b := range blobs {
		if a := b.desc.Digest.Algorithm; !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// writeArchive writes the tarball: oci-layout, the blobs/ directories, the
// blobs in order, and index.json last, as BuildKit's exporter does (an
// archive cut short has no index.json). Entries have the modes BuildKit
// gives them and no time, so that the same blobs give the same archive.
func writeArchive(ctx context.Context, w io.Writer, blobs []archiveBlob, indexJSON []byte) error {
	tw := tar.NewWriter(w)
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	if err := file("oci-layout", 0o444, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	dirs := []string{"blobs/"}
	for _, a := range algorithms(blobs) {
		dirs = append(dirs, "blobs/"+a+"/")
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return fmt.Errorf("write %s: %w", d, err)
		}
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.raw != nil {
			if err := file(blobName(b.desc.Digest), 0o444, b.raw); err != nil {
				return err
			}
			continue
		}
		if err := copyLayer(ctx, tw, b); err != nil {
			return err
		}
	}
	if err := file("index.json", 0o644, indexJSON); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write the archive: %w", err)
	}
	return nil
}

// copyLayer streams a layer of its image into the archive. The images
// come from [Resolve], whose layers check their size and digest as they
// are read (those of a layout or an archive with a [verifyReader], those
// of a registry with go-containerregistry's): the layer is read to its end
// so that the check is made, and a layer of another size is refused here.
func copyLayer(ctx context.Context, tw *tar.Writer, b archiveBlob) error {
	fail := func(err error) error { return fmt.Errorf("layer %s: %w", b.desc.Digest, registryError(err)) }
	l, err := b.img.LayerByDigest(b.desc.Digest)
	if err != nil {
		return fail(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	name := blobName(b.desc.Digest)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: b.desc.Size}); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// One byte more than the size, so that a longer blob is seen; a
	// verifying reader checks its digest when it reaches the end.
	n, err := io.Copy(tw, ctxReader{ctx, io.LimitReader(rc, b.desc.Size+1)})
	switch {
	case errors.Is(err, tar.ErrWriteTooLong):
		return fail(fmt.Errorf("it is longer than the %d bytes its descriptor says", b.desc.Size))
	case err != nil:
		return fail(err)
	case n != b.desc.Size:
		return fail(fmt.Errorf("it is %d bytes, its descriptor says %d", n, b.desc.Size))
	}
	return nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// writeAtomically writes file with write: to a new temporary file in the
// same directory, synced and renamed over file only when write succeeded.
// On any error the temporary file is removed and file is left as it was.
// The file is created 0644.
func writeAtomically(file string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(file)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	// Make the rename itself durable; a directory that cannot be synced
	// (some file systems refuse) leaves the archive in place all the same.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
