package builder

import (
	"bytes"
	"errors"
	"fmt"
	"mabd/binfmt"
	"mabd/builder/wire"
	"mabd/emulator"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/containerd/platforms"
	"github.com/pelletier/go-toml/v2"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Defaults of [Options], which are also those of the daemon's [buildkit]
// configuration (daemon.DefaultConfig reads them).
const (
	DefaultRoot        = "/var/lib/mabd/buildkit"
	DefaultSocket      = wire.DefaultSocket
	DefaultSocketMode  = os.FileMode(0o660)
	DefaultStopTimeout = 10 * time.Second
	// DefaultAddress is the address clients reach DefaultSocket at.
	DefaultAddress = wire.DefaultAddress
	// MaxKeepStorage caps the KeepStorage sized to the disk.
	MaxKeepStorage int64 = 20e9
	// ConfigName is the name of the configuration Start writes into Root.
	ConfigName = "buildkitd.toml"
)

// EmulationLabel is the worker label that tells clients how the worker
// runs foreign programs: EmulationPrivate or EmulationHost.
const EmulationLabel = "org.mabd.emulation"

// Snapshotters of buildkitd's worker.
const (
	SnapshotterOverlay = "overlayfs"
	SnapshotterNative  = "native"
	// SnapshotterAuto lets buildkitd choose: overlayfs where it works
	// (for an ordinary user, in its user namespace), else native.
	SnapshotterAuto = "auto"
)

// Options configure a [Supervisor]. The zero value of every field has a
// sensible default.
type Options struct {
	// Binary is buildkitd; "" means "buildkitd" from $PATH.
	Binary string
	// Root is BuildKit's state directory: cache, snapshots, its config; ""
	// means DefaultRoot. The overlayfs snapshotter needs a file system that
	// can be overlayfs's upper layer (ext4, xfs with d_type, …).
	Root string
	// Socket is the unix socket buildkitd listens on; "" means
	// DefaultSocket. Its path must be shorter than 108 bytes.
	Socket string
	// SocketMode is the socket's permission bits; 0 means 0660.
	SocketMode os.FileMode
	// SocketGroup is the group (a name or a numeric id) the socket is given;
	// "" leaves root's.
	SocketGroup string
	// Emulation is EmulationPrivate ("" means it) or EmulationHost: where
	// the worker's foreign RUN steps find their emulators.
	Emulation string
	// Handlers are the binfmt_misc handlers of the private instance
	// (EmulationPrivate): registered there (with F, their emulators are
	// opened by the namespace), verified there, those that fail left out.
	// Only architectures with an OCI platform count.
	Handlers []binfmt.Spec
	// ProbeTimeout bounds each probe of the verification inside the
	// private namespace; 0 means emulator.DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// VerifyInterval is how often the private handlers are verified again
	// while buildkitd runs (one that fails is withdrawn: buildkitd
	// restarts without it, once no build runs); 0 means only at each
	// start.
	VerifyInterval time.Duration
	// Platforms are the worker's platforms with EmulationHost
	// ("linux/amd64", "linux/arm64"); nil lets BuildKit detect them from
	// the host's binfmt_misc handlers. With EmulationPrivate they are
	// those verified.
	Platforms []string
	// KeepStorage is how many bytes of build cache garbage collection
	// keeps; 0 means 10% of the file system of Root, at most
	// MaxKeepStorage.
	KeepStorage int64
	// TCPAddress, when not "", is an extra listener ("tcp://0.0.0.0:1234"
	// or "host:port") with mutual TLS: TLSCert and TLSKey are the server's
	// certificate and key, TLSCA the CA that clients' certificates must be
	// signed by. All three are required with it.
	TCPAddress, TLSCert, TLSKey, TLSCA string
	// InsecureRegistries are registries ("host:port") buildkitd reaches
	// over plain HTTP or unverified TLS. Registries on localhost and
	// 127.0.0.1 are reached over HTTP without being listed.
	InsecureRegistries []string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL; 0
	// means DefaultStopTimeout.
	StopTimeout time.Duration
	// ReadyTimeout bounds how long a (re)started buildkitd may take to
	// answer; 0 means one minute.
	ReadyTimeout time.Duration
	// Logger gets the supervisor's events and buildkitd's output (at debug
	// level; warnings and errors at warn); nil discards them.
	Logger *zap.Logger
}

// withDefaults fills in the defaults and checks the options.
func (o Options) withDefaults() (Options, error) {
	if o.Binary == "" {
		o.Binary = "buildkitd"
	}
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.SocketMode == 0 {
		o.SocketMode = DefaultSocketMode
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = time.Minute
	}
	switch o.Emulation {
	case "":
		o.Emulation = EmulationPrivate
	case EmulationPrivate, EmulationHost:
	default:
		return o, fmt.Errorf("emulation %q: want %q or %q", o.Emulation, EmulationPrivate, EmulationHost)
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = emulator.DefaultProbeTimeout
	}
	o.Handlers = builderHandlers(o.Handlers)
	for _, h := range o.Handlers {
		if err := h.Validate(); err != nil {
			return o, err
		}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	var err error
	if o.Root, err = filepath.Abs(o.Root); err != nil {
		return o, err
	}
	if o.Socket, err = filepath.Abs(o.Socket); err != nil {
		return o, err
	}
	if len(o.Socket) >= 108 {
		return o, fmt.Errorf("socket path %s is too long for a unix socket (%d bytes, the limit is 107)", o.Socket, len(o.Socket))
	}
	if o.KeepStorage < 0 {
		return o, fmt.Errorf("KeepStorage %d is negative", o.KeepStorage)
	}
	if o.Platforms, err = NormalizePlatforms(o.Platforms); err != nil {
		return o, err
	}
	if o.TCPAddress != "" {
		if o.TLSCert == "" || o.TLSKey == "" || o.TLSCA == "" {
			return o, errors.New("a TCP address needs mutual TLS: give the server's certificate, its key and the clients' CA")
		}
		if !strings.Contains(o.TCPAddress, "://") {
			o.TCPAddress = "tcp://" + o.TCPAddress
		}
		if !strings.HasPrefix(o.TCPAddress, "tcp://") {
			return o, fmt.Errorf("TCP address %q: want tcp://HOST:PORT", o.TCPAddress)
		}
		for _, p := range []*string{&o.TLSCert, &o.TLSKey, &o.TLSCA} {
			if *p, err = filepath.Abs(*p); err != nil {
				return o, err
			}
		}
	}
	return o, nil
}

// NormalizePlatforms parses OCI platforms ("linux/arm64", "arm64",
// "linux/arm/v7") and returns them normalised and formatted, without
// duplicates, in their order.
func NormalizePlatforms(ps []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, s := range ps {
		for _, s := range strings.Split(s, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := platforms.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("platform %q: %w", s, err)
			}
			f := platforms.Format(platforms.Normalize(p))
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out, nil
}

// workerSnapshotter is the snapshotter buildkitd's OCI worker chose, from
// the state directory it made in root ("runc-overlayfs"); overlayfs when
// an earlier run left another one too; "" when there is none yet.
func workerSnapshotter(root string) string {
	ds, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	found := ""
	for _, d := range ds {
		if name, ok := strings.CutPrefix(d.Name(), "runc-"); ok && d.IsDir() && (found == "" || name == SnapshotterOverlay) {
			found = name
		}
	}
	return found
}

// DefaultKeepStorage is 10% of the size of the file system holding dir, at
// most MaxKeepStorage.
func DefaultKeepStorage(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	size := int64(st.Blocks) * int64(st.Bsize)
	return min(size/10, MaxKeepStorage), nil
}

// buildkitdConfig is what mabd writes into buildkitd.toml: the keys of
// BuildKit's cmd/buildkitd/config.Config that it sets (TestConfigTOML
// reads the file back with BuildKit's loader, refusing keys BuildKit does
// not know).
type buildkitdConfig struct {
	Root string `toml:"root"`
	Log  struct {
		Format string `toml:"format"`
	} `toml:"log"`
	GRPC struct {
		Address []string   `toml:"address"`
		TLS     *tlsConfig `toml:"tls,omitempty"`
	} `toml:"grpc"`
	OTel struct {
		SocketPath string `toml:"socketPath"`
	} `toml:"otel"`
	Worker struct {
		OCI struct {
			Enabled       bool              `toml:"enabled"`
			Snapshotter   string            `toml:"snapshotter"`
			Platforms     []string          `toml:"platforms,omitempty"`
			Labels        map[string]string `toml:"labels,omitempty"`
			GC            bool              `toml:"gc"`
			GCKeepStorage int64             `toml:"gckeepstorage" comment:"build cache kept by garbage collection, in bytes"`
		} `toml:"oci"`
		Containerd struct {
			Enabled bool `toml:"enabled"`
		} `toml:"containerd"`
	} `toml:"worker"`
	Registry map[string]registryConfig `toml:"registry,omitempty"`
}

type tlsConfig struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	CA   string `toml:"ca"`
}

type registryConfig struct {
	HTTP     bool `toml:"http"`
	Insecure bool `toml:"insecure"`
}

// newBuildkitdConfig is the configuration for o (defaults applied): the
// OCI worker only, with garbage collection keeping keep bytes, listening
// on the socket (and on TCP with mutual TLS), the insecure registries
// reached over plain HTTP.
func newBuildkitdConfig(o Options, snapshotter string, keep int64) buildkitdConfig {
	var c buildkitdConfig
	c.Root = o.Root
	c.Log.Format = "text"
	c.GRPC.Address = []string{"unix://" + o.Socket}
	// Next to the socket, not in /run/buildkit: a rootless builder may not
	// write there, and two builders must not share it.
	c.OTel.SocketPath = filepath.Join(filepath.Dir(o.Socket), "buildkitd-otel.sock")
	if o.TCPAddress != "" {
		c.GRPC.Address = append(c.GRPC.Address, o.TCPAddress)
		c.GRPC.TLS = &tlsConfig{Cert: o.TLSCert, Key: o.TLSKey, CA: o.TLSCA}
	}
	oci := &c.Worker.OCI
	oci.Enabled, oci.Snapshotter, oci.Platforms = true, snapshotter, o.Platforms
	oci.Labels = map[string]string{EmulationLabel: o.Emulation}
	oci.GC, oci.GCKeepStorage = true, keep
	c.Worker.Containerd.Enabled = false
	for _, r := range o.InsecureRegistries {
		if c.Registry == nil {
			c.Registry = map[string]registryConfig{}
		}
		c.Registry[r] = registryConfig{HTTP: true, Insecure: true}
	}
	return c
}

// configHeader opens buildkitd.toml.
const configHeader = `# buildkitd configuration written by mabd (builder.Supervisor):
# do not edit, it is rewritten whenever the builder starts.
`

// configTOML renders buildkitd.toml for o (defaults applied).
func configTOML(o Options, snapshotter string, keep int64) ([]byte, error) {
	b := bytes.NewBufferString(configHeader)
	enc := toml.NewEncoder(b)
	enc.SetIndentTables(true)
	if err := enc.Encode(newBuildkitdConfig(o, snapshotter, keep)); err != nil {
		return nil, fmt.Errorf("buildkitd configuration: %w", err)
	}
	return b.Bytes(), nil
}

// writeConfig writes the configuration file atomically and returns its path.
func writeConfig(o Options, snapshotter string, keep int64) (string, error) {
	p := filepath.Join(o.Root, ConfigName)
	text, err := configTOML(o, snapshotter, keep)
	if err != nil {
		return "", err
	}
	tmp := p + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, text, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return p, nil
}

// OnePerArch keeps the first platform of each OS and architecture, formatted.
func OnePerArch(ps []ocispecs.Platform) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range ps {
		p = platforms.Normalize(p)
		k := p.OS + "/" + p.Architecture
		if !seen[k] {
			seen[k] = true
			out = append(out, platforms.Format(p))
		}
	}
	return out
}
