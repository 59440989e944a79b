package builder

import (
	"slices"
	"strings"
	"testing"

	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
)

// TestConfigTOML checks the generated buildkitd.toml with BuildKit's own
// configuration loader.
func TestConfigTOML(t *testing.T) {
	o, err := Options{
		Root:               "/var/lib/mabd/build\"kit",
		Socket:             "/run/mabd/bk.sock",
		Platforms:          []string{"linux/amd64", "arm64", "linux/amd64"},
		TCPAddress:         "0.0.0.0:1234",
		TLSCert:            "/etc/mabd/cert.pem",
		TLSKey:             "/etc/mabd/key.pem",
		TLSCA:              "/etc/mabd/ca.pem",
		InsecureRegistries: []string{"registry.lan:5000"},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	text := configTOML(o, SnapshotterOverlay, 123456789)
	cfg, err := bkconfig.Load(strings.NewReader(text))
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
	}
	r, ok := cfg.Registries["registry.lan:5000"]
	if !ok || r.PlainHTTP == nil || !*r.PlainHTTP || r.Insecure == nil || !*r.Insecure {
		t.Errorf("registry config %+v", cfg.Registries)
	}

	// Without platforms and TCP: no platforms key (BuildKit detects them),
	// one address, no TLS.
	o, err = Options{Root: "/r", Socket: "/s.sock"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	text = configTOML(o, SnapshotterNative, 1)
	cfg, err = bkconfig.Load(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(cfg.Workers.OCI.Platforms) != 0 || len(cfg.GRPC.Address) != 1 || cfg.GRPC.TLS.Cert != "" || cfg.Workers.OCI.Snapshotter != "native" {
		t.Errorf("minimal config parsed as %+v\n%s", cfg, text)
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

func TestTailWriter(t *testing.T) {
	w := newTailWriter(nil, 3)
	w.Write([]byte("a\nlevel=error msg=bad\nb\n"))
	w.Write([]byte("c\nd"))
	w.Write([]byte("\n"))
	if l := w.Lines(); !slices.Equal(l, []string{"b", "c", "d"}) {
		t.Errorf("lines %q", l)
	}
	if w.last() != "d" {
		t.Errorf("last %q", w.last())
	}
	w.Write([]byte("buildkitd: failed to lock\nx\n"))
	if w.last() != "buildkitd: failed to lock" {
		t.Errorf("last %q, want the error line", w.last())
	}
}
