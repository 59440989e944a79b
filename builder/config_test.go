package builder

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/pelletier/go-toml/v2"

	"mabd/testing/fixtures"
)

// TestConfigTOML reads the generated buildkitd.toml back: with
// BuildKit's own loader (what buildkitd runs), strictly (every key is one
// BuildKit knows), and into the struct it was written from.
func TestConfigTOML(t *testing.T) {
	o, err := Options{
		Root:               "/var/lib/mabd/build\"kit\u0001",
		Socket:             "/run/mabd/bk.sock",
		Platforms:          []string{"linux/amd64", "arm64", "linux/amd64"},
		TCPAddress:         "0.0.0.0:1234",
		TLSCert:            "/etc/mabd/cert.pem",
		TLSKey:             "/etc/mabd/key.pem",
		TLSCA:              "/etc/mabd/ca.pem",
		InsecureRegistries: []string{"registry.lan:5000", "10.0.0.1", "registry.lan:5000"},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	text := readBack(t, o, SnapshotterOverlay, 123456789)
	if !bytes.HasPrefix(text, []byte(configHeader)) {
		t.Errorf("no header:\n%s", text)
	}
	cfg, err := bkconfig.Load(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("BuildKit refuses the config: %v\n%s", err, text)
	}
	oci := cfg.Workers.OCI
	switch {
	case cfg.Root != o.Root:
		t.Errorf("root %q, want %q", cfg.Root, o.Root)
	case oci.Enabled == nil || !*oci.Enabled:
		t.Error("the OCI worker is not enabled")
	case cfg.Workers.Containerd.Enabled == nil || *cfg.Workers.Containerd.Enabled:
		t.Error("the containerd worker is not disabled")
	case oci.Snapshotter != "overlayfs":
		t.Errorf("snapshotter %q", oci.Snapshotter)
	case !slices.Equal(oci.Platforms, []string{"linux/amd64", "linux/arm64"}):
		t.Errorf("platforms %q", oci.Platforms)
	case oci.GC == nil || !*oci.GC:
		t.Error("gc is off")
	case oci.GCKeepStorage.Bytes != 123456789: //nolint:staticcheck // the key mabd writes
		t.Errorf("keep storage %+v", oci.GCKeepStorage) //nolint:staticcheck
	case !slices.Equal(cfg.GRPC.Address, []string{"unix:///run/mabd/bk.sock", "tcp://0.0.0.0:1234"}):
		t.Errorf("grpc addresses %q", cfg.GRPC.Address)
	case cfg.GRPC.TLS.Cert != "/etc/mabd/cert.pem" || cfg.GRPC.TLS.Key != "/etc/mabd/key.pem" || cfg.GRPC.TLS.CA != "/etc/mabd/ca.pem":
		t.Errorf("grpc tls %+v", cfg.GRPC.TLS)
	case len(cfg.Registries) != 2:
		t.Errorf("registries %+v", cfg.Registries)
	}
	for _, name := range []string{"registry.lan:5000", "10.0.0.1"} {
		r, ok := cfg.Registries[name]
		if !ok || r.PlainHTTP == nil || !*r.PlainHTTP || r.Insecure == nil || !*r.Insecure {
			t.Errorf("registry %s: %+v", name, cfg.Registries)
		}
	}

	// Without platforms, TCP and registries: no platforms key (BuildKit
	// detects them), one address, no TLS.
	o, err = Options{Root: "/r", Socket: "/s.sock"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	text = readBack(t, o, SnapshotterNative, 1)
	cfg, err = bkconfig.Load(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(cfg.Workers.OCI.Platforms) != 0 || len(cfg.GRPC.Address) != 1 || cfg.GRPC.TLS.Cert != "" || cfg.Workers.OCI.Snapshotter != "native" || len(cfg.Registries) != 0 {
		t.Errorf("minimal config parsed as %+v\n%s", cfg, text)
	}
	for _, key := range []string{"platforms", "tls", "registry"} {
		if bytes.Contains(text, []byte(key)) {
			t.Errorf("minimal config has %s:\n%s", key, text)
		}
	}
}

// readBack renders the configuration, checks that it reads back to the
// same values and holds no key BuildKit does not know, and returns it.
func readBack(t *testing.T, o Options, snapshotter string, keep int64) []byte {
	t.Helper()
	text, err := configTOML(o, snapshotter, keep)
	if err != nil {
		t.Fatal(err)
	}
	var got buildkitdConfig
	if err := toml.NewDecoder(bytes.NewReader(text)).DisallowUnknownFields().Decode(&got); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if want := newBuildkitdConfig(o, snapshotter, keep); !reflect.DeepEqual(got, want) {
		t.Errorf("read back as\n%+v\nwant\n%+v\n%s", got, want, text)
	}
	if err := toml.NewDecoder(bytes.NewReader(text)).DisallowUnknownFields().Decode(&bkconfig.Config{}); err != nil {
		t.Errorf("a key BuildKit does not know: %v\n%s", err, text)
	}
	return text
}

// TestConfigBuildkitd: the real buildkitd (bin/buildkitd, `make deps`)
// starts on the configuration with platforms and insecure registries and
// reports the platforms (TestTCPMutualTLS starts it with TLS).
func TestConfigBuildkitd(t *testing.T) {
	root, err := fixtures.Root()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "buildkitd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%v: run `make deps`", err)
	}
	dir := t.TempDir()
	opt := Options{
		Binary:             bin,
		Root:               filepath.Join(dir, "root"),
		Socket:             filepath.Join(dir, "bk.sock"),
		Platforms:          []string{"linux/amd64", "linux/riscv64"},
		InsecureRegistries: []string{"registry.lan:5000", "127.0.0.1:5000"},
		KeepStorage:        1e9,
		Emulation:          EmulationHost, // the configured platforms are written as given
	}
	s := NewSupervisor(opt)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	st := s.Status()
	if !slices.Contains(st.Platforms, "linux/riscv64") {
		t.Errorf("buildkitd reports %q, not the platforms of its configuration", st.Platforms)
	}
	o, err := opt.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want, err := configTOML(o, SnapshotterAuto, st.KeepStorage)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(st.Config); err != nil || !bytes.Equal(got, want) {
		t.Errorf("buildkitd ran on\n%s\nwant\n%s(%v)", got, want, err)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{TCPAddress: "0.0.0.0:1234"}, // no TLS
		{TCPAddress: "unix:///x", TLSCert: "c", TLSKey: "k", TLSCA: "a"},
		{Socket: "/" + strings.Repeat("x", 120)},
		{Platforms: []string{"linux/arm64/v8/extra"}},
		{KeepStorage: -1},
	} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestNormalizePlatforms(t *testing.T) {
	got, err := NormalizePlatforms([]string{"linux/amd64,arm64", "linux/arm64/v8", "armhf", " linux/arm/v7 "})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDefaultKeepStorage(t *testing.T) {
	n, err := DefaultKeepStorage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || n > MaxKeepStorage {
		t.Errorf("DefaultKeepStorage = %d", n)
	}
}

func TestParseMountinfo(t *testing.T) {
	const info = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /proc/sys/fs/binfmt_misc rw,nosuid shared:9 - binfmt_misc binfmt_misc rw
40 22 0:40 / /var/lib/mabd/buildkit/x rw - overlay overlay rw,lowerdir=/a
41 40 0:41 / /var/lib/mabd/buildkit/x/deep rw - tmpfs tmpfs rw
42 22 0:42 / /var/lib/mabd/buildkit/with\040space rw - overlay over\134lay rw
43 22 0:43 / /var/lib/mabd/buildkit2 rw - overlay overlay rw
44 22 0:44 / /var/lib/mabd/buildkit/bf rw - binfmt_misc binfmt_misc rw
`
	ms, err := ParseMountinfo(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 7 || ms[4].Point != "/var/lib/mabd/buildkit/with space" || ms[4].Source != `over\lay` || ms[1].FSType != "binfmt_misc" {
		t.Fatalf("parsed %+v", ms)
	}
	var got []string
	for _, m := range filterUnder(ms, "/var/lib/mabd/buildkit/") {
		got = append(got, m.Point)
	}
	want := []string{"/var/lib/mabd/buildkit/x/deep", "/var/lib/mabd/buildkit/with space", "/var/lib/mabd/buildkit/x"}
	if !slices.Equal(got, want) {
		t.Errorf("under root: %q, want %q (deepest first, no binfmt_misc, not the sibling)", got, want)
	}
	if _, err := ParseMountinfo(strings.NewReader("garbage\n")); err == nil {
		t.Error("garbage parsed")
	}
}
