package build_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	controlapi "github.com/moby/buildkit/api/services/control"
	"github.com/moby/buildkit/client"

	digest "github.com/opencontainers/go-digest"

	"mabd/builder/build"
	"mabd/builder/buildertest"
	"mabd/builder/fleet"
	"mabd/builder/manifest"
	"mabd/testing/logbuf"
	"mabd/testing/procs"
	"mabd/testing/registry"
)

// built lists the platforms of the builds a node's own build history
// holds, finished and successful ("linux/arm64", …).
func built(t *testing.T, n fleet.Node) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, n.Address, build.ClientOpts(n)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stream, err := c.ControlClient().ListenBuildHistory(ctx, &controlapi.BuildHistoryRequest{EarlyExit: true})
	if err != nil {
		t.Fatalf("%s: build history: %v", n.Name, err)
	}
	var out []string
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: build history: %v", n.Name, err)
		}
		if r := ev.Record; r != nil && r.CompletedAt != nil && r.Error == nil {
			out = append(out, strings.Split(r.FrontendAttrs["platform"], ",")...)
		}
	}
	return out
}

func dockerfile(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "skopeo", args...).Output()
	if err != nil {
		t.Fatalf("skopeo %q: %v", args, err)
	}
	return out
}

// indexPlatforms are the platforms of the images an index lists.
func indexPlatforms(t *testing.T, raw []byte) []string {
	t.Helper()
	var idx struct {
		Manifests []struct {
			Platform struct{ OS, Architecture string }
		}
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	var out []string
	for _, m := range idx.Manifests {
		if m.Platform.OS != "unknown" {
			out = append(out, m.Platform.OS+"/"+m.Platform.Architecture)
		}
	}
	slices.Sort(out)
	return out
}

// TestFleetBuild: the local builder (native amd64, emulating arm64) and a
// second buildkitd on 127.0.0.1 over mutual TLS, declared native for
// linux/arm64. Each platform is built where it is native, as the nodes'
// own build histories show; the images are joined into one pushed index
// and one OCI archive; a node stopped before the build or killed during
// its solve leaves arm64 to the local builder; a platform no node builds
// is refused before any solve; a node with a wrong certificate is down
// with the TLS error.
func TestFleetBuild(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatal("skopeo missing: apt-get install skopeo (make deps)")
	}
	reg := registry.Start(t)
	base := registry.PushBusyboxBase(t, reg, "busybox", "amd64", "arm64")
	local := buildertest.Start(t, "linux/amd64", "linux/arm64")
	arm := buildertest.StartRemote(t, "linux/amd64", "linux/arm64")
	localNode := fleet.Node{Name: fleet.LocalName, Address: local.Address(), Local: true}
	armNode := fleet.Node{Name: "arm1", Address: arm.Address, CA: arm.CA, Cert: arm.Cert, Key: arm.Key, Native: []string{"linux/arm64"}}
	nodes := []fleet.Node{localNode, armNode}
	two := []string{"linux/amd64", "linux/arm64"}

	onFleet := func(t *testing.T, ctxDir string, o build.Options) (*build.FleetResult, string, error) {
		t.Helper()
		var progress logbuf.Buffer
		o.Context, o.Progress, o.ProgressOutput = ctxDir, "plain", &progress
		o.BuildArgs = append(o.BuildArgs, "BASE="+base)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		res, err := build.OnFleet(ctx, nodes, build.FleetOptions{Options: o})
		return res, progress.String(), err
	}
	where := func(res *build.FleetResult) map[string]string {
		m := map[string]string{}
		for _, b := range res.Built {
			kind := "emulated"
			if b.Native {
				kind = "native"
			}
			m[b.Platform] = b.Node + " " + kind
		}
		return m
	}

	t.Run("NativeFirstOneIndex", func(t *testing.T) {
		dir := dockerfile(t, "ARG BASE\nFROM $BASE\nRUN uname -m > /arch && echo native-first > /which\n")
		archive := filepath.Join(t.TempDir(), "image.tar")
		tag := reg + "/fleet/app:v1"
		res, progress, err := onFleet(t, dir, build.Options{Platforms: two, Tags: []string{tag}, Push: true, Outputs: []string{"type=oci,dest=" + archive}})
		if err != nil {
			t.Fatalf("%v\n%s", err, progress)
		}
		if got := where(res); got["linux/amd64"] != "local native" || got["linux/arm64"] != "arm1 native" {
			t.Errorf("routes %v, want amd64 on local and arm64 on arm1, both native", got)
		}
		// The nodes' own histories, not mabd's word.
		if h := built(t, armNode); !slices.Contains(h, "linux/arm64") || slices.Contains(h, "linux/amd64") {
			t.Errorf("arm1 built %q, want linux/arm64 only", h)
		}
		if h := built(t, localNode); !slices.Contains(h, "linux/amd64") || slices.Contains(h, "linux/arm64") {
			t.Errorf("local built %q, want linux/amd64 only", h)
		}
		for _, w := range []string{"[arm1 linux/arm64] ", "[local linux/amd64] "} {
			if !strings.Contains(progress, w) {
				t.Errorf("the progress has no line tagged %q:\n%s", w, progress)
			}
		}
		raw := skopeo(t, "inspect", "--tls-verify=false", "--raw", "docker://"+tag)
		if got := indexPlatforms(t, raw); !slices.Equal(got, two) {
			t.Errorf("the pushed index lists %q, want %q", got, two)
		}
		if want := digest.FromBytes(raw).String(); res.Digest != want {
			t.Errorf("digest %q, want the pushed index's %s", res.Digest, want)
		}
		raw = skopeo(t, "inspect", "--raw", "oci-archive:"+archive)
		if got := indexPlatforms(t, raw); !slices.Equal(got, two) {
			t.Errorf("the OCI archive's index lists %q, want %q", got, two)
		}
		a, err := manifest.Resolve(context.Background(), manifest.ArchivePrefix+archive, manifest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ms, err := a.Manifests()
		if err != nil || len(ms) != 2 {
			t.Errorf("the archive has %d manifests (%v), want 2", len(ms), err)
		}
	})

	t.Run("NoRoute", func(t *testing.T) {
		before := len(built(t, localNode)) + len(built(t, armNode))
		dir := dockerfile(t, "ARG BASE\nFROM $BASE\nRUN true\n")
		_, _, err := onFleet(t, dir, build.Options{Platforms: []string{"linux/amd64", "linux/s390x"}, Outputs: []string{"type=oci,dest=" + filepath.Join(t.TempDir(), "x.tar")}})
		var nr *fleet.NoRouteError
		if !errors.As(err, &nr) || !slices.Equal(nr.Platforms, []string{"linux/s390x"}) || !strings.Contains(err.Error(), "arm1 (") || !strings.Contains(err.Error(), "local (") {
			t.Fatalf("err %v, want a NoRouteError for linux/s390x naming both nodes", err)
		}
		if after := len(built(t, localNode)) + len(built(t, armNode)); after != before {
			t.Errorf("%d builds ran", after-before)
		}
	})

	t.Run("WrongCertificateIsDown", func(t *testing.T) {
		other := t.TempDir()
		ca, caKey := buildertest.WriteCert(t, other, "ca", true, nil, nil)
		buildertest.WriteCert(t, other, "client", false, ca, caKey)
		bad := armNode
		bad.Name, bad.Cert, bad.Key = "impostor", filepath.Join(other, "client.pem"), filepath.Join(other, "client-key.pem")
		st := build.CheckNode(context.Background(), bad, 5*time.Second)
		if st.Up || !strings.Contains(st.LastError, "tls: unknown certificate authority") {
			t.Errorf("state %+v: want down with the TLS error", st)
		}
		t.Logf("a client certificate of another CA: %s", st.LastError)
	})

	t.Run("KilledDuringSolveRetriedOnLocal", func(t *testing.T) {
		// arm64's step sleeps, so that arm1 is killed in the middle of it.
		dir := dockerfile(t, "ARG BASE\nFROM $BASE\nARG TARGETARCH\nRUN if [ \"$TARGETARCH\" = arm64 ]; then sleep 8; fi; uname -m > /arch; echo killed > /which\n")
		tag := reg + "/fleet/app:retry"
		done := make(chan struct{})
		var armNS *os.File // arm1's private namespace, held open
		go func() {
			defer close(done)
			c, err := client.New(context.Background(), armNode.Address, build.ClientOpts(armNode)...)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				n, err := build.ActiveBuilds(ctx, c)
				cancel()
				if err == nil && n > 0 {
					time.Sleep(2 * time.Second) // into the RUN step
					st := arm.Status()
					if armNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/user", st.AgentPID)); err != nil {
						t.Error(err)
					}
					for _, pid := range []int{st.PID, st.AgentPID} {
						if pid > 0 {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
					t.Logf("killed arm1's buildkitd (pid %d, agent %d) during its solve", st.PID, st.AgentPID)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Error("arm1 never started a build")
		}()
		res, progress, err := onFleet(t, dir, build.Options{Platforms: two, Tags: []string{tag}, Push: true})
		<-done
		if err != nil {
			t.Fatalf("%v\n%s", err, progress)
		}
		var arm64 build.Built
		for _, b := range res.Built {
			if b.Platform == "linux/arm64" {
				arm64 = b
			}
		}
		if arm64.Node != fleet.LocalName || arm64.Native || !strings.Contains(arm64.Retried, "arm1 failed") {
			t.Errorf("arm64 %+v, want retried on local, emulated, saying arm1 failed", arm64)
		}
		if got := indexPlatforms(t, skopeo(t, "inspect", "--tls-verify=false", "--raw", "docker://"+tag)); !slices.Equal(got, two) {
			t.Errorf("the pushed index lists %q, want %q", got, two)
		}
		t.Logf("retry: %s", arm64.Retried)
		// The RUN step arm1's buildkitd was running (QEMU's sh in a
		// container) dies with the builder's PID namespace: nothing is
		// left in its user namespace.
		if armNS != nil {
			defer armNS.Close()
			var left []int
			for range 100 {
				if left, err = procs.InUserNS(armNS); err == nil && len(left) == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || len(left) > 0 {
				t.Errorf("processes left in arm1's killed namespace: %v, %v", left, err)
			}
		}
	})

	t.Run("StoppedBeforeTheBuild", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := arm.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		dir := dockerfile(t, "ARG BASE\nFROM $BASE\nRUN uname -m > /arch && echo stopped > /which\n")
		tag := reg + "/fleet/app:fallback"
		res, progress, err := onFleet(t, dir, build.Options{Platforms: two, Tags: []string{tag}, Push: true})
		if err != nil {
			t.Fatalf("%v\n%s", err, progress)
		}
		if got := where(res); got["linux/amd64"] != "local native" || got["linux/arm64"] != "local emulated" {
			t.Errorf("routes %v, want both on local, arm64 emulated", got)
		}
		for _, b := range res.Built {
			if b.Platform == "linux/arm64" && !strings.Contains(b.Why, "arm1, native for it, is down") {
				t.Errorf("why %q, want it to say arm1 is down", b.Why)
			}
		}
		if res.Single == nil {
			t.Error("both platforms on one node: want one ordinary build")
		}
	})
}
