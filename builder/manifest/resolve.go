package manifest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations of OCI image layouts and of BuildKit's attestations.
const (
	// AnnotationRefName names an entry of a layout's index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName is containerd's and BuildKit's image name
	// ("docker.io/library/x:tag") of an index.json entry.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationReferenceType is "attestation-manifest" on BuildKit's
	// attestation manifests (platform unknown/unknown).
	AnnotationReferenceType = "vnd.docker.reference.type"
	// AnnotationReferenceDigest is the digest of the image an attestation
	// manifest is about.
	AnnotationReferenceDigest = "vnd.docker.reference.digest"
)

// maxDepth bounds the nesting of indexes.
const maxDepth = 8

// Artifact is what a reference resolves to: an image manifest or an image
// index (a Docker manifest list is an index too).
type Artifact struct {
	// Ref is the reference it was resolved from.
	Ref Reference
	// Descriptor has its media type, digest and size, and its platform
	// when the layout index that lists it gives one.
	Descriptor v1.Descriptor
	// Raw are its bytes exactly as stored.
	Raw []byte
	// Image is set when it is an image manifest.
	Image v1.Image
	// Index is set when it is an image index.
	Index v1.ImageIndex

	st store
}

// Close releases the archive file an oci-archive reference holds open.
func (a *Artifact) Close() error {
	if a.st == nil {
		return nil
	}
	return a.st.close()
}

// Resolve fetches what ref names: the manifest or index of a registry
// reference, or an entry of an OCI layout or archive (see the package
// documentation). The caller closes the artifact.
func Resolve(ctx context.Context, ref string, opt Options) (*Artifact, error) {
	r, err := ParseReference(ref, opt)
	if err != nil {
		return nil, err
	}
	return ResolveReference(ctx, r, opt)
}

// ResolveReference is [Resolve] for a parsed reference.
func ResolveReference(ctx context.Context, r Reference, opt Options) (*Artifact, error) {
	if r.Kind == Registry {
		return resolveRemote(ctx, r, opt)
	}
	return resolveLayout(r)
}

func resolveRemote(ctx context.Context, r Reference, opt Options) (*Artifact, error) {
	d, err := remote.Get(r.Name, opt.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", r, registryError(err))
	}
	// Only what the registry says of the manifest itself (go-containerregistry
	// adds an artifactType taken from the config's media type).
	desc := v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest}
	a := &Artifact{Ref: r, Descriptor: desc, Raw: d.Manifest}
	switch {
	case d.MediaType.IsIndex():
		a.Index, err = d.ImageIndex()
	case d.MediaType.IsImage():
		a.Image, err = d.Image()
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", r, registryError(err))
	}
	return a, nil
}

// registryError marks a registry's 404 answers as [ErrNotFound], and
// reduces a request that timed out to its [TimeoutError] (go-containerregistry
// would repeat it for each URL it tried).
func registryError(err error) error {
	if te := (*TimeoutError)(nil); errors.As(err, &te) {
		return te
	}
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func resolveLayout(r Reference) (a *Artifact, err error) {
	var st store
	if r.Kind == Layout {
		fi, err := os.Stat(r.Path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("open %s: %w: %w", r, ErrNotFound, err)
			}
			return nil, fmt.Errorf("open %s: %w", r, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("open %s: %s is not a directory (for a tarball, use %s%s)", r, r.Path, ArchivePrefix, r.Path)
		}
		st = dirStore{dir: r.Path}
	} else {
		ts, err := openTarStore(r.Path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", r, err)
		}
		st = ts
	}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	root, err := readIndexJSON(st)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("open %s: index.json: %w", r, err)
	}
	var desc v1.Descriptor
	switch {
	case r.Digest != nil && *r.Digest == root.desc.Digest, r.Digest == nil && r.Tag == "" && distinctDigests(im.Manifests) != 1:
		return &Artifact{Ref: r, Descriptor: root.desc, Raw: root.raw, Index: root, st: st}, nil
	case r.Digest != nil:
		d, ok, err := findDescriptor(root, *r.Digest, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", r, err)
		}
		if !ok { // a blob no index lists: its media type is in it
			raw, err := readBlob(st, *r.Digest, -1)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", r, err)
			}
			d = v1.Descriptor{MediaType: sniffMediaType(raw), Digest: *r.Digest, Size: int64(len(raw))}
		}
		desc = d
	case r.Tag != "":
		var found []v1.Descriptor
		var names []string
		for _, d := range im.Manifests {
			if n := d.Annotations[AnnotationRefName]; n != "" {
				names = append(names, n)
			}
			if tagMatches(d, r.Tag) {
				found = append(found, d)
			}
		}
		switch distinctDigests(found) {
		case 0:
			sort.Strings(names)
			have := "it has no named entries"
			if len(names) > 0 {
				have = "it has " + strings.Join(names, ", ")
			}
			return nil, fmt.Errorf("open %s: no entry of %s/index.json is named %q (%s): %w", r, st.where(), r.Tag, have, ErrNotFound)
		case 1:
			desc = found[0]
		default:
			return nil, fmt.Errorf("open %s: %d entries of %s/index.json are named %q: give @DIGEST", r, len(found), st.where(), r.Tag)
		}
	default:
		desc = im.Manifests[0]
	}
	a, err = artifactOf(st, r, desc)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	return a, nil
}

// distinctDigests counts the different digests of ds: BuildKit writes one
// index.json entry per image name, all of the same index, and they stand
// for that one index.
func distinctDigests(ds []v1.Descriptor) int {
	seen := map[v1.Hash]bool{}
	for _, d := range ds {
		seen[d.Digest] = true
	}
	return len(seen)
}

// readIndexJSON reads the layout's index.json as an index.
func readIndexJSON(st store) (*storeIndex, error) {
	rc, size, err := st.open("index.json")
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	defer rc.Close()
	if size > maxManifest {
		return nil, fmt.Errorf("index.json is %d bytes, too large (at most %d)", size, maxManifest)
	}
	raw, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("read index.json: %w", err)
	}
	if len(raw) > maxManifest {
		return nil, fmt.Errorf("index.json is more than %d bytes, too large", maxManifest)
	}
	mt := sniffMediaType(raw)
	if mt == "" {
		mt = types.OCIImageIndex
	}
	if !mt.IsIndex() {
		return nil, fmt.Errorf("index.json is a %s, not an image index", mt)
	}
	sum := sha256.Sum256(raw)
	h := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}
	return newStoreIndex(st, v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}, raw), nil
}

// tagMatches says whether an index.json entry is named tag: its
// org.opencontainers.image.ref.name, or the tag or whole of its
// io.containerd.image.name.
func tagMatches(d v1.Descriptor, tag string) bool {
	if d.Annotations[AnnotationRefName] == tag {
		return true
	}
	n := d.Annotations[AnnotationImageName]
	return n != "" && (n == tag || strings.HasSuffix(n, ":"+tag))
}

// findDescriptor looks for h among the manifests of idx and the indexes it
// nests.
func findDescriptor(idx *storeIndex, h v1.Hash, depth int) (v1.Descriptor, bool, error) {
	if depth > maxDepth {
		return v1.Descriptor{}, false, fmt.Errorf("indexes nest more than %d deep", maxDepth)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, false, err
	}
	for _, d := range im.Manifests {
		if d.Digest == h {
			return d, true, nil
		}
	}
	for _, d := range im.Manifests {
		if !d.MediaType.IsIndex() {
			continue
		}
		raw, err := readBlob(idx.s, d.Digest, d.Size)
		if err != nil {
			return v1.Descriptor{}, false, err
		}
		if found, ok, err := findDescriptor(newStoreIndex(idx.s, d, raw), h, depth+1); ok || err != nil {
			return found, ok, err
		}
	}
	return v1.Descriptor{}, false, nil
}

// artifactOf reads the blob desc names.
func artifactOf(st store, r Reference, desc v1.Descriptor) (*Artifact, error) {
	raw, err := readBlob(st, desc.Digest, desc.Size)
	if err != nil {
		return nil, err
	}
	if desc.MediaType == "" {
		desc.MediaType = sniffMediaType(raw)
	}
	a := &Artifact{Ref: r, Descriptor: desc, Raw: raw, st: st}
	switch {
	case desc.MediaType.IsIndex():
		a.Index = newStoreIndex(st, desc, raw)
	case desc.MediaType.IsImage():
		if a.Image, err = newStoreImage(st, desc, raw); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Manifest is one image manifest of an artifact.
type Manifest struct {
	// Ref refers to it by digest: "registry/repo:tag@sha256:…".
	Ref string
	// Descriptor is how its index lists it, platform included; for a lone
	// image, the platform comes from its config.
	Descriptor v1.Descriptor
	// Raw are its bytes as stored.
	Raw []byte
	// Image is the image.
	Image v1.Image
	// Indexes are the digests of the indexes that lead to it, outermost
	// first; empty for a lone image.
	Indexes []v1.Hash
}

// Attestation says whether the manifest is a BuildKit attestation (an
// in-toto SBOM or provenance of another manifest) rather than an image.
func (m Manifest) Attestation() bool { return IsAttestation(m.Descriptor) }

// IsAttestation says whether an index entry is a BuildKit attestation
// manifest.
func IsAttestation(d v1.Descriptor) bool {
	return d.Annotations[AnnotationReferenceType] == "attestation-manifest"
}

// Manifests lists the image manifests of the artifact: itself when it is an
// image, the images of an index otherwise, descending into nested indexes in
// order. Entries that are neither images nor indexes are left out.
func (a *Artifact) Manifests() ([]Manifest, error) {
	switch {
	case a.Image != nil:
		d := a.Descriptor
		if d.Platform == nil {
			p, err := ConfigPlatform(a.Image)
			if err != nil {
				return nil, fmt.Errorf("read config of %s: %w", a.Ref, err)
			}
			d.Platform = p
		}
		return []Manifest{{Ref: a.Ref.WithDigest(a.Descriptor.Digest), Descriptor: d, Raw: a.Raw, Image: a.Image}}, nil
	case a.Index != nil:
		var out []Manifest
		if err := a.walk(a.Index, []v1.Hash{a.Descriptor.Digest}, &out); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s is a %s, neither an image nor an index", a.Ref, a.Descriptor.MediaType)
}

func (a *Artifact) walk(idx v1.ImageIndex, path []v1.Hash, out *[]Manifest) error {
	if len(path) > maxDepth {
		return fmt.Errorf("read %s: indexes nest more than %d deep", a.Ref, maxDepth)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("read index %s of %s: %w", path[len(path)-1], a.Ref, err)
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("read index %s of %s: %w", d.Digest, a.Ref, registryError(err))
			}
			if err := a.walk(child, append(path[:len(path):len(path)], d.Digest), out); err != nil {
				return err
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return fmt.Errorf("read manifest %s of %s: %w", d.Digest, a.Ref, registryError(err))
			}
			raw, err := img.RawManifest()
			if err != nil {
				return fmt.Errorf("read manifest %s of %s: %w", d.Digest, a.Ref, registryError(err))
			}
			*out = append(*out, Manifest{Ref: a.Ref.WithDigest(d.Digest), Descriptor: d, Raw: raw, Image: img, Indexes: path})
		}
	}
	return nil
}

// ConfigPlatform reads an image's platform from its config: os,
// architecture, variant, os.version and os.features. A config said to be
// larger than 16 MiB is not read.
func ConfigPlatform(img v1.Image) (*v1.Platform, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if m.Config.Size > maxManifest {
		return nil, fmt.Errorf("its config %s is %d bytes, too large (at most %d)", m.Config.Digest, m.Config.Size, maxManifest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if cf.OS == "" || cf.Architecture == "" {
		return nil, fmt.Errorf("its config has no os and architecture (os %q, architecture %q)", cf.OS, cf.Architecture)
	}
	p := &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant, OSVersion: cf.OSVersion, OSFeatures: cf.OSFeatures}
	return p, nil
}

// PlatformString formats a platform "os/arch[/variant][:os.version]"; nil
// is "unknown".
func PlatformString(p *v1.Platform) string {
	if p == nil {
		return "unknown"
	}
	return p.String()
}
