package manifest_test

// Tests of CreateArchive: merging the OCI archives that BuildKit nodes
// export, one platform each, into one archive, written whole or not at all.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"mabd/builder/manifest"
	"mabd/testing/registry"
)

// nodeExport is what one BuildKit node exports with type=oci and
// provenance: an index of one image and an attestation manifest of it.
type nodeExport struct {
	idx  v1.ImageIndex
	img  v1.Image
	dir  string // the OCI layout
	file string // the same, as a tarball
}

// newNodeExport builds the export of an image of platform ("linux/arm64")
// made of the layer base, which exports of other platforms may share, and
// a small random layer of its own, and writes it as an OCI layout and an
// OCI archive (index.json names the index "v1", as BuildKit does).
func newNodeExport(t *testing.T, platform string, base v1.Layer) nodeExport {
	t.Helper()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	own, err := random.Layer(2048, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, base, own); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()

	// The attestation: an in-toto statement about the image.
	stmt := static.NewLayer([]byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2","subject":[{"name":"app","digest":{"sha256":%q}}],"predicate":{}}`, d.Hex)), "application/vnd.in-toto+json")
	att := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if att, err = mutate.Append(att, mutate.Addendum{Layer: stmt, Annotations: map[string]string{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{manifest.AnnotationReferenceType: "attestation-manifest", manifest.AnnotationReferenceDigest: d.String()},
		}})
	dir, file := registry.WriteOCIArchive(t, idx)
	return nodeExport{idx: idx, img: img, dir: dir, file: file}
}

// fixtures are the sources of the tests: BuildKit exports of linux/amd64
// and linux/arm64 sharing a base layer, and another linux/amd64 image.
type fixtures struct {
	base                     v1.Layer
	amd64, arm64, otherAMD64 nodeExport
}

// attested are the images of the node exports, which have attestations.
func (fx fixtures) attested(t *testing.T) map[v1.Hash]bool {
	return map[v1.Hash]bool{digest(t, fx.amd64.img): true, digest(t, fx.arm64.img): true, digest(t, fx.otherAMD64.img): true}
}

// attestation says whether an index entry is an attestation manifest: a
// Docker manifest list keeps its unknown/unknown platform, not its
// annotations.
func attestation(d v1.Descriptor) bool {
	return manifest.IsAttestation(d) || manifest.PlatformString(d.Platform) == "unknown/unknown"
}

func newFixtures(t *testing.T) fixtures {
	t.Helper()
	base, err := random.Layer(64<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	return fixtures{
		base:       base,
		amd64:      newNodeExport(t, "linux/amd64", base),
		arm64:      newNodeExport(t, "linux/arm64", base),
		otherAMD64: newNodeExport(t, "linux/amd64", base),
	}
}

// TestCreateArchive merges sources into an archive and reads it back, with
// mabd and with skopeo; or fails, leaving no file, or the file that was
// there, and no temporary file.
func TestCreateArchive(t *testing.T) {
	fx := newFixtures(t)
	ctx := context.Background()
	arc := func(n nodeExport) string { return "oci-archive:" + n.file }
	// A lone linux/amd64 image whose layer is not what its digest says:
	// found only when the layer is copied, after other blobs were written.
	corrupt := newTestLayout(t, "", func(l *testLayout) { l.layer = bytes.Clone(l.layer); l.layer[len(l.layer)-1] ^= 1 })
	// The same image in a layout directory whose layer file is cut short.
	truncated := newTestLayout(t, "", nil)
	truncatedDir := truncated.writeDir(t)
	if err := os.Truncate(filepath.Join(truncatedDir, filepath.FromSlash(blobPath(truncated.layerDesc.Digest))), truncated.layerDesc.Size-3); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()

	for _, c := range []struct {
		name      string
		ctx       context.Context
		sources   []string
		opt       manifest.ArchiveOptions
		existing  bool     // the file exists before
		alone     v1.Image // an image of a node export given by digest: without its attestation
		platforms []string // of the index, "" for none: an error
		want      string   // in the error
		conflict  bool     // the error is a ConflictError
	}{
		{
			name:      "two nodes' archives",
			sources:   []string{arc(fx.amd64), arc(fx.arm64)},
			opt:       manifest.ArchiveOptions{Names: []string{"127.0.0.1:5000/app:v1"}},
			platforms: []string{"linux/amd64", "linux/arm64"},
		},
		{
			name:      "replaces an existing file",
			sources:   []string{arc(fx.arm64), arc(fx.amd64)},
			existing:  true,
			platforms: []string{"linux/arm64", "linux/amd64"},
		},
		{
			name:      "a layout directory, an archive and the same image twice",
			sources:   []string{"oci-layout:" + fx.amd64.dir, arc(fx.arm64), arc(fx.amd64)},
			platforms: []string{"linux/amd64", "linux/arm64"},
		},
		{
			name:      "an image of a node's index, by digest, and a lone image",
			sources:   []string{arc(fx.arm64) + "@" + digest(t, fx.arm64.img).String(), "oci-archive:" + newTestLayout(t, "", nil).writeArchive(t, nil)},
			alone:     fx.arm64.img,
			platforms: []string{"linux/arm64", "linux/amd64"},
		},
		{
			name:      "a Docker manifest list",
			sources:   []string{arc(fx.amd64), arc(fx.arm64)},
			opt:       manifest.ArchiveOptions{CreateOptions: manifest.CreateOptions{Format: manifest.FormatDocker}},
			platforms: []string{"linux/amd64", "linux/arm64"},
		},
		{
			name:      "an override chooses between two images of a platform",
			sources:   []string{arc(fx.amd64), arc(fx.arm64), arc(fx.otherAMD64)},
			opt:       manifest.ArchiveOptions{CreateOptions: manifest.CreateOptions{Overrides: map[string]string{"linux/amd64": arc(fx.otherAMD64)}}},
			platforms: []string{"linux/amd64", "linux/arm64"},
		},
		{
			name:     "two images of a platform",
			sources:  []string{arc(fx.amd64), arc(fx.arm64), arc(fx.otherAMD64)},
			want:     "two sources have a linux/amd64 image",
			conflict: true,
		},
		{
			name:     "two images of a platform, an existing file",
			sources:  []string{arc(fx.amd64), arc(fx.otherAMD64)},
			existing: true,
			conflict: true,
		},
		{
			name:    "a layer of another digest",
			sources: []string{arc(fx.arm64), "oci-archive:" + corrupt.writeArchive(t, nil)},
			want:    "does not match its digest",
		},
		{
			name:     "a layer of another digest, an existing file",
			sources:  []string{arc(fx.arm64), "oci-archive:" + corrupt.writeArchive(t, nil)},
			existing: true,
			want:     "does not match its digest",
		},
		{
			name:    "a layer cut short",
			sources: []string{arc(fx.arm64), "oci-layout:" + truncatedDir},
			want:    fmt.Sprintf("is %d bytes, its descriptor says %d", truncated.layerDesc.Size-3, truncated.layerDesc.Size),
		},
		{
			name:    "a source that does not exist",
			sources: []string{arc(fx.arm64), "oci-archive:" + filepath.Join(t.TempDir(), "missing.tar")},
			want:    "not found",
		},
		{
			name: "no sources",
			want: "no sources",
		},
		{
			name:    "a bad name",
			sources: []string{arc(fx.arm64)},
			opt:     manifest.ArchiveOptions{Names: []string{"UPPER/case"}},
			want:    `image name "UPPER/case"`,
		},
		{
			name:     "canceled",
			ctx:      canceled,
			sources:  []string{arc(fx.amd64), arc(fx.arm64)},
			existing: true,
			want:     "context canceled",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "out.tar")
			old := []byte("the archive that was there")
			if c.existing {
				if err := os.WriteFile(file, old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cctx := c.ctx
			if cctx == nil {
				cctx = ctx
			}
			created, err := manifest.CreateArchive(cctx, file, c.sources, c.opt)
			if c.platforms == nil {
				var ce *manifest.ConflictError
				switch {
				case err == nil:
					t.Fatalf("created %s, want an error", created.Ref)
				case c.conflict && !errors.As(err, &ce):
					t.Errorf("error %v, want a ConflictError", err)
				case !strings.HasPrefix(err.Error(), "create oci-archive:"+file+": ") || !strings.Contains(err.Error(), c.want):
					t.Errorf("error %q, want one of create oci-archive:%s saying %q", err, file, c.want)
				}
				// Nothing written: the file as it was, no temporary file.
				wantFiles := []string{}
				if c.existing {
					wantFiles = []string{"out.tar"}
					if b, _ := os.ReadFile(file); !bytes.Equal(b, old) {
						t.Errorf("the existing file changed: %d bytes", len(b))
					}
				}
				if have := dirNames(t, dir); !slices.Equal(have, wantFiles) {
					t.Errorf("%s holds %q, want %q", dir, have, wantFiles)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if have := dirNames(t, dir); !slices.Equal(have, []string{"out.tar"}) {
				t.Errorf("%s holds %q, want only out.tar", dir, have)
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("%s: %v, mode %v", file, err, fi.Mode())
			}
			if created.Ref != "oci-archive:"+file+"@"+created.Digest.String() {
				t.Errorf("ref %s", created.Ref)
			}
			var platforms []string
			for _, e := range created.Entries {
				platforms = append(platforms, e.Platform)
			}
			if !slices.Equal(platforms, c.platforms) {
				t.Errorf("entries %+v, want platforms %v", created.Entries, c.platforms)
			}
			attested := fx.attested(t)
			if c.alone != nil {
				delete(attested, digest(t, c.alone))
			}
			checkArchive(t, file, created, c.opt.Names, attested)
			if slices.Contains(c.sources, arc(fx.amd64)) && slices.Contains(c.sources, arc(fx.arm64)) {
				checkSharedLayer(t, file, fx)
			}
			skopeoInspect(t, "oci-archive:"+file, created.MediaType, c.platforms)
		})
	}
}

// checkArchive reads the archive at file that CreateArchive made: index.json
// lists the created index, named by names; mabd resolves it to the index of
// the created entries, each with its attestation when its source had one,
// and reads every blob, checking its digest; the archive holds each blob
// once, and no blob that is not needed. attested are the images whose
// sources have attestations of them.
func checkArchive(t *testing.T, file string, created *manifest.Created, names []string, attested map[v1.Hash]bool) {
	t.Helper()
	entries := tarEntries(t, file)
	var ij v1.IndexManifest
	if err := json.Unmarshal(entries["index.json"], &ij); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if want := max(len(names), 1); len(ij.Manifests) != want {
		t.Fatalf("index.json lists %d entries, want %d: %+v", len(ij.Manifests), want, ij.Manifests)
	}
	for i, d := range ij.Manifests {
		if d.Digest != created.Digest || d.MediaType != created.MediaType || d.Size != int64(len(created.Raw)) {
			t.Errorf("index.json entry %d: %+v, want the index %s", i, d, created.Digest)
		}
		if len(names) > 0 {
			full, ref, _ := manifest.ImageName(names[i])
			if d.Annotations[manifest.AnnotationImageName] != full || d.Annotations[manifest.AnnotationRefName] != ref {
				t.Errorf("index.json entry %d: annotations %v, want the name %s", i, d.Annotations, names[i])
			}
		}
	}
	if string(entries["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %q", entries["oci-layout"])
	}
	if !bytes.Equal(entries[blobPath(created.Digest)], created.Raw) {
		t.Errorf("the index blob is not the index created")
	}

	// Read all of it back, and list the blobs it needs.
	a, err := manifest.Resolve(context.Background(), "oci-archive:"+file, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Index == nil || a.Descriptor.Digest != created.Digest {
		t.Fatalf("resolved to %+v, want the index %s", a.Descriptor, created.Digest)
	}
	ms, err := a.Manifests()
	if err != nil {
		t.Fatal(err)
	}
	need := map[string]bool{blobPath(created.Digest): true}
	var images []v1.Hash
	atts := map[string]bool{}
	for _, m := range ms {
		need[blobPath(m.Descriptor.Digest)] = true
		if attestation(m.Descriptor) {
			atts[m.Descriptor.Annotations[manifest.AnnotationReferenceDigest]] = true
		} else {
			images = append(images, m.Descriptor.Digest)
		}
		mf, err := m.Image.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Image.RawConfigFile(); err != nil {
			t.Errorf("manifest %s: config: %v", m.Descriptor.Digest, err)
		}
		need[blobPath(mf.Config.Digest)] = true
		for _, l := range mf.Layers {
			need[blobPath(l.Digest)] = true
			if err := readLayer(m.Image, l.Digest); err != nil {
				t.Errorf("manifest %s: %v", m.Descriptor.Digest, err)
			}
		}
	}
	var want []v1.Hash
	for _, e := range created.Entries {
		want = append(want, e.Digest)
		// The attestations of the images that have one are kept (a
		// Docker manifest list has no annotations to say whose).
		if attested[e.Digest] != atts[e.Digest.String()] && created.MediaType == types.OCIImageIndex {
			t.Errorf("image %s from %s: attestation %v, want %v", e.Digest, e.Source, atts[e.Digest.String()], attested[e.Digest])
		}
	}
	if !slices.Equal(images, want) {
		t.Errorf("the archive's images are %v, want %v", images, want)
	}
	var blobs []string
	for n := range entries {
		if strings.HasPrefix(n, "blobs/") {
			blobs = append(blobs, n)
		}
	}
	for n := range need {
		if entries[n] == nil {
			t.Errorf("no %s in the archive", n)
		}
	}
	if len(blobs) != len(need) {
		sort.Strings(blobs)
		t.Errorf("the archive holds %d blobs, %d are needed: %q", len(blobs), len(need), blobs)
	}
}

// checkSharedLayer: the base layer of both node exports is in the archive
// once, and both images of the index list it.
func checkSharedLayer(t *testing.T, file string, fx fixtures) {
	t.Helper()
	h, _ := fx.base.Digest()
	if n := tarCount(t, file, blobPath(h)); n != 1 {
		t.Errorf("the shared layer %s is %d times in the archive", h, n)
	}
	a, err := manifest.Resolve(context.Background(), "oci-archive:"+file, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ms, _ := a.Manifests()
	users := 0
	for _, m := range ms {
		mf, _ := m.Image.Manifest()
		for _, l := range mf.Layers {
			if l.Digest == h {
				users++
			}
		}
	}
	if users != 2 {
		t.Errorf("%d images use the shared layer, want 2", users)
	}
}

// readLayer reads a layer of img to its end, which checks its digest.
func readLayer(img v1.Image, h v1.Hash) error {
	l, err := img.LayerByDigest(h)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// tarEntries returns the regular files of a tarball by name; each name
// must be there once.
func tarEntries(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if out[h.Name] != nil {
			t.Errorf("%s is twice in the archive", h.Name)
		}
		if out[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// tarCount counts the entries of a tarball named name.
func tarCount(t *testing.T, file, name string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			n++
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// skopeoInspect checks with skopeo that ref is an index of mt listing the
// platforms (attestations aside). Without skopeo, it says so and passes.
func skopeoInspect(t *testing.T, ref string, mt types.MediaType, platforms []string) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Log("no skopeo: not checked with skopeo")
		return
	}
	out, err := exec.Command("skopeo", "inspect", "--raw", ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw %s: %v %s", ref, err, stderr(err))
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(out, &im); err != nil {
		t.Fatalf("skopeo inspect --raw %s: %v: %s", ref, err, out)
	}
	var have []string
	for _, d := range im.Manifests {
		if !attestation(d) {
			have = append(have, manifest.PlatformString(d.Platform))
		}
	}
	if im.MediaType != mt || !slices.Equal(have, platforms) {
		t.Errorf("skopeo inspect --raw %s: a %s of %v, want a %s of %v", ref, im.MediaType, have, mt, platforms)
	}
}

func stderr(err error) string {
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// TestCreateArchiveNames: index.json names the index as BuildKit's
// exporter does, one entry per name, so that mabd and skopeo find it by
// tag, and skopeo copies every platform of it.
func TestCreateArchiveNames(t *testing.T) {
	fx := newFixtures(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "app.tar")
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	names := []string{"127.0.0.1:5000/app:v1", "app"}
	created, err := manifest.CreateArchive(ctx, file, []string{"oci-archive:" + fx.amd64.file, "oci-archive:" + fx.arm64.file}, manifest.ArchiveOptions{Names: names, Created: when})
	if err != nil {
		t.Fatal(err)
	}
	checkArchive(t, file, created, names, fx.attested(t))
	var ij v1.IndexManifest
	if err := json.Unmarshal(tarEntries(t, file)["index.json"], &ij); err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"io.containerd.image.name": "127.0.0.1:5000/app:v1", "org.opencontainers.image.ref.name": "v1", "org.opencontainers.image.created": "2026-01-02T02:04:05Z"},
		{"io.containerd.image.name": "docker.io/library/app:latest", "org.opencontainers.image.ref.name": "latest", "org.opencontainers.image.created": "2026-01-02T02:04:05Z"},
	}
	for i, d := range ij.Manifests {
		if fmt.Sprint(d.Annotations) != fmt.Sprint(want[i]) {
			t.Errorf("index.json entry %d: %v, want %v", i, d.Annotations, want[i])
		}
	}
	// Both entries are the index: without a tag, the archive is it too.
	for _, ref := range []string{"oci-archive:" + file, "oci-archive:" + file + ":v1", "oci-archive:" + file + ":latest"} {
		a, err := manifest.Resolve(ctx, ref, manifest.Options{})
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if ms, err := a.Manifests(); a.Descriptor.Digest != created.Digest || err != nil || len(ms) != 4 {
			t.Errorf("%s: %s, %d manifests, %v; want the index %s of 4", ref, a.Descriptor.Digest, len(ms), err, created.Digest)
		}
		a.Close()
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("no skopeo")
	}
	skopeoInspect(t, "oci-archive:"+file+":v1", types.OCIImageIndex, []string{"linux/amd64", "linux/arm64"})
	skopeoInspect(t, "oci-archive:"+file+":latest", types.OCIImageIndex, []string{"linux/amd64", "linux/arm64"})
	dest := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("skopeo", "copy", "--quiet", "--multi-arch", "all", "oci-archive:"+file+":v1", "oci:"+dest+":v1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v: %s", err, out)
	}
	a, err := manifest.Resolve(ctx, "oci-layout:"+dest+":v1", manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Descriptor.Digest != created.Digest {
		t.Errorf("skopeo copied %s, want %s", a.Descriptor.Digest, created.Digest)
	}
}

// TestImageName normalizes image names as BuildKit's oci exporter does.
func TestImageName(t *testing.T) {
	dg := "sha256:" + strings.Repeat("ab", 32)
	for _, c := range []struct{ in, full, ref, fail string }{
		{in: "127.0.0.1:5000/app:v1", full: "127.0.0.1:5000/app:v1", ref: "v1"},
		{in: "localhost:5000/team/app", full: "localhost:5000/team/app:latest", ref: "latest"},
		{in: "app", full: "docker.io/library/app:latest", ref: "latest"},
		{in: "docker.io/app:1.2", full: "docker.io/library/app:1.2", ref: "1.2"},
		{in: "index.docker.io/user/app:1.2", full: "docker.io/user/app:1.2", ref: "1.2"},
		{in: "registry.example/app@" + dg, full: "registry.example/app@" + dg, ref: "registry.example/app@" + dg},
		{in: "UPPER/case", fail: "image name"},
		{in: "app:", fail: "image name"},
	} {
		full, ref, err := manifest.ImageName(c.in)
		switch {
		case c.fail != "":
			if err == nil || !strings.Contains(err.Error(), c.fail) {
				t.Errorf("%s: %q %q %v, want an error saying %q", c.in, full, ref, err, c.fail)
			}
		case err != nil || full != c.full || ref != c.ref:
			t.Errorf("%s: %q %q %v, want %q %q", c.in, full, ref, err, c.full, c.ref)
		}
	}
}

// TestCreateArchivePath refuses files that are not regular files and
// directories that do not exist, before reading any source.
func TestCreateArchivePath(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, file string
		is         error
		want       string
	}{
		{name: "a directory", file: dir, is: manifest.ErrNotRegular, want: "it is a directory"},
		{name: "a directory, with a slash", file: dir + "/", is: manifest.ErrNotRegular, want: "it is a directory"},
		{name: "a FIFO", file: fifo, is: manifest.ErrNotRegular, want: "it is a FIFO"},
		{name: "in a missing directory", file: filepath.Join(dir, "missing", "out.tar"), is: fs.ErrNotExist, want: "does not exist"},
		{name: "in a file", file: filepath.Join(regular, "out.tar"), want: "not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The source does not exist: the path is refused first.
			_, err := manifest.CreateArchive(context.Background(), c.file, []string{"oci-archive:" + filepath.Join(dir, "missing.tar")}, manifest.ArchiveOptions{})
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != c.file || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
				t.Errorf("error %v, want an fs.PathError of %s saying %q (is %v)", err, c.file, c.want, c.is)
			}
		})
	}
	if have := dirNames(t, dir); !slices.Equal(have, []string{"fifo", "regular"}) {
		t.Errorf("%s holds %q", dir, have)
	}
}

// TestCreateArchiveStreams: a layer is copied through a buffer, never read
// whole: writing an archive of a 32 MiB layer allocates a few MiB at most.
func TestCreateArchiveStreams(t *testing.T) {
	const size = 32 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, static.NewLayer(data, types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "riscv64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	_, src := registry.WriteOCIArchive(t, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img}))
	data = nil
	file := filepath.Join(t.TempDir(), "out.tar")

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	created, err := manifest.CreateArchive(context.Background(), file, []string{"oci-archive:" + src}, manifest.ArchiveOptions{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("writing a %d-byte layer allocated %d bytes", size, alloc)
	}
	checkArchive(t, file, created, nil, nil)
}

// TestCreateArchiveFromRegistry merges an archive and an index in a
// registry: the registry's blobs are copied into the archive.
func TestCreateArchiveFromRegistry(t *testing.T) {
	fx := newFixtures(t)
	addr := registry.Start(t)
	ref := addr + "/app:arm64"
	if err := registry.PushIndex(ref, fx.arm64.idx); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "out.tar")
	created, err := manifest.CreateArchive(context.Background(), file, []string{"oci-archive:" + fx.amd64.file, ref}, manifest.ArchiveOptions{Names: []string{addr + "/app:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Entries) != 2 || created.Entries[1].Source != ref || created.Entries[1].Digest != digest(t, fx.arm64.img) {
		t.Errorf("entries %+v", created.Entries)
	}
	checkArchive(t, file, created, []string{addr + "/app:v1"}, fx.attested(t))
	checkSharedLayer(t, file, fx)
	skopeoInspect(t, "oci-archive:"+file+":v1", types.OCIImageIndex, []string{"linux/amd64", "linux/arm64"})
}
