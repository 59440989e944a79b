// Package audit checks that the files of an image are built for the
// platform the image says it is for.
//
// A multi-platform image lists one image per platform, and each image's
// config names its os, architecture and variant again. Nothing checks that
// the programs inside agree: an "arm64" image built FROM a cached amd64
// base, or with a binary copied from the build host, carries x86-64 code
// that fails on arm64 with "exec format error". [Audit] walks each
// platform's layers and compares every ELF file's class, byte order and
// e_machine with the platform's ([Expected]; the table covers the 13 Linux
// platforms Go builds for), and the config's os, architecture and variant
// with the index's platform.
//
// Layers are streamed: each layer's uncompressed tar is read once and only
// the first 64 bytes of each regular file (the ELF header) are looked at
// ([ScanLayer]), so memory does not grow with the image. Scripts, data and
// other non-ELF files are never flagged.
//
// Layers are audited in order, and a mismatching file that a later layer
// deletes (a whiteout, or an opaque directory) or replaces is still
// reported, as hidden (Problem.HiddenBy), but does not make the image fail:
// it ships bytes, not a program that runs.
//
// An audit that audits no image fails ([Report.Failure]): an index that
// lists no image, or only attestations and platforms the table does not
// know, passes nothing. Each layer is read no further than the size its
// descriptor declares, and must have that size and digest (package
// manifest checks blobs of OCI layouts and archives, go-containerregistry
// those of registries); registry requests are bounded by
// [manifest.Options.Timeout].
package audit

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/builder/manifest"
)

// Options say what to audit and how to reach registries.
type Options struct {
	manifest.Options
	// Platforms limits the audit to these platforms ("linux/arm64"); a
	// platform the image does not have is an error. Empty means all.
	Platforms []string
	// Jobs is how many platforms are audited at once (default 4).
	Jobs int
}

// Kinds of problem.
const (
	// KindConfig is an image whose config names another platform than
	// its index entry.
	KindConfig = "config"
	// KindELF is an ELF file for another machine than its platform's.
	KindELF = "elf"
)

// Problem is a mismatch between a platform and what its image holds.
type Problem struct {
	// Kind is KindConfig or KindELF.
	Kind string `json:"kind"`
	// Platform is the platform the image is declared for.
	Platform string `json:"platform"`
	// Layer is the digest of the layer holding the file (KindELF).
	Layer string `json:"layer,omitempty"`
	// Path is the file's path (KindELF).
	Path string `json:"path,omitempty"`
	// Found is what the file is for ("x86_64") or the config's platform.
	Found string `json:"found"`
	// Expected is what it should be ("aarch64", "linux/arm64").
	Expected string `json:"expected"`
	// HiddenBy is the digest of a later layer that deletes or replaces the
	// file; such a problem does not fail the audit.
	HiddenBy string `json:"hiddenBy,omitempty"`
	// Message says it in a sentence.
	Message string `json:"message"`
}

// LayerReport is what one layer of a platform's image holds.
type LayerReport struct {
	// Digest is the layer's (compressed) digest.
	Digest string `json:"digest"`
	// MediaType is its media type.
	MediaType types.MediaType `json:"mediaType"`
	LayerStats
	// Skipped says why the layer was not read (not a file system layer).
	Skipped string `json:"skipped,omitempty"`
}

// PlatformReport is the audit of one platform's image.
type PlatformReport struct {
	// Platform is the platform the index declares (for a lone image, its
	// config's).
	Platform string `json:"platform"`
	// Digest is the image manifest's digest.
	Digest string `json:"digest"`
	// Ref refers to the image manifest by digest.
	Ref string `json:"ref"`
	// Config is the platform its config names.
	Config string `json:"config,omitempty"`
	// Expected names the machine its ELF files should be for ("aarch64").
	Expected string `json:"expected,omitempty"`
	// Skipped says why the image was not audited (an attestation, an
	// architecture with no ELF table entry).
	Skipped string `json:"skipped,omitempty"`
	// Layers are its layers, in order.
	Layers []LayerReport `json:"layers,omitempty"`
	// Problems are its mismatches, config first, then files in layer
	// order.
	Problems []Problem `json:"problems,omitempty"`
}

// Failed says whether the platform has a problem that is not hidden.
func (p PlatformReport) Failed() bool {
	for _, pr := range p.Problems {
		if pr.HiddenBy == "" {
			return true
		}
	}
	return false
}

// Report is the audit of a reference.
type Report struct {
	// Ref is the reference audited.
	Ref string `json:"ref"`
	// Digest is the digest of what it resolved to.
	Digest string `json:"digest"`
	// MediaType is its media type.
	MediaType types.MediaType `json:"mediaType"`
	// Platforms are the audits of its images, in index order.
	Platforms []PlatformReport `json:"platforms"`
	// Failure says why the audit failed although no platform has a
	// problem: it audited no image (an index that lists none, or only
	// attestations and platforms it skipped). Empty otherwise.
	Failure string `json:"failure,omitempty"`
}

// Problems returns the problems that are not hidden, of every platform.
func (r *Report) Problems() []Problem {
	var out []Problem
	for _, p := range r.Platforms {
		for _, pr := range p.Problems {
			if pr.HiddenBy == "" {
				out = append(out, pr)
			}
		}
	}
	return out
}

// OK says whether the audit passed: it audited at least one image, and no
// platform has a problem that is not hidden.
func (r *Report) OK() bool { return r.Failure == "" && len(r.Problems()) == 0 }

// nothingAudited says why a report fails for having audited no image, or
// returns "" when it audited one.
func nothingAudited(r *Report) string {
	var skipped []string
	for _, p := range r.Platforms {
		if p.Skipped == "" {
			return ""
		}
		skipped = append(skipped, p.Platform+": "+p.Skipped)
	}
	if len(skipped) == 0 {
		return fmt.Sprintf("%s lists no image: there is nothing to audit", r.Ref)
	}
	return fmt.Sprintf("no image of %s could be audited (%s)", r.Ref, strings.Join(skipped, "; "))
}

// Audit resolves ref (a registry reference, oci-layout:DIR or
// oci-archive:FILE; see package manifest) and audits the image of each of
// its platforms, or of opt.Platforms. An error means the audit could not be
// done; mismatches are in the report, and so is the failure of an audit
// that audited no image ([Report.Failure]).
func Audit(ctx context.Context, ref string, opt Options) (*Report, error) {
	a, err := manifest.Resolve(ctx, ref, opt.Options)
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", ref, err)
	}
	defer a.Close()
	ms, err := a.Manifests()
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", ref, err)
	}
	ms, err = selectPlatforms(ms, opt.Platforms)
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", ref, err)
	}
	rep := &Report{Ref: ref, Digest: a.Descriptor.Digest.String(), MediaType: a.Descriptor.MediaType, Platforms: make([]PlatformReport, len(ms))}
	jobs := opt.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	errs := make([]error, len(ms))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rep.Platforms[i], errs[i] = auditImage(ctx, m)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("audit %s: %w", ref, err)
		}
	}
	rep.Failure = nothingAudited(rep)
	return rep, nil
}

// selectPlatforms keeps the manifests of the platforms asked for.
func selectPlatforms(ms []manifest.Manifest, want []string) ([]manifest.Manifest, error) {
	if len(want) == 0 {
		return ms, nil
	}
	var have []string
	keep := make([]bool, len(ms))
	for _, m := range ms {
		if m.Descriptor.Platform != nil && !m.Attestation() {
			have = append(have, manifest.PlatformString(m.Descriptor.Platform))
		}
	}
	for _, w := range want {
		k, err := manifest.ParsePlatformKey(w)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", w, err)
		}
		found := false
		for i, m := range ms {
			if m.Descriptor.Platform != nil && !m.Attestation() && manifest.PlatformKey(*m.Descriptor.Platform) == k {
				keep[i], found = true, true
			}
		}
		if !found {
			if len(have) == 0 {
				return nil, fmt.Errorf("no %s image (it has no image of any platform)", w)
			}
			return nil, fmt.Errorf("no %s image (it has %s)", w, strings.Join(have, ", "))
		}
	}
	var out []manifest.Manifest
	for i, m := range ms {
		if keep[i] {
			out = append(out, m)
		}
	}
	return out, nil
}

// auditImage audits one platform's image.
func auditImage(ctx context.Context, m manifest.Manifest) (PlatformReport, error) {
	pr := PlatformReport{Digest: m.Descriptor.Digest.String(), Ref: m.Ref, Platform: manifest.PlatformString(m.Descriptor.Platform)}
	if m.Attestation() {
		pr.Skipped = "a BuildKit attestation, not an image"
		return pr, nil
	}
	cp, err := manifest.ConfigPlatform(m.Image)
	if err != nil {
		return pr, fmt.Errorf("%s: read config: %w", m.Ref, err)
	}
	pr.Config = cp.String()
	declared := cp
	if m.Descriptor.Platform != nil {
		declared = m.Descriptor.Platform
	}
	pr.Platform = declared.String()
	if manifest.PlatformKey(*declared) != manifest.PlatformKey(*cp) {
		pr.Problems = append(pr.Problems, Problem{Kind: KindConfig, Platform: pr.Platform, Found: pr.Config, Expected: pr.Platform,
			Message: fmt.Sprintf("%s image %s has a %s config", pr.Platform, pr.Digest, pr.Config)})
	}
	if declared.OS == "windows" {
		pr.Skipped = "a windows image: no ELF files to check"
		return pr, nil
	}
	want, err := Expected(declared.OS + "/" + declared.Architecture + variantSuffix(declared.Variant))
	if err != nil {
		pr.Skipped = err.Error()
		return pr, nil
	}
	pr.Expected = want.String()

	layers, err := m.Image.Layers()
	if err != nil {
		return pr, fmt.Errorf("%s: layers: %w", m.Ref, err)
	}
	// earlier maps the paths of the mismatching files of the layers
	// already read to their problems, for later layers to hide.
	earlier := map[string][]int{}
	for _, l := range layers {
		lr, err := auditLayer(ctx, l, &pr, want, earlier)
		if err != nil {
			return pr, fmt.Errorf("%s: layer %s: %w", m.Ref, lr.Digest, err)
		}
		pr.Layers = append(pr.Layers, lr)
	}
	return pr, nil
}

func variantSuffix(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

// auditLayer scans one layer of pr's image.
func auditLayer(ctx context.Context, l v1.Layer, pr *PlatformReport, want Identity, earlier map[string][]int) (LayerReport, error) {
	var lr LayerReport
	d, err := l.Digest()
	if err != nil {
		return lr, err
	}
	lr.Digest = d.String()
	if lr.MediaType, err = l.MediaType(); err != nil {
		return lr, err
	}
	if !fileSystemLayer(lr.MediaType) {
		lr.Skipped = fmt.Sprintf("a %s, not a file system layer", lr.MediaType)
		return lr, nil
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return lr, err
	}
	defer rc.Close()
	hide := func(i int) {
		if pr.Problems[i].HiddenBy == "" {
			pr.Problems[i].HiddenBy = lr.Digest
			pr.Problems[i].Message += "; deleted or replaced by layer " + lr.Digest
		}
	}
	hideUnder := func(dir string) {
		for p, is := range earlier {
			if dir == "/" || p == dir || strings.HasPrefix(p, dir+"/") {
				for _, i := range is {
					hide(i)
				}
			}
		}
	}
	var found []int
	lr.LayerStats, err = scan(ctxReader{ctx, rc}, func(p string, h *tar.Header, f *Finding) {
		base, dir := path.Base(p), path.Dir(p)
		switch {
		case base == ".wh..wh..opq":
			hideUnder(dir)
		case strings.HasPrefix(base, ".wh."):
			hideUnder(path.Join(dir, strings.TrimPrefix(base, ".wh.")))
		default:
			for _, i := range earlier[p] {
				hide(i)
			}
		}
		if f == nil || f.Identity == want {
			return
		}
		found = append(found, len(pr.Problems))
		pr.Problems = append(pr.Problems, Problem{Kind: KindELF, Platform: pr.Platform, Layer: lr.Digest, Path: f.Path,
			Found: f.Arch, Expected: want.String(),
			Message: fmt.Sprintf("%s image contains %s %s (layer %s)", pr.Platform, f.Arch, f.Path, lr.Digest)})
	})
	if err != nil {
		return lr, err
	}
	for _, i := range found {
		p := pr.Problems[i].Path
		if !slices.Contains(earlier[p], i) {
			earlier[p] = append(earlier[p], i)
		}
	}
	return lr, nil
}

// fileSystemLayer says whether a layer media type is a tar of files.
func fileSystemLayer(mt types.MediaType) bool {
	if mt == types.DockerForeignLayer {
		return false
	}
	return strings.Contains(string(mt), ".tar") || strings.HasSuffix(string(mt), "tar")
}

// ctxReader stops reading when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
