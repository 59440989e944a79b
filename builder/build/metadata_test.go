package build

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/buildkit/client"

	"mabd/builder/manifest"
	"mabd/testing/registry"
)

func TestDecodeResponse(t *testing.T) {
	desc := `{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:00","size":1}`
	got := decodeResponse(map[string]string{
		"containerimage.digest":     "sha256:00",
		"containerimage.descriptor": base64.StdEncoding.EncodeToString([]byte(desc)),
		"image.name":                "r/a:1",
		"cache.manifest":            base64.StdEncoding.EncodeToString([]byte(`"a string"`)),
	})
	b, _ := json.Marshal(got)
	want := `{"cache.manifest":"ImEgc3RyaW5nIg==","containerimage.descriptor":` + desc + `,"containerimage.digest":"sha256:00","image.name":"r/a:1"}`
	if string(b) != want {
		t.Errorf("decoded\n%s\nwant\n%s", b, want)
	}
}

func TestCheckOutputFile(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "md.json")
	os.WriteFile(stale, []byte("{}"), 0o644)
	if err := checkOutputFile("MetadataFile", stale); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale file is still there: %v", err)
	}
	usageOf(t, "no dir", checkOutputFile("MetadataFile", filepath.Join(dir, "no", "md.json")), "MetadataFile", "its directory "+dir+"/no does not exist")
	usageOf(t, "a dir", checkOutputFile("IIDFile", dir), "IIDFile", "is a directory")
	if err := checkOutputFile("IIDFile", ""); err != nil {
		t.Error(err)
	}
}

func TestReadBackRef(t *testing.T) {
	const d = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	pushed := []client.ExportEntry{
		{Type: client.ExporterLocal, OutputDir: "out"},
		{Type: client.ExporterImage, Attrs: map[string]string{"name": "127.0.0.1:5000/a:v1,127.0.0.1:5000/a:latest", "push": "true", "registry.insecure": "true"}},
	}
	for _, c := range []struct {
		exports  []client.ExportEntry
		outputs  []string
		want     string
		insecure bool
	}{
		{pushed, []string{"type=oci,dest=x.tar"}, "127.0.0.1:5000/a@" + d, true},
		{[]client.ExportEntry{{Type: client.ExporterImage, Attrs: map[string]string{"name": "r.example/a:v1"}}}, []string{"type=local,dest=out", "type=oci,dest=x.tar"}, manifest.ArchivePrefix + "x.tar@" + d, false},
		{nil, []string{"type=oci,dest=layout,tar=false"}, manifest.LayoutPrefix + "layout@" + d, false},
		{nil, []string{"type=oci,dest=-", "type=docker,dest=d.tar"}, "", false},
	} {
		got, insecure := readBackRef(c.exports, c.outputs, d)
		if got != c.want || insecure != c.insecure {
			t.Errorf("%+v %q: %q, %v; want %q, %v", c.exports, c.outputs, got, insecure, c.want, c.insecure)
		}
	}
}

// TestWriteMetadata reads each platform's manifest digest back from an OCI
// tarball such as BuildKit's oci exporter writes.
func TestWriteMetadata(t *testing.T) {
	idx, err := registry.BusyboxIndex(registry.DebianBase(t, "amd64"), registry.DebianBase(t, "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	_, tarball := registry.WriteOCIArchive(t, idx)
	im, _ := idx.IndexManifest()
	id, _ := idx.Digest()
	mt, _ := idx.MediaType()
	desc, _ := json.Marshal(map[string]any{"mediaType": mt, "digest": id.String(), "size": 1})
	res := &Result{
		Digest:    id.String(),
		Platforms: []string{"linux/amd64", "linux/arm64"},
		ExporterResponse: map[string]string{
			"containerimage.digest":     id.String(),
			"containerimage.descriptor": base64.StdEncoding.EncodeToString(desc),
		},
	}
	file := filepath.Join(t.TempDir(), "md.json")
	if err := writeMetadata(context.Background(), file, res, nil, []string{"type=oci,dest=" + tarball}); err != nil {
		t.Fatal(err)
	}
	var md struct {
		Digest    string            `json:"containerimage.digest"`
		Index     string            `json:"mabd.index.digest"`
		Manifests map[string]string `json:"mabd.manifests"`
		Platforms []string          `json:"mabd.platforms"`
	}
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &md); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := map[string]string{"linux/amd64": im.Manifests[0].Digest.String(), "linux/arm64": im.Manifests[1].Digest.String()}
	if md.Digest != id.String() || md.Index != id.String() || !maps.Equal(md.Manifests, want) || len(md.Platforms) != 2 {
		t.Errorf("metadata\n%s\nwant manifests %v", b, want)
	}
	// A lone manifest: its digest is the platform's.
	lone := &Result{Digest: "sha256:11", Platforms: []string{"linux/arm64"}, ExporterResponse: map[string]string{"containerimage.digest": "sha256:11"}}
	if err := writeMetadata(context.Background(), file, lone, nil, nil); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(file)
	md.Manifests, md.Index = nil, ""
	if json.Unmarshal(b, &md); md.Index != "" || !maps.Equal(md.Manifests, map[string]string{"linux/arm64": "sha256:11"}) {
		t.Errorf("lone manifest:\n%s", b)
	}
	// The manifests cannot be read back: the build's result is not lost,
	// the error says which file.
	var fe *OutputFileError
	if err := writeMetadata(context.Background(), file, res, nil, []string{"type=oci,dest=" + file + ".missing"}); !errors.As(err, &fe) || fe.File != file {
		t.Errorf("unreadable: %v", err)
	}
}
