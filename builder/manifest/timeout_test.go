package manifest_test

// Tests of registry timeouts: a listener on 127.0.0.1 that accepts and
// never answers (registry.Silent), and the real registry (registry.Start)
// behind a proxy that stalls or trickles what it serves.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"mabd/builder/manifest"
	"mabd/testing/registry"
)

// slowProxy serves the registry at upstream on 127.0.0.1; the bodies of
// the responses whose path contains match are stalled after their first
// bytes (stall) or trickled in small pieces.
func slowProxy(t *testing.T, upstream, match string, stall bool) string {
	t.Helper()
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	p.FlushInterval = -1
	p.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, match) {
			resp.Body = &slowBody{rc: resp.Body, ctx: resp.Request.Context(), stall: stall}
		}
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// slowBody gives 16 bytes, then either nothing more until the client goes
// away (stall), or the rest 16 KiB at a time, 50 ms apart.
type slowBody struct {
	rc    io.ReadCloser
	ctx   context.Context
	stall bool
	n     int
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.n >= 16 && b.stall {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	if b.n > 0 {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	size := 16 << 10
	if b.n == 0 {
		size = 16
	}
	n, err := b.rc.Read(p[:min(len(p), size)])
	b.n += n
	return n, err
}

func (b *slowBody) Close() error { return b.rc.Close() }

// TestRegistryTimeout: a registry that does not answer, or stops in the
// middle of a manifest or a layer, fails with a TimeoutError naming it and
// the timeout; a layer that keeps coming, however slowly, does not.
func TestRegistryTimeout(t *testing.T) {
	addr := registry.Start(t)
	mustPush(t, addr+"/demo:v1", newTestLayout(t, "", nil).img)
	mustPush(t, addr+"/big:v1", bigImage(t))
	silent := registry.Silent(t)
	const short = 300 * time.Millisecond
	for _, c := range []struct {
		name    string
		ref     string
		timeout time.Duration
		fails   bool
		stage   string // of the TimeoutError, if it matters
	}{
		// go-containerregistry tries https first, then http: both
		// time out, the first is reported.
		{name: "accepts and never answers", ref: silent + "/demo:v1", timeout: short, fails: true},
		{name: "stalls in a manifest", ref: slowProxy(t, addr, "/manifests/", true) + "/demo:v1", timeout: short, fails: true, stage: "reading the response body"},
		{name: "stalls in a layer", ref: slowProxy(t, addr, "/blobs/", true) + "/demo:v1", timeout: short, fails: true, stage: "reading the response body"},
		// 16 KiB every 50 ms, 30 times less than the timeout; the
		// 1 MiB layer takes twice the timeout.
		{name: "trickles a layer", ref: slowProxy(t, addr, "/blobs/", false) + "/big:v1", timeout: 1500 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := readEverything(c.ref, manifest.Options{Timeout: c.timeout})
			if !c.fails {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			var te *manifest.TimeoutError
			host, _, _ := strings.Cut(c.ref, "/")
			if !errors.As(err, &te) || te.Host != host || te.Timeout != c.timeout || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v (%T), want a TimeoutError of %s after %s", err, err, host, c.timeout)
			}
			if want := "registry " + host + " did not answer within " + c.timeout.String(); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), c.stage) {
				t.Errorf("error %q, want %q and %q", err, want, c.stage)
			}
		})
	}

	// Pushing an index to a registry that never answers.
	dir := newTestLayout(t, "", nil).writeDir(t)
	_, err := manifest.Create(context.Background(), silent+"/demo:v1", []string{"oci-layout:" + dir}, manifest.CreateOptions{Options: manifest.Options{Timeout: short}})
	var te *manifest.TimeoutError
	if !errors.As(err, &te) || te.Host != silent || !strings.HasPrefix(err.Error(), "push "+silent+"/demo:v1: registry "+silent+" did not answer within 300ms") {
		t.Errorf("create: %v", err)
	}
}

// bigImage is a linux/amd64 image of one 1 MiB layer of random bytes.
func bigImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// mustPush pushes img to ref over plain HTTP.
func mustPush(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}
