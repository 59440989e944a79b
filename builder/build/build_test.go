package build

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"mabd/binfmt"
	"mabd/builder"
)

func TestParseOutput(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		spec string
		want Output
		fail string // in the error, which is a *UsageError about Outputs
	}{
		{spec: "type=oci,dest=out.tar", want: Output{Type: "oci", Dest: "out.tar"}},
		{spec: "type=oci,dest=layout,tar=false", want: Output{Type: "oci", Dest: "layout", Dir: true, Attrs: map[string]string{"tar": "false"}}},
		{spec: "type=docker,dest=img.tar,name=r/app:v1", want: Output{Type: "docker", Dest: "img.tar", Attrs: map[string]string{"name": "r/app:v1"}}},
		{spec: "type=tar,dest=fs.tar", want: Output{Type: "tar", Dest: "fs.tar"}},
		{spec: "type=local,dest=" + dir, want: Output{Type: "local", Dest: dir, Dir: true}},
		{spec: "type=image,name=127.0.0.1:5000/r:v1,push=true", want: Output{Type: "image", Attrs: map[string]string{"name": "127.0.0.1:5000/r:v1", "push": "true"}}},
		{spec: "type=registry,name=r:v1", want: Output{Type: "image", Attrs: map[string]string{"name": "r:v1", "push": "true"}}},
		{spec: `Type=oci,DEST=out.tar,"name=a/b:1,a/b:2"`, want: Output{Type: "oci", Dest: "out.tar", Attrs: map[string]string{"name": "a/b:1,a/b:2"}}},
		{spec: "type=oci", fail: "type=oci needs dest="},
		{spec: "type=local", fail: "type=local needs dest="},
		{spec: "dest=x", fail: "no type="},
		{spec: "", fail: "EOF"},
		{spec: "type=oci,dest", fail: `"dest" is not key=value`},
		{spec: "type=image,dest=x", fail: "type=image takes no dest"},
		{spec: "type=bogus,dest=x", fail: `unknown type "bogus"`},
		{spec: "type=oci,dest=x,tar=maybe", fail: `tar="maybe": want true or false`},
		{spec: "type=oci,dest=" + dir, fail: dir + " is a directory"},
	} {
		got, err := ParseOutput(c.spec)
		if c.fail != "" {
			var ue *UsageError
			if !errors.As(err, &ue) || ue.Option != "Outputs" || ue.Value != c.spec || !strings.Contains(err.Error(), c.fail) {
				t.Errorf("ParseOutput(%q): %v (%T), want a UsageError about Outputs with %q", c.spec, err, err, c.fail)
			}
			continue
		}
		if c.want.Attrs == nil {
			c.want.Attrs = map[string]string{}
		}
		if err != nil || got.Type != c.want.Type || got.Dest != c.want.Dest || got.Dir != c.want.Dir || !maps.Equal(got.Attrs, c.want.Attrs) {
			t.Errorf("ParseOutput(%q) = %+v, %v; want %+v", c.spec, got, err, c.want)
		}
	}
}

// TestExportEntries: tags and --push become an image export, marked
// insecure for a local or listed registry; file outputs write a file,
// directory outputs a directory.
func TestExportEntries(t *testing.T) {
	opt := Options{
		Tags:               []string{"127.0.0.1:5000/a:v1"},
		Push:               true,
		Outputs:            []string{"type=oci,dest=out.tar", "type=local,dest=out"},
		InsecureRegistries: []string{"http://reg.example:5000/"},
	}
	es, err := exportEntries(opt, insecureSet(opt.InsecureRegistries))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].Output == nil || es[0].Attrs["name"] != "127.0.0.1:5000/a:v1" || es[1].OutputDir != "out" {
		t.Fatalf("entries %+v", es)
	}
	if img := es[2]; img.Type != client.ExporterImage || img.Attrs["push"] != "true" || img.Attrs["registry.insecure"] != "true" {
		t.Errorf("image export %+v", img)
	}
	opt.Tags = []string{"reg.example:5000/a:v1", "reg.example/a:v1"}
	if es, err := exportEntries(opt, insecureSet(opt.InsecureRegistries)); err != nil || es[2].Attrs["registry.insecure"] != "true" {
		t.Errorf("listed registry: %+v, %v", es, err)
	}
	opt.Tags = []string{"reg.example/a:v1"}
	if es, err := exportEntries(opt, insecureSet(opt.InsecureRegistries)); err != nil || es[2].Attrs["registry.insecure"] != "" {
		t.Errorf("unlisted registry: %+v, %v", es, err)
	}
	opt.Tags = nil
	var ue *UsageError
	if _, err := exportEntries(opt, nil); !errors.As(err, &ue) || ue.Option != "Push" {
		t.Errorf("--push without -t: %v", err)
	}
}

func TestChoosePlatforms(t *testing.T) {
	worker := []ocispecs.Platform{}
	for _, p := range []string{"linux/amd64", "linux/amd64/v2", "linux/arm64", "linux/arm/v7", "linux/386"} {
		worker = append(worker, platforms.MustParse(p))
	}
	// A binfmt_misc table (its entry files) with riscv64 ready and
	// s390x disabled.
	mount := t.TempDir()
	entry := func(name, state string) {
		b := state + "\ninterpreter /usr/bin/qemu-" + name + "-static\nflags: F\noffset 0\nmagic 7f454c46\nmask ffffffff\n"
		if err := os.WriteFile(filepath.Join(mount, "qemu-"+name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entry("riscv64", "enabled")
	entry("s390x", "disabled")
	host, err := binfmt.Lookup(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		worker []ocispecs.Platform
		asked  []string
		want   []string
		refuse []UnsupportedPlatform
	}{
		{name: "default: the worker's own, its first platform", worker: worker, want: []string{"linux/amd64"}},
		{name: "all: one per architecture, the first listed", worker: worker, asked: []string{AllPlatforms}, want: []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386"}},
		{name: "default without a worker platform: the client's", want: []string{platforms.DefaultString()}},
		{name: "asked and run", worker: worker, asked: []string{"linux/arm64", "linux/amd64"}, want: []string{"linux/arm64", "linux/amd64"}},
		{name: "an earlier variant", worker: worker, asked: []string{"linux/arm/v6"}, want: []string{"linux/arm/v6"}},
		{name: "no handler", worker: worker, asked: []string{"linux/amd64", "linux/ppc64le"},
			refuse: []UnsupportedPlatform{{Platform: "linux/ppc64le", Arch: "ppc64le", Reason: NoHandler}}},
		{name: "handler disabled", worker: worker, asked: []string{"linux/s390x"},
			refuse: []UnsupportedPlatform{{Platform: "linux/s390x", Arch: "s390x", Reason: NoHandler}}},
		{name: "handler ready, not given to the worker", worker: worker, asked: []string{"linux/riscv64"},
			refuse: []UnsupportedPlatform{{Platform: "linux/riscv64", Arch: "riscv64", Reason: HandlerReady}}},
		{name: "the host's own, not given to the worker", worker: worker[2:3], asked: []string{"linux/" + runtime.GOARCH},
			refuse: []UnsupportedPlatform{{Platform: "linux/" + runtime.GOARCH, Arch: host.Name, Reason: HandlerReady}}},
		{name: "no emulator", worker: worker, asked: []string{"windows/amd64", "linux/sparc64"},
			refuse: []UnsupportedPlatform{{Platform: "windows/amd64", Reason: NoEmulator}, {Platform: "linux/sparc64", Reason: NoEmulator}}},
	} {
		got, err := choosePlatforms(c.asked, c.worker, mount)
		if c.refuse == nil {
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
			}
			continue
		}
		var ue *UnsupportedPlatformError
		if !errors.As(err, &ue) || !slices.Equal(ue.Unsupported, c.refuse) || !slices.Equal(ue.Supported, builder.OnePerArch(c.worker)) {
			t.Errorf("%s: %q, %v; want %+v refused", c.name, got, err, c.refuse)
		}
	}
}
