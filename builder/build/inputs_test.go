package build

import (
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/client"
	"github.com/tonistiigi/fsutil"
)

// usageOf checks that err is a *UsageError about option whose text has
// want.
func usageOf(t *testing.T, what string, err error, option, want string) {
	t.Helper()
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Option != option || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v (%T), want a UsageError about %s with %q", what, err, err, option, want)
	}
}

func TestParseCache(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		spec   string
		export bool
		want   client.CacheOptionsEntry
		fail   string
	}{
		{spec: "type=registry,ref=r:5000/app:cache", export: true, want: client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "r:5000/app:cache", "mode": "min"}}},
		{spec: "type=registry,ref=r/app:cache,mode=max,image-manifest=true", export: true, want: client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "r/app:cache", "mode": "max", "image-manifest": "true"}}},
		{spec: "type=registry,ref=r/app:cache", want: client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "r/app:cache"}}},
		{spec: "r/app:cache", want: client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": "r/app:cache"}}},
		{spec: "type=local,dest=" + dir + "/new", export: true, want: client.CacheOptionsEntry{Type: "local", Attrs: map[string]string{"dest": dir + "/new", "mode": "min"}}},
		{spec: "type=local,src=" + dir + "/not-yet", want: client.CacheOptionsEntry{Type: "local", Attrs: map[string]string{"src": dir + "/not-yet"}}},
		{spec: "TYPE=inline", export: true, want: client.CacheOptionsEntry{Type: "inline", Attrs: map[string]string{}}},
		{spec: "type=s3,bucket=b", export: true, fail: `unknown cache type "s3" (registry, local, inline)`},
		{spec: "type=gha", fail: `unknown cache type "gha"`},
		{spec: "ref=r/app", export: true, fail: "no type="},
		{spec: "", fail: "EOF"},
		{spec: "type=registry", fail: "type=registry needs ref="},
		{spec: "type=registry,ref=http://r/app", fail: "is not an image reference"},
		{spec: "type=registry,ref=r/a,mode=everything", export: true, fail: `mode="everything": want min or max`},
		{spec: "type=local,src=" + dir, export: true, fail: "type=local needs dest=DIR"},
		{spec: "type=local,dest=" + dir, fail: "type=local needs src=DIR"},
		{spec: "type=local,dest=" + file, export: true, fail: file + " is not a directory"},
		{spec: "type=inline", fail: "an inline cache is read from its image"},
		{spec: "type=registry,ref", fail: `"ref" is not key=value`},
	} {
		got, err := ParseCache(c.spec, c.export)
		option := "CacheFrom"
		if c.export {
			option = "CacheTo"
		}
		if c.fail != "" {
			usageOf(t, c.spec, err, option, c.fail)
			continue
		}
		if err != nil || got.Type != c.want.Type || !maps.Equal(got.Attrs, c.want.Attrs) {
			t.Errorf("ParseCache(%q, %v) = %+v, %v; want %+v", c.spec, c.export, got, err, c.want)
		}
	}
}

func TestCacheEntriesInsecure(t *testing.T) {
	opt := Options{
		CacheTo:   []string{"type=registry,ref=127.0.0.1:5000/c:1", "type=registry,ref=reg.example/c:1", "type=inline"},
		CacheFrom: []string{"type=registry,ref=reg.example:5000/c:1", "type=registry,ref=localhost/c:1,registry.insecure=false"},
	}
	ex, im, err := cacheEntries(opt, insecureSet([]string{"reg.example:5000"}))
	if err != nil || len(ex) != 3 || len(im) != 2 {
		t.Fatalf("%+v %+v %v", ex, im, err)
	}
	for _, c := range []struct {
		e    client.CacheOptionsEntry
		want string
	}{{ex[0], "true"}, {ex[1], ""}, {ex[2], ""}, {im[0], "true"}, {im[1], "false"}} {
		if got := c.e.Attrs["registry.insecure"]; got != c.want {
			t.Errorf("%+v: registry.insecure %q, want %q", c.e, got, c.want)
		}
	}
}

func TestSecretsAttachable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	os.WriteFile(file, []byte("s3cr3t"), 0o600)
	t.Setenv("MABD_TEST_SECRET", "from-env")
	t.Setenv("idvar", "implicit")
	for _, ok := range [][]string{
		nil,
		{"id=tok,src=" + file},
		{"id=tok,source=" + file, "id=e,env=MABD_TEST_SECRET"},
		{"type=env,id=e,src=MABD_TEST_SECRET"},
		{"id=idvar"}, // $idvar is set
	} {
		a, err := secretsAttachable(ok)
		if err != nil || (a == nil) != (ok == nil) {
			t.Errorf("%q: %v, %v", ok, a, err)
		}
	}
	for _, c := range []struct{ spec, want string }{
		{"id=tok,src=" + dir + "/missing", "the secret file " + dir + "/missing does not exist"},
		{"id=tok,src=" + dir, "is not a regular file"},
		{"id=e,env=MABD_TEST_UNSET", "the environment variable MABD_TEST_UNSET is not set"},
		{"id=" + dir + "/none", "does not exist"}, // neither $ID nor the file ID
		{"src=" + file, "no id="},
		{"id=a,src=" + file + ",env=X", "not both"},
		{"id=a,type=ssh", `type="ssh": want file or env`},
		{"id=a,mode=0400", `unknown key "mode"`},
	} {
		_, err := secretsAttachable([]string{c.spec})
		usageOf(t, c.spec, err, "Secrets", c.want)
	}
	_, err := secretsAttachable([]string{"id=tok,src=" + file, "id=tok,env=MABD_TEST_SECRET"})
	usageOf(t, "twice", err, "Secrets", `secret "tok" given twice`)
}

func TestSSHAttachable(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("SSH_AUTH_SOCK", sock)
	for _, ok := range [][]string{{"default"}, {"work=" + sock}, {"default", "other=" + sock}} {
		if a, err := sshAttachable(ok); err != nil || a == nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, c := range []struct{ spec, want string }{
		{"default=" + dir + "/none", dir + "/none: no such socket or key file"},
		{"=x", "want default, ID=SOCKET or ID=KEYFILE"},
		{"a=", "an empty path"},
	} {
		_, err := sshAttachable([]string{c.spec})
		usageOf(t, c.spec, err, "SSH", c.want)
	}
	_, err = sshAttachable([]string{"a=" + sock, "a=" + sock})
	usageOf(t, "twice", err, "SSH", `id "a" given twice`)
	t.Setenv("SSH_AUTH_SOCK", "")
	_, err = sshAttachable([]string{"default"})
	usageOf(t, "no agent", err, "SSH", "$SSH_AUTH_SOCK is not set")
}

func TestAddBuildContexts(t *testing.T) {
	dir := t.TempDir()
	attrs, local := map[string]string{}, map[string]fsutil.FS{}
	err := addBuildContexts([]string{"src=" + dir, "base=docker-image://127.0.0.1:5000/busybox:latest", "context=" + dir}, attrs, local)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"context:src": "local:ctx-src", "context:base": "docker-image://127.0.0.1:5000/busybox:latest", "context:context": "local:ctx-context"}
	if !maps.Equal(attrs, want) || local["ctx-src"] == nil || local["ctx-context"] == nil || len(local) != 2 {
		t.Errorf("attrs %v, locals %v", attrs, local)
	}
	for _, c := range []struct{ spec, want string }{
		{"nameonly", "want NAME=DIR or NAME=docker-image://REF"},
		{"=" + dir, "want NAME=DIR"},
		{"a=", "want NAME=DIR"},
		{"a b=" + dir, "has a space or a comma"},
		{"a=" + dir + "/missing", "is not a directory"},
		{"a=docker-image://Bad//Ref", "is not an image reference"},
		{"a=docker-image://", "is not an image reference"},
		{"a=https://example.com/x.git", "https:// is not a context mabd build takes"},
	} {
		err := addBuildContexts([]string{c.spec}, map[string]string{}, map[string]fsutil.FS{})
		usageOf(t, c.spec, err, "BuildContexts", c.want)
	}
	err = addBuildContexts([]string{"a=" + dir, "a=" + dir}, map[string]string{}, map[string]fsutil.FS{})
	usageOf(t, "twice", err, "BuildContexts", `context "a" given twice`)
}

func TestAnnotations(t *testing.T) {
	as, err := parseAnnotations([]string{"org.k=v=w", "index:i=1", "manifest[arm64]:m=2", "manifest-descriptor:d=3", "index-descriptor:x=4"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range as {
		m, err := a.exporterAttrs(true)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(got, m)
	}
	want := map[string]string{
		"annotation-index.org.k":             "v=w",
		"annotation-manifest.org.k":          "v=w",
		"annotation-index.i":                 "1",
		"annotation-manifest[linux/arm64].m": "2",
		"annotation-manifest-descriptor.d":   "3",
		"annotation-index-descriptor.x":      "4",
	}
	if !maps.Equal(got, want) {
		t.Errorf("exporter attributes %v\nwant %v", got, want)
	}
	// A lone manifest: untyped ones go to it alone, index ones are refused.
	if m, err := as[0].exporterAttrs(false); err != nil || !maps.Equal(m, map[string]string{"annotation-manifest.org.k": "v=w"}) {
		t.Errorf("lone manifest: %v, %v", m, err)
	}
	_, err = as[1].exporterAttrs(false)
	usageOf(t, "index on a manifest", err, "Annotations", "index annotations need several platforms or --provenance")
	for _, c := range []struct{ spec, want string }{
		{"novalue", "want KEY=VALUE"},
		{"layer:k=v", `unknown type "layer"`},
		{"index[linux/arm64]:k=v", "only manifest annotations take a platform"},
		{"manifest[linux/arm64:k=v", "want TYPE[PLATFORM]"},
		{"manifest[no/such/plat/form]:k=v", "manifest"},
		{"=v", "is not an annotation key"},
	} {
		_, err := parseAnnotations([]string{c.spec})
		usageOf(t, c.spec, err, "Annotations", c.want)
	}
	exports := []client.ExportEntry{{Type: client.ExporterImage, Attrs: map[string]string{"name": "r/a"}}, {Type: client.ExporterLocal}, {Type: client.ExporterOCI}}
	if err := annotateExports(exports, as[:1], true); err != nil {
		t.Fatal(err)
	}
	if exports[0].Attrs["annotation-index.org.k"] != "v=w" || exports[1].Attrs != nil || exports[2].Attrs["annotation-manifest.org.k"] != "v=w" {
		t.Errorf("exports %+v", exports)
	}
}

func TestAttestationAttrs(t *testing.T) {
	for in, want := range map[string]string{"": "", "false": "", "0": "", "disabled=true": "", "true": "mode=min", "1": "mode=min",
		"mode=min": "mode=min", "mode=max": "mode=max", "mode=max,version=v0.2": "mode=max,version=v0.2"} {
		if got, err := provenanceAttr(in); err != nil || got != want {
			t.Errorf("provenanceAttr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := provenanceAttr("mode=full")
	usageOf(t, "mode=full", err, "Provenance", `mode="full": want min or max`)
	_, err = provenanceAttr("mode")
	usageOf(t, "mode", err, "Provenance", "is not key=value")

	for in, want := range map[string]string{"": "", "false": "", "generator=127.0.0.1:5000/scanner:1": "generator=127.0.0.1:5000/scanner:1"} {
		if got, err := sbomAttr(in); err != nil || got != want {
			t.Errorf("sbomAttr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"true", "scan-context=true", "generator="} {
		_, err := sbomAttr(in)
		usageOf(t, in, err, "SBOM", "docker/buildkit-syft-scanner) is on Docker Hub")
	}
	_, err = sbomAttr("generator=Not A Ref")
	usageOf(t, "bad generator", err, "SBOM", "is not an image reference")
}

func TestReadStagesAndTarget(t *testing.T) {
	dir := t.TempDir()
	df := filepath.Join(dir, "Dockerfile")
	os.WriteFile(df, []byte("ARG BASE=busybox\nFROM --platform=$BUILDPLATFORM golang:1.26 AS Build\nRUN go build ./...\nFROM $BASE\nCOPY --from=build /out /out\nFROM build AS test\n"), 0o644)
	st, err := readStages(df)
	want := []stage{{Name: "build", Base: "golang:1.26", Platform: "$BUILDPLATFORM"}, {Base: "$BASE"}, {Name: "test", Base: "build"}}
	if err != nil || len(st) != 3 || st[0] != want[0] || st[1] != want[1] || st[2] != want[2] {
		t.Fatalf("readStages: %+v, %v", st, err)
	}
	for _, ok := range []string{"build", "BUILD", "test"} {
		if err := checkTarget(ok, st); err != nil {
			t.Errorf("checkTarget(%q): %v", ok, err)
		}
	}
	usageOf(t, "stage-1", checkTarget("stage-1", st), "Target", "not a stage of the Dockerfile (its stages: build, test)")
	usageOf(t, "unnamed", checkTarget("x", st[1:2]), "Target", "which names none")
	os.WriteFile(df, []byte("FROM busybox AS\n"), 0o644)
	if _, err := readStages(df); err == nil {
		t.Error("a Dockerfile that does not parse: no error")
	}
	for _, c := range []struct {
		name string
		i    int
	}{{"build", 0}, {"stage-1", 1}, {"test", 2}, {"stage-0", -1}, {"stage-9", -1}, {"", -1}, {"other", -1}} {
		if _, i := stageOf(c.name, want); i != c.i {
			t.Errorf("stageOf(%q) = %d, want %d", c.name, i, c.i)
		}
	}
	if s, i := stageOf("", want[1:2]); i != 0 || s != want[1] {
		t.Errorf("one stage: %+v, %d", s, i)
	}
}

// TestFrontendInputs: the options that become frontend attributes; bad
// ones refused before anything else.
func TestFrontendInputs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox AS base\nFROM base AS final\n"), 0o644)
	opt := Options{Context: dir, Target: "base", NoCache: true, Pull: true, Labels: []string{"a=b", "c="},
		Provenance: "mode=max", SBOM: "generator=r/scanner:1", BuildArgs: []string{"X=1"}, BuildContexts: []string{"extra=" + dir}}
	in, err := frontendInputs(opt)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"filename": "Dockerfile", "build-arg:X": "1", "target": "base", "no-cache": "", "image-resolve-mode": "pull",
		"label:a": "b", "label:c": "", "attest:provenance": "mode=max", "attest:sbom": "generator=r/scanner:1", "context:extra": "local:ctx-extra"}
	if !maps.Equal(in.attrs, want) || len(in.local) != 3 || len(in.stages) != 2 || len(in.session) != 0 {
		t.Errorf("attrs %v\nwant  %v\nlocal %v, stages %v, session %v", in.attrs, want, in.local, in.stages, in.session)
	}
	opt.Target = "nope"
	_, err = frontendInputs(opt)
	usageOf(t, "target", err, "Target", "its stages: base, final")
	// A Dockerfile mabd cannot parse: the frontend will say why.
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox AS\n"), 0o644)
	if in, err := frontendInputs(opt); err != nil || in.attrs["target"] != "nope" {
		t.Errorf("unparsable Dockerfile: %v", err)
	}
}
