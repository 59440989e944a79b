package buildcli

import (
	"errors"
	"mabd/builder/build"
	"strings"
	"testing"
)

// TestBuildMessage: what mabd build says for the builder's typed errors.
func TestBuildMessage(t *testing.T) {
	unsupported := func(us ...build.UnsupportedPlatform) error {
		return &build.UnsupportedPlatformError{Unsupported: us, Supported: []string{"linux/amd64", "linux/arm64"}}
	}
	_, outputErr := build.ParseOutput("type=oci")
	_, cacheErr := build.ParseCache("type=gha", true)
	_, cacheFromErr := build.ParseCache("type=local,dest=x", false)
	for _, c := range []struct {
		err  error
		want string
	}{
		{outputErr, `--output "type=oci": type=oci needs dest=`},
		{cacheErr, `--cache-to "type=gha": unknown cache type "gha" (registry, local, inline)`},
		{cacheFromErr, `--cache-from "type=local,dest=x": type=local needs src=DIR`},
		{&build.UsageError{Option: "Secrets", Value: "id=a,src=/x", Err: errors.New("the secret file /x does not exist")}, `--secret "id=a,src=/x": the secret file /x does not exist`},
		{&build.UsageError{Option: "Target", Value: "nope", Err: errors.New("not a stage of the Dockerfile (its stages: a, b)")}, `--target "nope": not a stage of the Dockerfile (its stages: a, b)`},
		{&build.UsageError{Option: "BuildContexts", Value: "x", Err: errors.New("want NAME=DIR or NAME=docker-image://REF")}, `--build-context "x": want NAME=DIR or NAME=docker-image://REF`},
		{&build.UsageError{Option: "SBOM", Value: "true", Err: errors.New("no generator")}, `--sbom "true": no generator`},
		{&build.UsageError{Option: "Progress", Value: "fancy", Err: errors.New("want auto, plain, tty, quiet or rawjson")}, `--progress "fancy": want auto, plain, tty, quiet or rawjson`},
		{&build.UsageError{Option: "Push", Err: errors.New("no image name (Tags) to push")}, "--push needs an image name: give one with -t"},
		{&build.UsageError{Err: errors.New("no Dockerfile at /x/Dockerfile")}, "no Dockerfile at /x/Dockerfile"},
		{&build.DaemonError{Addr: "unix:///x.sock", Err: errors.New("connection refused")}, "cannot reach the builder (buildkitd) at unix:///x.sock: connection refused: is it running? (--addr selects another)"},
		{unsupported(build.UnsupportedPlatform{Platform: "linux/s390x", Arch: "s390x", Reason: build.NoHandler}),
			"linux/s390x is not supported by the builder (its platforms: linux/amd64, linux/arm64): register its emulator with `mabd install s390x`"},
		{unsupported(
			build.UnsupportedPlatform{Platform: "linux/s390x", Arch: "s390x", Reason: build.NoHandler},
			build.UnsupportedPlatform{Platform: "linux/ppc64le", Arch: "ppc64le", Reason: build.NoHandler},
			build.UnsupportedPlatform{Platform: "linux/riscv64", Arch: "riscv64", Reason: build.HandlerReady},
			build.UnsupportedPlatform{Platform: "linux/sparc", Reason: build.NoEmulator}),
			"linux/s390x, linux/ppc64le, linux/riscv64 and linux/sparc are not supported by the builder (its platforms: linux/amd64, linux/arm64): " +
				"register their emulators with `mabd install s390x ppc64le`; add linux/riscv64 to the builder's platforms (its emulator is ready); no emulator mabd knows runs linux/sparc"},
	} {
		if got := buildMessage(c.err, "unix:///nonexistent/bk.sock"); got != c.want {
			t.Errorf("%v:\n got %s\nwant %s", c.err, got, c.want)
		}
	}
}

// TestAuditRef: what mabd build --audit reads back.
func TestAuditRef(t *testing.T) {
	for _, c := range []struct {
		opt  build.Options
		want string
		fail bool
	}{
		{opt: build.Options{Tags: []string{"r/a:1", "r/a:2"}, Push: true, Outputs: []string{"type=oci,dest=x.tar"}}, want: "r/a:1"},
		{opt: build.Options{Tags: []string{"r/a:1"}, Outputs: []string{"type=local,dest=out", "type=oci,dest=x.tar", "type=oci,dest=y.tar"}}, want: "oci-archive:x.tar"},
		{opt: build.Options{Outputs: []string{`"type=oci","dest=a,b.tar"`}}, want: "oci-archive:a,b.tar"},
		{opt: build.Options{Outputs: []string{"type=oci,dest=dir,tar=false"}}, want: "oci-layout:dir"},
		{opt: build.Options{Outputs: []string{"type=oci,dest=-"}}, want: ""},
		{opt: build.Options{Tags: []string{"r/a:1"}}, want: ""},
		{opt: build.Options{Outputs: []string{"type=oci"}}, fail: true},
	} {
		got, err := auditRef(c.opt)
		if got != c.want || (err != nil) != c.fail {
			t.Errorf("%+v: %q, %v; want %q", c.opt, got, err, c.want)
		}
	}
}

// TestBuildFlagsMapped: every option a build.UsageError can name has its
// flag, and the flag exists.
func TestBuildFlagsMapped(t *testing.T) {
	cmd := newBuild()
	for option, flag := range buildFlags {
		name := strings.TrimLeft(flag, "-")
		if cmd.Flags().Lookup(name) == nil && cmd.Flags().ShorthandLookup(name) == nil {
			t.Errorf("%s maps to %s, which mabd build does not have", option, flag)
		}
	}
	for _, option := range []string{"CacheTo", "CacheFrom", "Target", "Secrets", "SSH", "BuildContexts", "Labels", "Annotations", "Provenance", "SBOM", "MetadataFile", "IIDFile"} {
		if buildFlags[option] == "" {
			t.Errorf("build.UsageError{Option: %q} has no flag", option)
		}
	}
}

func TestParseReport(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]reportMode{
		"":                   {text: true},
		"text":               {text: true},
		"json":               {json: true},
		"none":               {},
		"json=" + dir + "/r": {text: true, file: dir + "/r"},
	} {
		if got, err := parseReport(in); err != nil || got != want {
			t.Errorf("parseReport(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"xml":                     `--report "xml": want text, json, json=FILE or none`,
		"json=":                   "want text, json",
		"json=/nonexistent/dir/r": "the directory /nonexistent/dir does not exist",
	} {
		if _, err := parseReport(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseReport(%q): %v, want %q", in, err, want)
		}
	}
}
