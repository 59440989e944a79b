package main

// End-to-end tests of what `mabd build` offers CI runners (issue 14):
// caches across runs and a pruned builder, build inputs (target, secrets,
// SSH, named contexts, no-cache, labels, annotations), results for scripts
// (metadata file, image ID file, quiet), provenance, and the emulation
// report — against a real buildkitd (the isolated builder, arm64 emulated
// in its private binfmt_misc table), a real registry on 127.0.0.1 and
// skopeo.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/crypto/ssh/agent"

	"mabd/builder/build"
	"mabd/builder/buildertest"
	"mabd/builder/manifest"
	"mabd/internal/cli"
	"mabd/testing/registry"
	"mabd/testing/sandbox"
)

// writeDockerfile writes a build context holding Dockerfile df (and the
// files given as name, contents pairs) and returns its directory.
func writeDockerfile(t *testing.T, df string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	files = append([]string{"Dockerfile", df}, files...)
	for i := 0; i+1 < len(files); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, files[i]), []byte(files[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cachedSteps returns, from a plain progress display, which steps whose
// name contains substr were CACHED, by their name.
func cachedSteps(t *testing.T, progress, substr string) map[string]bool {
	t.Helper()
	names := map[string]string{} // "#7" → "[linux/arm64 2/3] RUN …"
	out := map[string]bool{}
	for _, l := range strings.Split(progress, "\n") {
		id, rest, ok := strings.Cut(l, " ")
		if !ok || !strings.HasPrefix(id, "#") {
			continue
		}
		if strings.HasPrefix(rest, "[") && strings.Contains(rest, substr) {
			names[id] = rest
			out[rest] = out[rest] || false
		}
		if rest == "CACHED" && names[id] != "" {
			out[names[id]] = true
		}
	}
	return out
}

// readReport reads a JSON emulation report.
func readReport(t *testing.T, file string) build.Report {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var r build.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, b)
	}
	return r
}

// tarballBlobs returns every blob of an OCI layout tarball, uncompressed
// when it is gzip.
func tarballBlobs(t *testing.T, file string) map[string][]byte {
	t.Helper()
	out := tarFiles(t, file, func(*tar.Header) bool { return true })
	for name, b := range out {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if u, err := io.ReadAll(zr); err == nil {
				out[name] = u
			}
		}
	}
	return out
}

// filesInLayers returns the contents of the file name in each of the
// tarball's blobs (uncompressed layers) that has it.
func filesInLayers(t *testing.T, blobs map[string][]byte, name string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, b := range blobs {
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.TrimPrefix(h.Name, "./") == name {
				c, _ := io.ReadAll(tr)
				out = append(out, c)
			}
		}
	}
	return out
}

// serveAgent serves an empty SSH agent (golang.org/x/crypto's keyring) on a
// unix socket in dir until the test ends, and returns the socket's path.
func serveAgent(t *testing.T, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return sock
}

// benchSlowdown runs `mabd verify --bench arm64` in a private binfmt_misc
// instance and returns the slowdown it measured.
func benchSlowdown(t *testing.T) float64 {
	t.Helper()
	bin := mabdBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := sandbox.Script(ctx, bin+` install arm64 --binfmt-mount "$BINFMT" --state-dir "$(mktemp -d)" >/dev/null && `+bin+` verify --json --bench arm64 --binfmt-mount "$BINFMT" --state-dir -`)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mabd verify --bench: %v\n%s%s", err, out, errb.String())
	}
	var v struct {
		Results []struct {
			Slowdown float64 `json:"slowdown"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v.Results) != 1 {
		t.Fatalf("mabd verify --bench: %v\n%s", err, out)
	}
	return v.Results[0].Slowdown
}

func TestBuildCI(t *testing.T) {
	helloExample(t) // checks skopeo and runc
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")
	s := buildertest.Start(t, "linux/amd64", "linux/arm64")
	addr := s.Address()
	two := "linux/amd64,linux/arm64"
	mabdBuild := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		return mabd(t, append([]string{"build", "--addr", addr, "--progress", "plain", "--build-arg", "BASE=" + base}, args...)...)
	}
	prune := func(t *testing.T) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, buildertest.Bin(t, "buildctl"), "--addr", addr, "prune", "--all").CombinedOutput(); err != nil {
			t.Fatalf("buildctl prune --all: %v\n%s", err, out)
		}
	}
	// Two RUN steps, so that mode=max has an intermediate one to keep.
	twoRuns := "ARG BASE\nFROM $BASE\nRUN cat /proc/sys/kernel/random/uuid > /one\nRUN uname -m > /two\n"

	t.Run("BadInputRefusedBeforeBuilding", func(t *testing.T) {
		ctx := writeDockerfile(t, "ARG BASE\nFROM $BASE AS base\nRUN true\nFROM base AS final\nRUN true\n")
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--cache-to", "type=s3,ref=x"}, `--cache-to "type=s3,ref=x": unknown cache type "s3" (registry, local, inline)`},
			{[]string{"--cache-from", "type=bogus"}, `--cache-from "type=bogus": unknown cache type "bogus"`},
			{[]string{"--cache-to", "type=registry"}, "type=registry needs ref="},
			{[]string{"--cache-to", "type=registry,ref=r/c,mode=all"}, `mode="all": want min or max`},
			{[]string{"--cache-from", "type=inline"}, "--cache-from type=registry,ref=IMAGE"},
			{[]string{"--secret", "id=tok,src=/nonexistent/tok"}, `--secret "id=tok,src=/nonexistent/tok": the secret file /nonexistent/tok does not exist`},
			{[]string{"--secret", "id=tok,env=MABD_TEST_UNSET_VAR"}, "the environment variable MABD_TEST_UNSET_VAR is not set"},
			{[]string{"--secret", "src=/etc/hostname"}, "no id="},
			{[]string{"--target", "nope"}, `--target "nope": not a stage of the Dockerfile (its stages: base, final)`},
			{[]string{"--build-context", "extra"}, `--build-context "extra": want NAME=DIR or NAME=docker-image://REF`},
			{[]string{"--build-context", "extra=/nonexistent/dir"}, "/nonexistent/dir is not a directory"},
			{[]string{"--build-context", "extra=docker-image://UPPER/Case::"}, "is not an image reference"},
			{[]string{"--build-context", "extra=git://example.com/x"}, "git:// is not a context mabd build takes"},
			{[]string{"--ssh", "default=/nonexistent/agent.sock"}, "/nonexistent/agent.sock: no such socket or key file"},
			{[]string{"--sbom", "true"}, "name one it can pull with generator=REF"},
			{[]string{"--provenance", "mode=full"}, `mode="full": want min or max`},
			{[]string{"--label", "novalue"}, `--label "novalue": want KEY=VALUE`},
			{[]string{"--annotation", "bogus:k=v"}, `unknown type "bogus"`},
			{[]string{"--annotation", "index:k=v"}, "index annotations need several platforms or --provenance"},
			{[]string{"--metadata-file", "/nonexistent/dir/md.json"}, "its directory /nonexistent/dir does not exist"},
			{[]string{"--report", "xml"}, `--report "xml": want text, json, json=FILE or none`},
		} {
			code, _, stderr := mabdBuild(t, append(c.args, ctx)...)
			if code != cli.ExitError || !strings.Contains(stderr, c.want) {
				t.Errorf("%q: exit %d, want %d and %q in:\n%s", c.args, code, cli.ExitError, c.want, stderr)
			}
			if strings.Contains(stderr, "#1 ") {
				t.Errorf("%q: a build started:\n%s", c.args, stderr)
			}
		}
	})

	t.Run("CacheSurvivesPrunedBuilder", func(t *testing.T) {
		ctx := writeDockerfile(t, twoRuns)
		localCache := filepath.Join(t.TempDir(), "cache")
		for _, c := range []struct{ name, to, from string }{
			{"registry", "type=registry,ref=" + reg + "/cache:ci,mode=max", "type=registry,ref=" + reg + "/cache:ci"},
			{"local", "type=local,dest=" + localCache + ",mode=max", "type=local,src=" + localCache},
			{"inline", "type=inline", "type=registry,ref=" + reg + "/inline:ci"},
		} {
			t.Run(c.name, func(t *testing.T) {
				prune(t)
				// The job's first run: the same command, with no cache to
				// import yet.
				first := []string{"--platform", two, "--cache-to", c.to, "--cache-from", c.from, ctx}
				if c.name == "inline" { // the cache travels in the image
					first = append([]string{"--push", "-t", reg + "/inline:ci"}, first...)
				}
				code, _, stderr := mabdBuild(t, first...)
				if code != 0 {
					t.Fatalf("first build: exit %d\n%s", code, stderr)
				}
				if c.name == "local" && !strings.Contains(stderr, "mabd build: warning: local cache import at "+localCache+" skipped") {
					t.Errorf("the first run does not say that there is no cache yet:\n%s", stderr)
				}
				prune(t)
				rep := filepath.Join(t.TempDir(), "report.json")
				code, _, stderr = mabdBuild(t, "--platform", two, "--cache-from", c.from, "--report", "json="+rep, ctx)
				if code != 0 {
					t.Fatalf("build on the pruned builder: exit %d\n%s", code, stderr)
				}
				steps := cachedSteps(t, stderr, "] RUN ")
				if len(steps) != 4 {
					t.Fatalf("RUN steps in the progress: %v, want 2 per platform\n%s", steps, stderr)
				}
				for name, cached := range steps {
					if !cached {
						t.Errorf("%s ran again on the pruned builder with --cache-from %s\n%s", name, c.from, stderr)
					}
				}
				for _, st := range readReport(t, rep).Steps {
					for _, ru := range st.Runs {
						if strings.HasPrefix(st.Name, "RUN ") && !ru.Cached {
							t.Errorf("the report says %s ran for %s", st.Name, ru.Platform)
						}
					}
				}
			})
		}
		// And without a cache to import, the pruned builder runs them.
		prune(t)
		code, _, stderr := mabdBuild(t, "--platform", two, ctx)
		if steps := cachedSteps(t, stderr, "] RUN "); code != 0 || len(steps) != 4 || slices.Contains(mapValues(steps), true) {
			t.Errorf("without --cache-from: exit %d, cached %v", code, steps)
		}
	})

	t.Run("Target", func(t *testing.T) {
		ctx := writeDockerfile(t, "ARG BASE\nFROM $BASE AS first\nRUN echo first > /first\nFROM first AS second\nRUN false\nRUN echo second > /second\n")
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := mabdBuild(t, "--target", "FIRST", "--output", "type=local,dest="+out, ctx)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if b, err := os.ReadFile(filepath.Join(out, "first")); err != nil || string(b) != "first\n" {
			t.Errorf("/first: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(out, "second")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/second: %v, want the build to stop at the stage first", err)
		}
		if strings.Contains(stderr, "RUN false") {
			t.Errorf("a step of the stage after the target ran:\n%s", stderr)
		}
	})

	t.Run("SecretsNeverInLayers", func(t *testing.T) {
		const fileSecret, envSecret = "file-secret-9f8e7d6c5b4a", "env-secret-1a2b3c4d5e6f"
		secretFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(secretFile, []byte(fileSecret), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("MABD_TEST_TOKEN", envSecret)
		ctx := writeDockerfile(t, "ARG BASE\nFROM $BASE\n"+
			"RUN --mount=type=secret,id=tok busybox sha256sum /run/secrets/tok > /tok.sum\n"+
			"RUN --mount=type=secret,id=envtok,required=true busybox sha256sum /run/secrets/envtok > /envtok.sum\n")
		oci := filepath.Join(t.TempDir(), "img.tar")
		// With provenance mode=max, whose attestation records the build's
		// inputs: the secrets must not be among them.
		code, _, stderr := mabdBuild(t, "--platform", two, "--secret", "id=tok,src="+secretFile, "--secret", "id=envtok,env=MABD_TEST_TOKEN",
			"--provenance", "mode=max", "--output", "type=oci,dest="+oci, ctx)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		blobs := tarballBlobs(t, oci)
		for secret, file := range map[string]string{fileSecret: "tok.sum", envSecret: "envtok.sum"} {
			sum := sha256.Sum256([]byte(secret))
			// Both platforms write the same file: one layer may serve both.
			sums := filesInLayers(t, blobs, file)
			if len(sums) == 0 {
				t.Errorf("no layer has %s", file)
			}
			for _, s := range sums {
				if !strings.HasPrefix(string(s), hex.EncodeToString(sum[:])) {
					t.Errorf("%s: %q, want the secret's sha256: the RUN step did not read it", file, s)
				}
			}
			for name, b := range blobs {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("the secret is in %s of the image", name)
				}
			}
		}
		if bytes.Contains([]byte(stderr), []byte(fileSecret)) || bytes.Contains([]byte(stderr), []byte(envSecret)) {
			t.Error("the progress display shows a secret")
		}
		// The audit reads every layer of both platforms.
		code, stdout, _ := mabd(t, "image", "audit", manifest.ArchivePrefix+oci)
		if code != 0 {
			t.Errorf("mabd image audit: exit %d\n%s", code, stdout)
		}
	})

	t.Run("SSHAgentForwarded", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", serveAgent(t, shortDir(t)))
		ctx := writeDockerfile(t, "ARG BASE\nFROM $BASE\nRUN --mount=type=ssh ls -l $SSH_AUTH_SOCK > /agent\n")
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := mabdBuild(t, "--ssh", "default", "--output", "type=local,dest="+out, ctx)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if b, err := os.ReadFile(filepath.Join(out, "agent")); err != nil || !strings.HasPrefix(string(b), "s") {
			t.Errorf("/agent: %q, %v; want ls -l of a socket", b, err)
		}
	})

	t.Run("BuildContexts", func(t *testing.T) {
		extra := writeDockerfile(t, "unused", "hello.txt", "from a named context\n")
		ctx := writeDockerfile(t, "FROM base\nCOPY --from=extra hello.txt /hello.txt\nRUN uname -m > /arch\n")
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := mabdBuild(t, "--platform", two, "--build-context", "extra="+extra, "--build-context", "base=docker-image://"+base,
			"--output", "type=local,dest="+out, ctx)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		for dir, arch := range map[string]string{"linux_amd64": "x86_64", "linux_arm64": "aarch64"} {
			if b, err := os.ReadFile(filepath.Join(out, dir, "hello.txt")); err != nil || string(b) != "from a named context\n" {
				t.Errorf("%s/hello.txt: %q, %v", dir, b, err)
			}
			if b, err := os.ReadFile(filepath.Join(out, dir, "arch")); err != nil || strings.TrimSpace(string(b)) != arch {
				t.Errorf("%s/arch: %q, %v; want %s: FROM base is the docker-image context", dir, b, err, arch)
			}
		}
	})

	t.Run("NoCacheRunsAgain", func(t *testing.T) {
		ctx := writeDockerfile(t, twoRuns)
		stamp := func(args ...string) (string, map[string]bool) {
			out := filepath.Join(t.TempDir(), "out")
			code, _, stderr := mabdBuild(t, append(args, "--output", "type=local,dest="+out, ctx)...)
			if code != 0 {
				t.Fatalf("%q: exit %d\n%s", args, code, stderr)
			}
			b, err := os.ReadFile(filepath.Join(out, "one"))
			if err != nil {
				t.Fatal(err)
			}
			return string(b), cachedSteps(t, stderr, "] RUN ")
		}
		first, _ := stamp()
		again, cached := stamp()
		if again != first || !slices.Equal(mapValues(cached), []bool{true, true}) {
			t.Fatalf("a second build: /one %q then %q, cached %v; want the cache used", first, again, cached)
		}
		fresh, cached := stamp("--no-cache")
		if fresh == first || slices.Contains(mapValues(cached), true) {
			t.Errorf("--no-cache: /one %q (before %q), cached %v; want every RUN step run again", fresh, first, cached)
		}
		if _, cached := stamp("--pull"); len(cached) != 2 {
			t.Errorf("--pull: steps %v", cached)
		}
	})

	t.Run("LabelsAndAnnotations", func(t *testing.T) {
		ref := reg + "/labelled:v1"
		code, _, stderr := mabdBuild(t, "--platform", two, "--push", "-t", ref, "--label", "org.example.team=builds",
			"--annotation", "org.opencontainers.image.source=https://example.com/app", "--annotation", "manifest[linux/arm64]:org.example.arm=yes",
			writeDockerfile(t, twoRuns))
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(mfSkopeoRaw(t, ref), &idx); err != nil {
			t.Fatal(err)
		}
		if idx.Annotations["org.opencontainers.image.source"] != "https://example.com/app" {
			t.Errorf("index annotations %v", idx.Annotations)
		}
		for _, d := range idx.Manifests {
			var m v1.Manifest
			if err := json.Unmarshal(mfSkopeoRaw(t, reg+"/labelled@"+d.Digest.String()), &m); err != nil {
				t.Fatal(err)
			}
			arm := d.Platform.Architecture == "arm64"
			if m.Annotations["org.opencontainers.image.source"] != "https://example.com/app" || (m.Annotations["org.example.arm"] == "yes") != arm {
				t.Errorf("%s manifest annotations %v", d.Platform, m.Annotations)
			}
		}
		if cf := mfSkopeoConfig(t, ref, "arm64"); cf.Config.Labels["org.example.team"] != "builds" {
			t.Errorf("config labels %v", cf.Config.Labels)
		}
	})

	t.Run("MetadataFileAndIIDFile", func(t *testing.T) {
		ref := reg + "/meta:v1"
		dir := t.TempDir()
		md, iid := filepath.Join(dir, "metadata.json"), filepath.Join(dir, "iid")
		os.WriteFile(iid, []byte("stale"), 0o644)
		code, stdout, stderr := mabd(t, "build", "--addr", addr, "--build-arg", "BASE="+base, "--platform", two, "--push", "-t", ref,
			"--metadata-file", md, "--iidfile", iid, "--quiet", writeDockerfile(t, twoRuns))
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(stdout) || stderr != "" {
			t.Errorf("--quiet: stdout %q, stderr %q; want only the digest", stdout, stderr)
		}
		raw := mfSkopeoRaw(t, ref)
		var idx v1.IndexManifest
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Digest     string            `json:"containerimage.digest"`
			Descriptor v1.Descriptor     `json:"containerimage.descriptor"`
			Name       string            `json:"image.name"`
			Index      string            `json:"mabd.index.digest"`
			Manifests  map[string]string `json:"mabd.manifests"`
			Platforms  []string          `json:"mabd.platforms"`
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		t.Logf("metadata file:\n%s", b)
		if d := mfDigest(raw); meta.Digest != d || meta.Index != d || meta.Descriptor.Digest.String() != d || strings.TrimSpace(stdout) != d {
			t.Errorf("skopeo says the index is %s; metadata containerimage.digest %s, mabd.index.digest %s, descriptor %s; printed %s",
				d, meta.Digest, meta.Index, meta.Descriptor.Digest, stdout)
		}
		want := map[string]string{}
		for _, m := range idx.Manifests {
			want[m.Platform.OS+"/"+m.Platform.Architecture] = m.Digest.String()
		}
		if len(want) != 2 || !maps.Equal(meta.Manifests, want) {
			t.Errorf("metadata manifests %v, skopeo's index %v", meta.Manifests, want)
		}
		if meta.Name != ref || !slices.Equal(meta.Platforms, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("image.name %q, platforms %q", meta.Name, meta.Platforms)
		}
		if b, err := os.ReadFile(iid); err != nil || string(b) != mfDigest(raw) {
			t.Errorf("--iidfile: %q, %v; want %s", b, err, mfDigest(raw))
		}
	})

	t.Run("ProvenanceMax", func(t *testing.T) {
		ref := reg + "/prov:v1"
		md := filepath.Join(t.TempDir(), "metadata.json")
		code, _, stderr := mabdBuild(t, "--platform", two, "--push", "-t", ref, "--provenance", "mode=max", "--metadata-file", md, writeDockerfile(t, twoRuns))
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		code, out, errs := mabd(t, "manifest", "inspect", "--verbose", ref)
		if code != 0 {
			t.Fatalf("mabd manifest inspect --verbose: exit %d\n%s", code, errs)
		}
		var entries []manifest.VerboseEntry
		if err := json.Unmarshal([]byte(out), &entries); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		subjects := map[string]bool{}
		images := map[string]string{}
		for _, e := range entries {
			if e.Descriptor.Annotations[manifest.AnnotationReferenceType] == "attestation-manifest" {
				subjects[e.Descriptor.Annotations[manifest.AnnotationReferenceDigest]] = true
				var m v1.Manifest
				if err := json.Unmarshal(e.OCIManifest, &m); err != nil || len(m.Layers) == 0 || m.Layers[0].Annotations["in-toto.io/predicate-type"] != "https://slsa.dev/provenance/v1" {
					t.Errorf("attestation %s: %v, layers %+v; want SLSA provenance", e.Ref, err, m.Layers)
				}
			} else {
				images[manifest.PlatformString(e.Descriptor.Platform)] = e.Descriptor.Digest.String()
			}
		}
		if len(images) != 2 || len(subjects) != 2 || !subjects[images["linux/amd64"]] || !subjects[images["linux/arm64"]] {
			t.Errorf("images %v, attestations of %v; want one provenance per platform\n%s", images, subjects, out)
		}
		var meta map[string]any
		if b, err := os.ReadFile(md); err != nil || json.Unmarshal(b, &meta) != nil || len(meta["mabd.attestations"].(map[string]any)) != 2 {
			t.Errorf("metadata file: %v, attestations %v", err, meta["mabd.attestations"])
		}
	})

	t.Run("EmulationReport", func(t *testing.T) {
		// Real CPU work, the same on both platforms: busybox's bzip2 over
		// 128 MiB of zeros (0.7 s natively here, 4 s emulated).
		ctx := writeDockerfile(t, "ARG BASE\nFROM $BASE\nRUN busybox dd if=/dev/zero bs=1M count=128 2>/dev/null | busybox bzip2 -c | busybox wc -c > /bz.size\n")
		rep := filepath.Join(t.TempDir(), "report.json")
		code, _, stderr := mabdBuild(t, "--platform", two, "--no-cache", "--report", "json="+rep, ctx)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		r := readReport(t, rep)
		if r.Version != 1 || r.BuildPlatform != "linux/amd64" || len(r.Platforms) != 2 || r.Platforms[0].Emulated || !r.Platforms[1].Emulated {
			t.Fatalf("report header %+v", r)
		}
		var work *build.Step
		for i, st := range r.Steps {
			if strings.Contains(st.Name, "bzip2") {
				work = &r.Steps[i]
			}
		}
		if work == nil || len(work.Runs) != 2 || r.Steps[0].Name != work.Name {
			t.Fatalf("the CPU step is not the slowest of the report: %+v", r.Steps)
		}
		native, emulated := work.Runs[0], work.Runs[1]
		if native.Platform != "linux/amd64" || native.Emulated || native.Seconds <= 0 ||
			emulated.Platform != "linux/arm64" || !emulated.Emulated || emulated.RanOn != "linux/arm64" || !(emulated.Slowdown > 1) {
			t.Errorf("runs of the CPU step: %+v", work.Runs)
		}
		bench := benchSlowdown(t)
		t.Logf("the CPU step: linux/amd64 %.2fs, linux/arm64 %.2fs emulated: slowdown %.1f×; mabd verify --bench arm64: %.1f×",
			native.Seconds, emulated.Seconds, emulated.Slowdown, bench)
		// The same emulator, two workloads (bzip2 here, an integer loop
		// there) on a machine other tests load: the same order of
		// magnitude, measured 3.0–5.5× against 4.8–5.2×.
		if emulated.Slowdown < bench/3 || emulated.Slowdown > bench*3 {
			t.Errorf("the step's slowdown %.1f× is not within a factor 3 of mabd verify --bench's %.1f×", emulated.Slowdown, bench)
		}
		if len(r.Advice) == 0 || r.Advice[0].Platform != "linux/arm64" || !strings.Contains(strings.Join(r.Advice[0].Rewrite, "\n"), "FROM --platform=$BUILDPLATFORM $BASE AS build") {
			t.Errorf("advice %+v", r.Advice)
		}
		for _, want := range []string{"emulation report: build platform linux/amd64; emulated: linux/arm64", "linux/arm64 ", "(emulated, ", "×)", "$BUILDPLATFORM", "ARG TARGETOS TARGETARCH"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("the text report lacks %q:\n%s", want, stderr)
			}
		}
		// --report none prints nothing of it; a single native platform
		// has nothing to report.
		for _, args := range [][]string{{"--platform", two, "--report", "none"}, {}} {
			if code, _, stderr := mabdBuild(t, append(args, ctx)...); code != 0 || strings.Contains(stderr, "emulation report") {
				t.Errorf("%q: exit %d, the report printed:\n%s", args, code, stderr)
			}
		}
	})
}

func mapValues(m map[string]bool) []bool {
	var out []bool
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
