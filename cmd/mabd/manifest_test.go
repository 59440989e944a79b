package main

// Tests of `mabd manifest inspect` and `mabd manifest create` against a real
// registry (Debian's docker-registry, testing/registry) with busybox images
// built by go-containerregistry, and skopeo as the independent client.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"mabd/internal/cli"
	"mabd/testing/registry"
)

// mfSkopeoRaw returns what `skopeo inspect --raw` says ref's manifest is.
func mfSkopeoRaw(t *testing.T, ref string) []byte {
	t.Helper()
	return skopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
}

// mfSkopeoConfig returns the config skopeo picks from ref for arch.
func mfSkopeoConfig(t *testing.T, ref, arch string) v1.ConfigFile {
	t.Helper()
	out := skopeo(t, "inspect", "--config", "--tls-verify=false", "--override-os", "linux", "--override-arch", arch, "docker://"+ref)
	var cf v1.ConfigFile
	if err := json.Unmarshal(out, &cf); err != nil {
		t.Fatal(err)
	}
	return cf
}

func mfDigest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// mfBusybox builds the busybox image of a Debian architecture.
func mfBusybox(t *testing.T, debArch string) v1.Image {
	t.Helper()
	img, _, err := registry.BusyboxImage(registry.DebianBase(t, debArch))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// mfPush pushes an image or an index to ref over plain HTTP.
func mfPush(t *testing.T, ref string, what any) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	switch w := what.(type) {
	case v1.Image:
		err = remote.Write(r, w)
	case v1.ImageIndex:
		err = remote.WriteIndex(r, w)
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// mfTagExists asks the registry whether repo:tag exists.
func mfTagExists(t *testing.T, addr, repo, tag string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	t.Fatalf("HEAD %s:%s: %s", repo, tag, resp.Status)
	return false
}

type mfIndex struct {
	MediaType   string            `json:"mediaType"`
	Annotations map[string]string `json:"annotations"`
	Manifests   []struct {
		MediaType string       `json:"mediaType"`
		Digest    string       `json:"digest"`
		Platform  *v1.Platform `json:"platform"`
	} `json:"manifests"`
}

func mfParseIndex(t *testing.T, raw []byte) mfIndex {
	t.Helper()
	var idx mfIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	return idx
}

// platforms lists the platforms of an index, by digest.
func (idx mfIndex) platforms() map[string]string {
	m := map[string]string{}
	for _, d := range idx.Manifests {
		m[d.Digest] = d.Platform.String()
	}
	return m
}

type mfVerbose struct {
	Ref         string
	Descriptor  v1.Descriptor
	Raw         []byte
	OCIManifest json.RawMessage
}

// TestManifestInspect inspects a single-platform image and a two-platform
// index in a registry: the bytes, media types, digests and platforms are
// what skopeo sees.
func TestManifestInspect(t *testing.T) {
	addr := registry.Start(t)
	single := addr + "/demo:v1-amd64"
	mfPush(t, single, mfBusybox(t, "amd64"))
	multi := registry.PushBusyboxBase(t, addr, "base/busybox", "amd64", "arm64")

	for _, ref := range []string{single, multi} {
		want := mfSkopeoRaw(t, ref)
		code, out, _ := mabd(t, "manifest", "inspect", "--raw", ref)
		if code != 0 || out != string(want) {
			t.Errorf("inspect --raw %s: %d, %s, want skopeo's %s", ref, code, mfDigest([]byte(out)), mfDigest(want))
		}
		// The default output is the same JSON, indented.
		code, out, _ = mabd(t, "manifest", "inspect", ref)
		var a, b bytes.Buffer
		if code != 0 || json.Compact(&a, []byte(out)) != nil || json.Compact(&b, want) != nil || a.String() != b.String() || !strings.HasSuffix(out, "}\n") {
			t.Errorf("inspect %s: %d\n%s", ref, code, out)
		}
	}

	// The single image: its config's platform.
	raw := mfSkopeoRaw(t, single)
	code, out, _ := mabd(t, "manifest", "inspect", "--verbose", single)
	var one mfVerbose
	if err := json.Unmarshal([]byte(out), &one); code != 0 || err != nil {
		t.Fatalf("inspect --verbose %s: %d %v", single, code, err)
	}
	if one.Descriptor.MediaType != "application/vnd.oci.image.manifest.v1+json" || one.Descriptor.Digest.String() != mfDigest(raw) ||
		one.Descriptor.Platform.String() != "linux/amd64" || one.Ref != single+"@"+mfDigest(raw) || !bytes.Equal(one.Raw, raw) || len(one.OCIManifest) == 0 {
		t.Errorf("inspect --verbose %s: %+v", single, one)
	}

	// The index: each manifest with its descriptor, as skopeo lists them.
	idx := mfParseIndex(t, mfSkopeoRaw(t, multi))
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || len(idx.Manifests) != 2 {
		t.Fatalf("index %+v", idx)
	}
	code, out, _ = mabd(t, "manifest", "inspect", "--verbose", multi)
	var many []mfVerbose
	if err := json.Unmarshal([]byte(out), &many); code != 0 || err != nil || len(many) != 2 {
		t.Fatalf("inspect --verbose %s: %d %v %d entries", multi, code, err, len(many))
	}
	for i, e := range many {
		d := idx.Manifests[i]
		if e.Descriptor.Digest.String() != d.Digest || e.Descriptor.Platform.String() != d.Platform.String() || mfDigest(e.Raw) != d.Digest ||
			!bytes.Equal(e.Raw, mfSkopeoRaw(t, addr+"/base/busybox@"+d.Digest)) || e.Ref != multi+"@"+d.Digest {
			t.Errorf("entry %d: %s %s %s, want %s %s", i, e.Ref, e.Descriptor.Digest, e.Descriptor.Platform, d.Digest, d.Platform)
		}
	}
	if got := []string{many[0].Descriptor.Platform.String(), many[1].Descriptor.Platform.String()}; !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v", got)
	}

	// The table: a line per manifest.
	code, out, _ = mabd(t, "manifest", "inspect", "--format", "table", multi)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "DIGEST") {
		t.Fatalf("table: %d\n%s", code, out)
	}
	for i, d := range idx.Manifests {
		f := strings.Fields(lines[i+1])
		if len(f) != 5 || f[0] != d.Digest || f[1] != d.Platform.String() || f[3] != "1" || !strings.HasSuffix(f[2], "MB") {
			t.Errorf("table line %q, want %s %s, 1 layer", lines[i+1], d.Digest, d.Platform)
		}
	}

	// Errors: bad usage, a reference that does not exist.
	if code, _, _ := mabd(t, "manifest", "inspect", "--raw", "--verbose", multi); code != cli.ExitError {
		t.Errorf("--raw --verbose: exit %d", code)
	}
	code, _, errs := mabd(t, "manifest", "inspect", addr+"/demo:nope")
	if code != cli.ExitError || !strings.Contains(errs, addr+"/demo:nope") || !strings.Contains(errs, "not found") {
		t.Errorf("missing: %d %q", code, errs)
	}
}

// mfOCIArchive writes idx as BuildKit's type=oci output does: an OCI
// layout whose index.json lists one image index (named v1), in a tarball.
func mfOCIArchive(t *testing.T, idx v1.ImageIndex) string {
	t.Helper()
	_, file := registry.WriteOCIArchive(t, idx)
	return file
}

// TestManifestInspectOCIArchive inspects a tarball with a nested index.
func TestManifestInspectOCIArchive(t *testing.T) {
	idx, err := registry.BusyboxIndex(registry.DebianBase(t, "amd64"), registry.DebianBase(t, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	file := mfOCIArchive(t, idx)
	want, _ := idx.RawManifest()
	im, _ := idx.IndexManifest()
	for _, ref := range []string{"oci-archive:" + file, "oci-archive:" + file + ":v1"} {
		code, out, _ := mabd(t, "manifest", "inspect", "--raw", ref)
		if code != 0 || out != string(want) {
			t.Errorf("inspect --raw %s: %d\n%s\nwant the nested index\n%s", ref, code, out, want)
		}
	}
	ref := "oci-archive:" + file
	code, out, _ := mabd(t, "manifest", "inspect", "--verbose", ref)
	var many []mfVerbose
	if err := json.Unmarshal([]byte(out), &many); code != 0 || err != nil || len(many) != 2 {
		t.Fatalf("inspect --verbose: %d %v", code, err)
	}
	for i, e := range many {
		if e.Descriptor.Digest != im.Manifests[i].Digest || e.Descriptor.Platform.String() != im.Manifests[i].Platform.String() || e.Ref != ref+"@"+im.Manifests[i].Digest.String() {
			t.Errorf("entry %d: %s %s %s", i, e.Ref, e.Descriptor.Digest, e.Descriptor.Platform)
		}
	}
	code, out, _ = mabd(t, "manifest", "inspect", "--format", "table", ref)
	if code != 0 || !strings.Contains(out, im.Manifests[0].Digest.String()+"  linux/amd64") || !strings.Contains(out, im.Manifests[1].Digest.String()+"  linux/arm64") {
		t.Errorf("table: %d\n%s", code, out)
	}
	// One manifest of it, by digest: the image manifest itself.
	code, out, _ = mabd(t, "manifest", "inspect", "--raw", ref+"@"+im.Manifests[1].Digest.String())
	if code != 0 || mfDigest([]byte(out)) != im.Manifests[1].Digest.String() {
		t.Errorf("by digest: %d %s", code, mfDigest([]byte(out)))
	}
	// The archive's images are right: the audit passes.
	if code, out, _ := mabd(t, "image", "audit", ref); code != 0 || !strings.Contains(out, "2 platforms audited: 2 clean") {
		t.Errorf("audit %s: %d\n%s", ref, code, out)
	}
}

// TestManifestCreate joins demo:v1-amd64 and demo:v1-arm64 into demo:v1,
// refuses a platform two sources have unless told which wins, and pushes
// nothing when a source is missing.
func TestManifestCreate(t *testing.T) {
	addr := registry.Start(t)
	repo := addr + "/demo"
	amd, arm := mfBusybox(t, "amd64"), mfBusybox(t, "arm64")
	mfPush(t, repo+":v1-amd64", amd)
	mfPush(t, repo+":v1-arm64", arm)
	amdDigest := mfDigest(mfSkopeoRaw(t, repo+":v1-amd64"))
	armDigest := mfDigest(mfSkopeoRaw(t, repo+":v1-arm64"))

	code, out, _ := mabd(t, "manifest", "create", repo+":v1", repo+":v1-amd64", repo+":v1-arm64")
	if code != 0 {
		t.Fatalf("create: exit %d", code)
	}
	raw := mfSkopeoRaw(t, repo+":v1")
	if got := strings.TrimSpace(out); got != mfDigest(raw) {
		t.Errorf("create printed %q, skopeo's digest is %s", got, mfDigest(raw))
	}
	idx := mfParseIndex(t, raw)
	want := map[string]string{amdDigest: "linux/amd64", armDigest: "linux/arm64"}
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || !maps.Equal(idx.platforms(), want) {
		t.Errorf("demo:v1 is %s of %v, want %v", idx.MediaType, idx.platforms(), want)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if cf := mfSkopeoConfig(t, repo+":v1", arch); cf.Architecture != arch || cf.OS != "linux" {
			t.Errorf("skopeo picks a %s/%s config for %s", cf.OS, cf.Architecture, arch)
		}
	}

	// Two different amd64 images: refused, nothing pushed; then settled.
	cf, _ := amd.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Cmd = []string{"sh", "-c", "echo v2"}
	amd2, err := mutate.ConfigFile(amd, cf)
	if err != nil {
		t.Fatal(err)
	}
	mfPush(t, repo+":v2-amd64", amd2)
	amd2Digest := mfDigest(mfSkopeoRaw(t, repo+":v2-amd64"))
	code, _, errs := mabd(t, "manifest", "create", repo+":dup", repo+":v1-amd64", repo+":v2-amd64", repo+":v1-arm64")
	if code != cli.ExitError || !strings.Contains(errs, "linux/amd64") || !strings.Contains(errs, "--platform-override linux/amd64=") || !strings.Contains(errs, amd2Digest) {
		t.Errorf("duplicate platform: %d %q", code, errs)
	}
	if mfTagExists(t, addr, "demo", "dup") {
		t.Error("demo:dup was pushed despite the conflict")
	}
	code, _, _ = mabd(t, "manifest", "create", "--platform-override", "linux/amd64="+repo+":v2-amd64", repo+":dup", repo+":v1-amd64", repo+":v2-amd64", repo+":v1-arm64")
	if got := mfParseIndex(t, mfSkopeoRaw(t, repo+":dup")).platforms(); code != 0 || !maps.Equal(got, map[string]string{amd2Digest: "linux/amd64", armDigest: "linux/arm64"}) {
		t.Errorf("override: %d %v", code, got)
	}

	// A missing source: a clear error, and nothing pushed.
	code, _, errs = mabd(t, "manifest", "create", repo+":missing", repo+":v1-amd64", repo+":v1-s390x")
	if code != cli.ExitError || !strings.Contains(errs, "source "+repo+":v1-s390x") || !strings.Contains(errs, "not found") {
		t.Errorf("missing source: %d %q", code, errs)
	}
	if mfTagExists(t, addr, "demo", "missing") {
		t.Error("demo:missing was pushed though a source is missing")
	}

	// Indexes as sources, from another repository, the same image twice,
	// as a Docker manifest list.
	base := registry.PushBusyboxBase(t, addr, "base/busybox", "amd64", "arm64")
	mfPush(t, addr+"/other/s390x:v1", mfBusybox(t, "s390x"))
	s390Digest := mfDigest(mfSkopeoRaw(t, addr+"/other/s390x:v1"))
	code, out, errs = mabd(t, "manifest", "create", "--format", "docker", repo+":list", repo+":v1", base, addr+"/other/s390x:v1")
	raw = mfSkopeoRaw(t, repo+":list")
	list := mfParseIndex(t, raw)
	want[s390Digest] = "linux/s390x"
	if code != 0 || strings.TrimSpace(out) != mfDigest(raw) || list.MediaType != "application/vnd.docker.distribution.manifest.list.v2+json" || !maps.Equal(list.platforms(), want) {
		t.Errorf("docker list: %d %s %v, want %v", code, list.MediaType, list.platforms(), want)
	}
	oci := false
	for _, m := range list.Manifests {
		oci = oci || m.MediaType == "application/vnd.oci.image.manifest.v1+json"
	}
	if warned := strings.Contains(errs, "warning: a Docker manifest list of OCI image manifests: some clients want Docker manifests in it (use --format oci)"); warned != oci {
		t.Errorf("docker list of OCI manifests %v, warned %v:\n%s", oci, warned, errs)
	}
	if cf := mfSkopeoConfig(t, repo+":list", "s390x"); cf.Architecture != "s390x" {
		t.Errorf("the s390x image copied from another repository: %+v", cf)
	}
	code, out, _ = mabd(t, "manifest", "inspect", "--verbose", repo+":list")
	var many []mfVerbose
	if err := json.Unmarshal([]byte(out), &many); code != 0 || err != nil || len(many) != 3 || many[2].Descriptor.Platform.String() != "linux/s390x" {
		t.Errorf("inspect the Docker list: %d %v %d", code, err, len(many))
	}
	if code, _, errs := mabd(t, "manifest", "create", "--format", "docker", "--annotation", "a=b", repo+":bad", repo+":v1"); code != cli.ExitError || !strings.Contains(errs, "annotations") {
		t.Errorf("annotations on a Docker list: %d %q", code, errs)
	}

	// An OCI archive as a source: its blobs are uploaded to a new repository.
	archIdx, err := registry.BusyboxIndex(registry.DebianBase(t, "amd64"), registry.DebianBase(t, "s390x"))
	if err != nil {
		t.Fatal(err)
	}
	archive := mfOCIArchive(t, archIdx)
	code, out, _ = mabd(t, "manifest", "create", addr+"/fresh/app:v1", "oci-archive:"+archive)
	raw = mfSkopeoRaw(t, addr+"/fresh/app:v1")
	if got := mfParseIndex(t, raw).platforms(); code != 0 || strings.TrimSpace(out) != mfDigest(raw) || !maps.Equal(got, map[string]string{amdDigest: "linux/amd64", s390Digest: "linux/s390x"}) {
		t.Errorf("from an archive: %d %v", code, got)
	}
	if cf := mfSkopeoConfig(t, addr+"/fresh/app:v1", "s390x"); cf.Architecture != "s390x" {
		t.Errorf("fresh/app:v1 s390x config: %+v", cf)
	}

	// Annotations of an OCI index.
	code, _, _ = mabd(t, "manifest", "create", "--annotation", "org.opencontainers.image.title=demo", repo+":annotated", repo+":v1")
	if a := mfParseIndex(t, mfSkopeoRaw(t, repo+":annotated")); code != 0 || a.Annotations["org.opencontainers.image.title"] != "demo" || len(a.Manifests) != 2 {
		t.Errorf("annotated: %d %+v", code, a)
	}
}

// TestManifestTimeout runs inspect, create and audit against a registry
// that accepts connections and never answers (they used to hang for good):
// each fails with exit 2, naming the registry and the timeout. A --timeout
// that is not positive is bad usage.
func TestManifestTimeout(t *testing.T) {
	silent := registry.Silent(t)
	idx, err := registry.BusyboxIndex(registry.DebianBase(t, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	archive := "oci-archive:" + mfOCIArchive(t, idx)
	hangs := "registry " + silent + " did not answer within 1s"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"manifest", "inspect", "--timeout", "1s", silent + "/demo:v1"}, hangs},
		{[]string{"manifest", "inspect", "--format", "table", "--timeout", "1s", silent + "/demo:v1"}, hangs},
		{[]string{"manifest", "create", "--timeout", "1s", silent + "/demo:v1", archive}, hangs},
		{[]string{"manifest", "create", "--timeout", "1s", silent + "/demo:v1", silent + "/demo:v1-amd64"}, hangs},
		{[]string{"image", "audit", "--timeout", "1s", silent + "/demo:v1"}, hangs},
		{[]string{"manifest", "inspect", "--timeout", "0", archive}, "--timeout 0s: give a positive duration"},
		{[]string{"manifest", "create", "--timeout", "-5s", silent + "/demo:v1", archive}, "--timeout -5s: give a positive duration"},
		{[]string{"image", "audit", "--timeout", "0s", archive}, "--timeout 0s: give a positive duration"},
		{[]string{"image", "audit", "--timeout", "soon", archive}, "invalid argument \"soon\" for \"--timeout\""},
	} {
		code, _, errs := mabd(t, c.args...)
		if code != cli.ExitError || !strings.Contains(errs, c.want) {
			t.Errorf("mabd %s: exit %d, %q; want 2 and %q", strings.Join(c.args, " "), code, errs, c.want)
		}
		if c.want == hangs && !strings.Contains(errs, "raise --timeout") {
			t.Errorf("mabd %s: %q does not say what to do", strings.Join(c.args, " "), errs)
		}
	}
	// The default is documented in the help.
	if _, out, _ := mabd(t, "manifest", "inspect", "--help"); !strings.Contains(out, "(default 30s)") {
		t.Errorf("inspect --help does not give the default timeout:\n%s", out)
	}
}
