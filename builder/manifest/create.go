package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Formats of the index [Create] writes.
const (
	// FormatOCI is an OCI image index.
	FormatOCI = "oci"
	// FormatDocker is a Docker manifest list.
	FormatDocker = "docker"
)

// CreateOptions say how [Create] builds and pushes an index.
type CreateOptions struct {
	Options
	// Format is FormatOCI (the default) or FormatDocker.
	Format string
	// Annotations are the index's annotations; a Docker manifest list has
	// none.
	Annotations map[string]string
	// Overrides maps a platform ("linux/arm64") to the source, spelled as
	// given to Create, whose image of that platform goes into the index
	// when several sources have one.
	Overrides map[string]string
}

// Entry is one image of a created index.
type Entry struct {
	// Platform is the platform of the image's config.
	Platform string `json:"platform"`
	// Digest is the image manifest's digest.
	Digest v1.Hash `json:"digest"`
	// MediaType is the image manifest's media type.
	MediaType types.MediaType `json:"mediaType"`
	// Source is the source it came from, as given.
	Source string `json:"source"`
}

// Created says what [Create] pushed.
type Created struct {
	// Ref is the target by digest: "registry/repo:tag@sha256:…".
	Ref string `json:"ref"`
	// Digest is the index's digest.
	Digest v1.Hash `json:"digest"`
	// MediaType is the index's media type.
	MediaType types.MediaType `json:"mediaType"`
	// Raw are the index's bytes.
	Raw []byte `json:"-"`
	// Entries are its images, in order; attestations are left out.
	Entries []Entry `json:"entries"`
	// Warnings are things the caller should know: an index entry whose
	// platform disagrees with its config, entries of a source index that
	// were dropped.
	Warnings []string `json:"warnings,omitempty"`
	// MatchingFormat is set when the index's format is not that of the
	// image manifests it lists (a Docker manifest list of OCI manifests,
	// an OCI index of Docker manifests), which some clients refuse: it is
	// the format ([FormatOCI], [FormatDocker]) that would match them.
	MatchingFormat string `json:"matchingFormat,omitempty"`
}

// ErrDockerAnnotations refuses annotations on a Docker manifest list,
// which has none.
var ErrDockerAnnotations = errors.New("a Docker manifest list has no annotations")

// ConflictError refuses different images of one platform: from two or
// more sources when no override says which one wins, or from the one
// source an override names.
type ConflictError struct {
	// Platform is the platform ("linux/amd64").
	Platform string
	// Override is the source [CreateOptions.Overrides] names for the
	// platform, "" when it names none.
	Override string
	// Images are the different images of it, in the order of the sources.
	Images []SourceImage
}

// SourceImage is an image of a source of [Create].
type SourceImage struct {
	// Source is the source, as given.
	Source string
	// Digest is the image manifest's digest.
	Digest v1.Hash
}

func (e *ConflictError) Error() string {
	var who []string
	for _, i := range e.Images {
		who = append(who, fmt.Sprintf("%s (%s)", i.Source, i.Digest))
	}
	if e.Override != "" {
		return fmt.Sprintf("%s: %s has several different %s images: %s", e.Platform, e.Override, e.Platform, strings.Join(who, ", "))
	}
	return fmt.Sprintf("two sources have a %s image: %s", e.Platform, strings.Join(who, " and "))
}

// candidate is an image a source offers for the index.
type candidate struct {
	source   string
	img      v1.Image
	desc     v1.Descriptor // how the source lists it
	platform *v1.Platform  // from its config
	key      string        // the normalized platform
}

// PlatformKey normalizes a platform for comparison: "linux/arm64" and
// "linux/aarch64/v8" are one, so are "linux/arm" and "linux/arm/v7".
func PlatformKey(p v1.Platform) string {
	n := platforms.Normalize(ocispecs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
	k := platforms.Format(n)
	if p.OSVersion != "" {
		k += ":" + p.OSVersion
	}
	return k
}

// ParsePlatformKey parses and normalizes a platform as [PlatformKey] does.
func ParsePlatformKey(s string) (string, error) {
	osv := ""
	if i := strings.LastIndex(s, ":"); i >= 0 {
		s, osv = s[:i], s[i+1:]
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return "", err
	}
	return PlatformKey(v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: osv}), nil
}

// Create builds an index of the images of sources and pushes it to the
// registry reference target. Every source is resolved, and every image's
// config read, before anything is written: a source that does not exist is
// an error wrapping [ErrNotFound] and nothing is pushed.
//
// A source that is an index gives all of its images (nested indexes
// included) and BuildKit's attestations of them. Each image is listed with
// the platform of its config. Two different images of one platform are
// refused unless opt.Overrides names the source that wins; the same image
// given twice is listed once.
func Create(ctx context.Context, target string, sources []string, opt CreateOptions) (*Created, error) {
	fail := func(err error) (*Created, error) { return nil, fmt.Errorf("create %s: %w", target, err) }
	tref, err := ParseReference(target, opt.Options)
	if err != nil {
		return fail(err)
	}
	if tref.Kind != Registry {
		return fail(fmt.Errorf("the target must be a registry reference (host:port/repo:tag), not %s", tref.Kind))
	}
	c, err := compose(ctx, sources, opt)
	if err != nil {
		return fail(err)
	}
	defer c.close()
	if err := remote.WriteIndex(tref.Name, c.index, opt.remoteOptions(ctx)...); err != nil {
		return nil, fmt.Errorf("push %s: %w", target, registryError(err))
	}
	return c.created(tref.WithDigest(c.index.digest)), nil
}

// composition is an index built of sources, what [Create] pushes and
// [CreateArchive] writes, with the sources it reads its images from, which
// stay open until it is written.
type composition struct {
	index    *createdIndex
	entries  []Entry
	warnings []string
	matching string
	sources  []*Artifact
}

// close releases the sources.
func (c *composition) close() {
	for _, a := range c.sources {
		a.Close()
	}
}

// created says what was written: the index, known by ref.
func (c *composition) created(ref string) *Created {
	return &Created{Ref: ref, Digest: c.index.digest, MediaType: c.index.mt, Raw: c.index.raw, Entries: c.entries, Warnings: c.warnings, MatchingFormat: c.matching}
}

// compose checks opt, resolves every source, reads the platform of each of
// their images from its config, chooses one image per platform (see
// [Create]) and builds the index of the chosen images and of BuildKit's
// attestations of them. The caller closes the composition.
func compose(ctx context.Context, sources []string, opt CreateOptions) (_ *composition, err error) {
	if len(sources) == 0 {
		return nil, fmt.Errorf("no sources")
	}
	mt := types.OCIImageIndex
	switch opt.Format {
	case "", FormatOCI:
	case FormatDocker:
		mt = types.DockerManifestList
		if len(opt.Annotations) > 0 {
			return nil, ErrDockerAnnotations
		}
	default:
		return nil, fmt.Errorf("unknown format %q: oci or docker", opt.Format)
	}
	overrides := map[string]string{}
	for p, src := range opt.Overrides {
		k, err := ParsePlatformKey(p)
		if err != nil {
			return nil, fmt.Errorf("platform override %s=%s: %w", p, src, err)
		}
		found := false
		for _, s := range sources {
			found = found || s == src
		}
		if !found {
			return nil, fmt.Errorf("platform override %s=%s: %s is not one of the sources (%s)", p, src, src, strings.Join(sources, ", "))
		}
		overrides[k] = src
	}

	c := &composition{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()

	// Resolve everything first.
	var cands []candidate
	var atts []candidate
	for _, src := range sources {
		a, err := Resolve(ctx, src, opt.Options)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src, err)
		}
		c.sources = append(c.sources, a)
		ms, err := a.Manifests()
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src, err)
		}
		if a.Index != nil {
			c.warnings = append(c.warnings, dropped(a, src)...)
		}
		for _, m := range ms {
			cd := candidate{source: src, img: m.Image, desc: m.Descriptor}
			if m.Attestation() {
				atts = append(atts, cd)
				continue
			}
			if cd.platform, err = ConfigPlatform(m.Image); err != nil {
				return nil, fmt.Errorf("source %s: image %s: %w", src, m.Descriptor.Digest, err)
			}
			cd.key = PlatformKey(*cd.platform)
			if a.Index != nil && m.Descriptor.Platform != nil && PlatformKey(*m.Descriptor.Platform) != cd.key {
				c.warnings = append(c.warnings, fmt.Sprintf("%s lists %s as %s, but its config says %s: listing it as %s",
					src, m.Descriptor.Digest, PlatformString(m.Descriptor.Platform), cd.platform, cd.platform))
			}
			cands = append(cands, cd)
		}
	}

	chosen, err := choose(cands, overrides)
	if err != nil {
		return nil, err
	}

	// The index: images, then the attestations of those images.
	im := v1.IndexManifest{SchemaVersion: 2, MediaType: mt}
	if len(opt.Annotations) > 0 {
		im.Annotations = opt.Annotations
	}
	images := map[v1.Hash]v1.Image{}
	add := func(cd candidate, platform *v1.Platform) {
		d := v1.Descriptor{MediaType: cd.desc.MediaType, Size: cd.desc.Size, Digest: cd.desc.Digest, Platform: platform}
		if mt == types.OCIImageIndex && len(cd.desc.Annotations) > 0 {
			d.Annotations = cd.desc.Annotations
		}
		im.Manifests = append(im.Manifests, d)
		images[d.Digest] = cd.img
	}
	kinds := map[types.MediaType]bool{}
	for _, cd := range chosen {
		add(cd, cd.platform)
		kinds[cd.desc.MediaType] = true
		c.entries = append(c.entries, Entry{Platform: cd.platform.String(), Digest: cd.desc.Digest, MediaType: cd.desc.MediaType, Source: cd.source})
	}
	for _, cd := range atts {
		if subject, err := v1.NewHash(cd.desc.Annotations[AnnotationReferenceDigest]); err == nil && images[subject] != nil && images[cd.desc.Digest] == nil {
			add(cd, cd.desc.Platform)
		}
	}
	if mt == types.DockerManifestList && kinds[types.OCIManifestSchema1] {
		c.matching = FormatOCI
	}
	if mt == types.OCIImageIndex && kinds[types.DockerManifestSchema2] {
		c.matching = FormatDocker
	}
	raw, err := json.Marshal(im)
	if err != nil {
		return nil, err
	}
	c.index = newCreatedIndex(mt, raw, images)
	return c, nil
}

// choose keeps one image per platform, in the order they were given.
func choose(cands []candidate, overrides map[string]string) ([]candidate, error) {
	byKey := map[string][]candidate{}
	var order []string
	for _, c := range cands {
		if byKey[c.key] == nil {
			order = append(order, c.key)
		}
		byKey[c.key] = append(byKey[c.key], c)
	}
	for k, src := range overrides {
		if !hasSource(byKey[k], src) {
			return nil, fmt.Errorf("platform override %s=%s: %s has no %s image", k, src, src, k)
		}
	}
	var out []candidate
	for _, k := range order {
		cs := byKey[k]
		if src, ok := overrides[k]; ok {
			var keep []candidate
			for _, c := range cs {
				if c.source == src {
					keep = append(keep, c)
				}
			}
			cs = keep
		}
		distinct := uniqueDigests(cs)
		if len(distinct) > 1 {
			ce := &ConflictError{Platform: k, Override: overrides[k]}
			for _, c := range distinct {
				ce.Images = append(ce.Images, SourceImage{Source: c.source, Digest: c.desc.Digest})
			}
			return nil, ce
		}
		out = append(out, distinct[0])
	}
	return out, nil
}

func hasSource(cs []candidate, src string) bool {
	for _, c := range cs {
		if c.source == src {
			return true
		}
	}
	return false
}

// uniqueDigests drops the candidates whose image an earlier one already is.
func uniqueDigests(cs []candidate) []candidate {
	var out []candidate
	seen := map[v1.Hash]bool{}
	for _, c := range cs {
		if !seen[c.desc.Digest] {
			seen[c.desc.Digest] = true
			out = append(out, c)
		}
	}
	return out
}

// dropped warns about the entries of a source index that are neither
// images nor indexes, which the created index leaves out.
func dropped(a *Artifact, src string) []string {
	im, err := a.Index.IndexManifest()
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			out = append(out, fmt.Sprintf("%s: leaving out %s, a %s", src, d.Digest, d.MediaType))
		}
	}
	sort.Strings(out)
	return out
}

// createdIndex is the index Create pushes and CreateArchive writes: its
// bytes, and the images it lists, from their sources.
type createdIndex struct {
	mt     types.MediaType
	raw    []byte
	digest v1.Hash
	images map[v1.Hash]v1.Image
}

var _ v1.ImageIndex = (*createdIndex)(nil)

func newCreatedIndex(mt types.MediaType, raw []byte, images map[v1.Hash]v1.Image) *createdIndex {
	sum := sha256.Sum256(raw)
	return &createdIndex{mt: mt, raw: raw, images: images, digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}}
}

func (i *createdIndex) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *createdIndex) Digest() (v1.Hash, error)            { return i.digest, nil }
func (i *createdIndex) Size() (int64, error)                { return int64(len(i.raw)), nil }
func (i *createdIndex) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *createdIndex) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(i.raw))
}

func (i *createdIndex) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := i.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("the index has no image %s", h)
}

func (i *createdIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("the index has no index %s", h)
}
