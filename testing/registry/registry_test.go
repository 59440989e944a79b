package registry

import (
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestFindMissing(t *testing.T) {
	old := Paths
	t.Cleanup(func() { Paths = old })
	Paths = nil
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(); err == nil || !strings.Contains(err.Error(), "install docker-registry (make deps)") {
		t.Errorf("Find without a binary: %v", err)
	}
}

// TestPushBusyboxBase pushes a three-platform base to a real registry and
// reads it back with skopeo.
func TestPushBusyboxBase(t *testing.T) {
	addr := Start(t)
	ref := PushBusyboxBase(t, addr, "base/busybox", "amd64", "arm64", "armhf")
	if ref != addr+"/base/busybox:latest" {
		t.Errorf("ref %q", ref)
	}
	out, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw: %v (install skopeo: make deps)", err)
	}
	var idx struct {
		MediaType string
		Manifests []struct {
			MediaType string
			Platform  struct{ OS, Architecture, Variant string }
		}
	}
	if err := json.Unmarshal(out, &idx); err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, m := range idx.Manifests {
		p := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			p += "/" + m.Platform.Variant
		}
		ps = append(ps, p)
		if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("%s: media type %s", p, m.MediaType)
		}
	}
	sort.Strings(ps)
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || !slices.Equal(ps, []string{"linux/amd64", "linux/arm/v7", "linux/arm64"}) {
		t.Fatalf("index %s of %q:\n%s", idx.MediaType, ps, out)
	}
	// Each image's config says its platform.
	out, err = exec.Command("skopeo", "inspect", "--config", "--tls-verify=false", "--override-arch", "arm", "--override-variant", "v7", "docker://"+ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	var img struct {
		Os           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
		Config       struct{ Cmd []string }
	}
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatal(err)
	}
	if img.Os != "linux" || img.Architecture != "arm" || img.Variant != "v7" || !slices.Equal(img.Config.Cmd, []string{"sh"}) {
		t.Errorf("arm/v7 image config: %+v", img)
	}
	// The same binaries give the same digest.
	again := PushBusyboxBase(t, addr, "base/again", "amd64", "arm64", "armhf")
	d1, _ := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+again).Output()
	if string(d1) != string(mustRaw(t, ref)) {
		t.Error("pushing the same busybox twice gave different indexes")
	}
}

func mustRaw(t *testing.T, ref string) []byte {
	t.Helper()
	b, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSilent: a connection to Silent is accepted and gets no answer.
func TestSilent(t *testing.T) {
	c, err := net.Dial("tcp", Silent(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var ne net.Error
	if n, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read %d bytes, %v; want a timeout", n, err)
	}
}
