package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"mabd/binfmt"
	"mabd/builder"
	"mabd/daemon/api"
	"mabd/emulator"
	"mabd/host"
	"mabd/internal/safefile"
	"mabd/internal/tomlcheck"
)

// Bounds checked by Validate.
const (
	// maxSocketPath is the longest path a unix socket can be bound to
	// (sun_path holds 108 bytes with the terminating NUL).
	maxSocketPath = 107
	// maxConfigSize bounds the configuration file (the default one is 5
	// KB).
	maxConfigSize = 1 << 20

	// MinReconcileInterval is the shortest reconcile_interval.
	MinReconcileInterval = 100 * time.Millisecond
	// MinVerifyInterval is the shortest [verify] interval other than 0.
	MinVerifyInterval = time.Second
)

// Config is mabd's daemon configuration, read from a TOML file
// (api.ConfigPath: api.DefaultConfigPath for root). Every key is optional; DefaultConfig gives the
// values of absent keys. packaging/mabd.toml documents each key.
type Config struct {
	// Architectures are the handlers to keep registered: ["all"] (every
	// architecture whose emulator is installed, except the host's own) or
	// names as `mabd install` takes them. In TOML, "all" or a list.
	Architectures Architectures `toml:"architectures"`
	// Flags are the handler flags; "" means F, plus P when the emulator
	// honours it (that is "FP" on QEMU ≥ 6.0).
	Flags string `toml:"flags"`
	// Conflict says what to do with an entry of the same name that
	// another tool registered: "repair" leaves those that serve the
	// architecture (Debian's, for one) and replaces those that do not (a
	// mask refusing valid programs, no F flag, a failing interpreter);
	// "keep" leaves every one alone, reporting the defective ones as
	// conflicts; "replace" replaces them all with mabd's.
	Conflict string `toml:"conflict"`
	// EmulatorDirs are searched for qemu-<arch>-static and qemu-<arch>.
	EmulatorDirs []string `toml:"emulator_dirs"`
	// Emulator says how the emulator of an architecture is chosen among
	// its candidates (every qemu-<arch>-static and qemu-<arch> in
	// EmulatorDirs): "auto" proves each in a private binfmt_misc
	// instance and registers one that passes the workload probe, the
	// fastest (host.ChoiceAuto); "first" takes the first found
	// (host.ChoiceFirst).
	Emulator string `toml:"emulator"`
	// Emulators pins the emulator of architectures: names as
	// architectures takes them to absolute paths, registered whatever
	// the other candidates. In TOML, the [emulators] table.
	Emulators map[string]string `toml:"emulators"`
	// Persist also writes binfmt.d files (into PersistDir) so that
	// systemd-binfmt registers the handlers at boot.
	Persist bool `toml:"persist"`
	// PersistDir is where Persist writes qemu-<arch>.conf.
	PersistDir string `toml:"persist_dir"`
	// ReconcileInterval is how often the daemon compares the binfmt_misc
	// table with the configuration and repairs it.
	ReconcileInterval Duration `toml:"reconcile_interval"`
	// UnregisterOnStop removes mabd's handlers when the daemon stops.
	UnregisterOnStop bool `toml:"unregister_on_stop"`
	// BinfmtMount is the binfmt_misc instance the daemon manages.
	BinfmtMount string `toml:"binfmt_mount"`
	// StateDir holds what mabd remembers between runs.
	StateDir string `toml:"state_dir"`

	Verify   VerifyConfig   `toml:"verify"`
	Control  ControlConfig  `toml:"control"`
	Metrics  MetricsConfig  `toml:"metrics"`
	Log      LogConfig      `toml:"log"`
	BuildKit BuildKitConfig `toml:"buildkit"`
	Fleet    FleetConfig    `toml:"fleet"`
}

// VerifyConfig is the [verify] table: how the daemon proves that foreign
// programs run.
type VerifyConfig struct {
	// Rootfs maps architectures to foreign root file systems whose sh is
	// run as well as the probe (like `mabd verify --rootfs ARCH=DIR`).
	Rootfs map[string]string `toml:"rootfs"`
	// Interval is how often to verify; 0 means only at start and after
	// repairs.
	Interval Duration `toml:"interval"`
	// Timeout bounds each probe.
	Timeout Duration `toml:"timeout"`
}

// ControlConfig is the [control] table: the control API's unix socket.
// It is comparable, so that a reload can tell whether it changed.
type ControlConfig struct {
	// Socket is the unix socket's path (unless systemd passes one).
	Socket string `toml:"socket"`
	// Mode is the socket's permission bits; in TOML an octal string.
	Mode FileMode `toml:"mode"`
	// Group owns the socket; "" means root's group.
	Group string `toml:"group"`
}

// MetricsConfig is the [metrics] table: the Prometheus endpoint.
type MetricsConfig struct {
	// Address is host:port to serve /metrics on; "" means no endpoint.
	Address string `toml:"address"`
}

// LogConfig is the [log] table.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is auto (journal under systemd, console on a terminal, json
	// otherwise), console, json or journal.
	Format string `toml:"format"`
}

// BuildKitConfig is the [buildkit] table: the BuildKit daemon mabd runs.
type BuildKitConfig struct {
	// Enabled runs buildkitd.
	Enabled bool `toml:"enabled"`
	// Socket is buildkitd's unix socket.
	Socket string `toml:"socket"`
	// SocketGroup owns the socket; "" means root's group.
	SocketGroup string `toml:"socket_group"`
	// Root is buildkitd's state directory (cache and snapshots).
	Root string `toml:"root"`
	// Binary is buildkitd's path; "" means buildkitd next to mabd, then in
	// PATH.
	Binary string `toml:"binary"`
	// KeepStorage is how much build cache to keep, like "10GB" (see
	// ParseSize); "" means sized to the disk.
	KeepStorage string `toml:"keep_storage"`
	// TCPAddress is host:port (or tcp://host:port) for a mutual-TLS TCP
	// listener; "" means none. It needs TLSCert, TLSKey and TLSCA.
	TCPAddress string `toml:"tcp_address"`
	// TLSCert and TLSKey are the server's certificate and key (PEM).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TLSCA is the CA (PEM) that client certificates must chain to.
	TLSCA string `toml:"tls_ca"`
	// StopTimeout is how long buildkitd has to exit after SIGTERM before
	// it is killed.
	StopTimeout Duration `toml:"stop_timeout"`
	// Emulation is "private" (buildkitd runs in a user and mount
	// namespace of its own whose binfmt_misc instance holds the
	// handlers of Architectures, verified there) or "host" (it uses the
	// host's table: its worker has the host's verified platforms).
	Emulation string `toml:"emulation"`
	// Architectures are the foreign architectures of the private
	// instance: "all" (every one with an installed emulator and an OCI
	// platform) or names as `mabd install` takes them; [] means none.
	Architectures Architectures `toml:"architectures"`
}

// KeepStorageBytes returns KeepStorage in bytes: 0 for "" (sized to the
// disk) or a size that does not parse (Validate rejects it).
func (b BuildKitConfig) KeepStorageBytes() int64 {
	n, err := ParseSize(b.KeepStorage)
	if err != nil {
		return 0
	}
	return n
}

// DefaultConfig returns the configuration the daemon runs on when the
// file is absent, and the values of the keys a file leaves out. For an
// ordinary user (rootless mode) nothing goes into the host's table and the
// files are the user's (see rootlessDefaults).
func DefaultConfig() Config {
	c := systemDefaults()
	if api.Rootless() {
		rootlessDefaults(&c)
	}
	return c
}

// systemDefaults are the defaults of the system daemon, run by root.
func systemDefaults() Config {
	return Config{
		Architectures:     Architectures{"all"},
		Flags:             "",
		Conflict:          string(host.PolicyRepair),
		EmulatorDirs:      append([]string(nil), emulator.DefaultDirs...),
		Emulator:          host.ChoiceAuto,
		Persist:           false,
		PersistDir:        binfmt.DefaultPersistDir,
		ReconcileInterval: Duration{2 * time.Second},
		UnregisterOnStop:  false,
		BinfmtMount:       binfmt.DefaultDir,
		StateDir:          host.DefaultStateDir,
		Verify: VerifyConfig{
			Interval: Duration{time.Hour},
			Timeout:  Duration{10 * time.Second},
		},
		Control: ControlConfig{
			Socket: api.DefaultSocket,
			Mode:   0o660,
		},
		Log: LogConfig{Level: "info", Format: "auto"},
		// BuildKit's defaults are the builder's (its Options'); "" for
		// keep_storage is its 0, sized to the disk.
		BuildKit: BuildKitConfig{
			Enabled:       true,
			Socket:        builder.DefaultSocket,
			Root:          builder.DefaultRoot,
			StopTimeout:   Duration{builder.DefaultStopTimeout},
			Emulation:     builder.EmulationPrivate,
			Architectures: Architectures{"all"},
		},
		Fleet: FleetConfig{
			CheckInterval: Duration{DefaultFleetCheckInterval},
			CheckTimeout:  Duration{DefaultFleetCheckTimeout},
		},
	}
}

// Duration is a time.Duration written in TOML as a string that
// time.ParseDuration reads: "2s", "500ms", "1h30m". The integer 0 is
// accepted too.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration such as "2s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as time.Duration.String does ("1h0m0s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like \"2s\")", s)
	}
	return v, nil
}

// FileMode is a file's permission bits, written in TOML as an octal string
// ("0660") or an octal integer (0o660).
type FileMode uint32

// UnmarshalText parses an octal mode such as "0660".
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := parseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalText writes the mode as four octal digits.
func (m FileMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// String returns the mode as four octal digits, like "0660".
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

func parseMode(s string) (FileMode, error) {
	digits := strings.TrimPrefix(s, "0o")
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || digits == "" || digits[0] == '+' || v > 0o777 {
		return 0, fmt.Errorf("%q is not a file mode: give permission bits in octal, like \"0660\"", s)
	}
	return FileMode(v), nil
}

// Architectures is the architectures key: "all" or a list of names. In
// TOML it is a string (one name or "all") or a list of strings.
type Architectures []string

// UnmarshalText reads the string form: one name, usually "all".
func (a *Architectures) UnmarshalText(b []byte) error {
	*a = Architectures{string(b)}
	return nil
}

// ParseSize reads a size such as "10GB", "512MiB", "1.5 TB" or "1048576":
// a number and an optional unit, B, K, M, G, T or P with an optional i and
// B, case-insensitive. Like Docker and BuildKit, units are powers of 1024
// (1KB = 1KiB = 1024 bytes).
func ParseSize(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size (like \"10GB\" or \"512MiB\")", s)
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, bad
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, bad
	}
	shift := -1
	if unit == "" || unit == "b" {
		shift = 0
	}
	for n, p := range []string{"k", "m", "g", "t", "p"} {
		if unit == p || unit == p+"b" || unit == p+"i" || unit == p+"ib" {
			shift = 10 * (n + 1)
		}
	}
	if shift < 0 {
		return 0, bad
	}
	v := f * float64(uint64(1)<<shift)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// ConfigError is a bad configuration: the file and line (0 when unknown)
// of the key, the key (dotted for tables: "verify.interval") and what is
// wrong. LoadConfig's and Validate's errors are ConfigErrors, or several
// joined with errors.Join; find the first with errors.As.
type ConfigError = tomlcheck.Error

// LoadConfig reads the configuration file at path ("" means
// api.ConfigPath()) over DefaultConfig and validates it. A missing file
// gives the defaults, unless explicit (the user named the file, with
// --config): then it is an error. Unknown keys, values of the wrong type,
// bad values and TOML syntax errors are ConfigErrors naming the file, line
// and key.
func LoadConfig(path string, explicit bool) (Config, error) {
	if path == "" {
		path = api.ConfigPath()
	}
	data, err := readConfig(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return DefaultConfig(), nil
		}
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return parseConfig(path, data)
}

// readConfig reads the configuration file: a regular file (not a FIFO
// that would block, nor a device) of at most maxConfigSize bytes.
func readConfig(path string) ([]byte, error) {
	b, err := safefile.Read(path, maxConfigSize, safefile.Options{})
	var tooLarge *safefile.TooLargeError
	if errors.As(err, &tooLarge) {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a configuration file", path, maxConfigSize)
	}
	return b, err
}

// configSchema checks the file's keys and the types of its values. The
// leaf types are those whose TOML form is not their Go one.
var configSchema = tomlcheck.New[Config](tomlcheck.Options{
	Leaves: []tomlcheck.Leaf{
		{Type: reflect.TypeFor[Duration](), What: `a duration string like "2s"`, Check: func(v tomlcheck.Value) error {
			if v.Kind == tomlcheck.Integer && v.Text == "0" {
				return nil
			}
			if v.Kind != tomlcheck.String {
				return v.WrongKind()
			}
			_, err := parseDuration(v.Text)
			return err
		}},
		{Type: reflect.TypeFor[FileMode](), What: `an octal mode string like "0660"`, Check: func(v tomlcheck.Value) error {
			if v.Kind == tomlcheck.Integer && strings.HasPrefix(v.Text, "0o") {
				return nil
			}
			if v.Kind != tomlcheck.String {
				return v.WrongKind()
			}
			_, err := parseMode(v.Text)
			return err
		}},
		{Type: reflect.TypeFor[Architectures](), What: `"all" or a list of architectures like ["arm64", "riscv64"]`, Check: func(v tomlcheck.Value) error {
			if v.Kind == tomlcheck.String {
				return nil
			}
			return v.ListOf(tomlcheck.String)
		}},
	},
	What: map[string]string{"verify.rootfs": `a table of ARCH = "DIR"`, "emulators": `a table of ARCH = "PATH"`, "fleet.nodes": "[fleet.nodes.NAME] tables"},
})

// parseConfig decodes and validates data, the content of the file path.
func parseConfig(path string, data []byte) (Config, error) {
	cfg := DefaultConfig()
	lines, errs := configSchema.Decode(path, data, &cfg)
	if len(errs) == 0 {
		errs = cfg.validate()
		for _, e := range errs {
			e.File, e.Line = path, lines[e.Key]
		}
	}
	if len(errs) > 0 {
		return Config{}, tomlcheck.Join(errs)
	}
	return cfg, nil
}

// Validate checks the values: architectures, flags, paths (absolute),
// durations, enumerations, addresses, groups (they must exist) and the
// TLS files a TCP listener needs. Its errors are ConfigErrors without file
// and line (LoadConfig adds them), joined when there are several.
func (c Config) Validate() error {
	return tomlcheck.Join(c.validate())
}

func (c Config) validate() []*ConfigError {
	var errs []*ConfigError
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	abs := func(key, p string, optional bool) {
		switch {
		case p == "" && optional:
		case p == "":
			bad(key, "must not be empty: give an absolute path")
		case !filepath.IsAbs(p):
			bad(key, "%q must be an absolute path", p)
		}
	}
	group := func(key, g string) {
		if g == "" {
			return
		}
		if _, err := strconv.ParseUint(g, 10, 32); err == nil {
			return // a numeric group ID needs no entry
		}
		if _, err := user.LookupGroup(g); err != nil {
			bad(key, "group %q does not exist", g)
		}
	}
	address := func(key, a string) {
		if a == "" {
			return
		}
		host, port, err := net.SplitHostPort(strings.TrimPrefix(a, "tcp://"))
		if err != nil {
			bad(key, "%q is not host:port, like \"127.0.0.1:9090\"", a)
			return
		}
		if host == "" {
			bad(key, "%q names no host: give a loopback or explicit address, like \"127.0.0.1:%s\" (\"0.0.0.0:%s\" for every interface)", a, port, port)
			return
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			bad(key, "%q: the port must be a number from 1 to 65535", a)
		}
	}
	socketPath := func(key, p string) {
		if len(p) > maxSocketPath {
			bad(key, "%q is %d bytes long: a unix socket's path holds at most %d", p, len(p), maxSocketPath)
		}
	}
	atLeast := func(key string, d Duration, lo time.Duration) {
		if d.Duration < lo {
			bad(key, "%s is too short: the minimum is %s", d, lo)
		}
	}

	architectures := func(key string, as Architectures) {
		switch {
		case len(as) > 1 && slices.Contains(as, "all"):
			bad(key, `"all" stands alone: it already includes every architecture whose emulator is installed`)
		case len(as) == 1 && as[0] == "all":
		default:
			for _, a := range as {
				if _, err := binfmt.Lookup(a); err != nil {
					bad(key, "%v", err)
				}
			}
		}
	}
	architectures("architectures", c.Architectures)
	architectures("buildkit.architectures", c.BuildKit.Architectures)
	switch c.BuildKit.Emulation {
	case builder.EmulationPrivate, builder.EmulationHost:
	default:
		bad("buildkit.emulation", `%q must be "private" or "host"`, c.BuildKit.Emulation)
	}
	if c.Flags != "" {
		if _, err := binfmt.ParseFlags(c.Flags); err != nil {
			bad("flags", "%v", err)
		}
	}
	switch host.Policy(c.Conflict) {
	case host.PolicyKeep, host.PolicyRepair, host.PolicyReplace:
	default:
		bad("conflict", `%q must be "repair", "keep" or "replace"`, c.Conflict)
	}
	if len(c.EmulatorDirs) == 0 {
		bad("emulator_dirs", "name at least one directory (the default is %q)", emulator.DefaultDirs)
	}
	for _, d := range c.EmulatorDirs {
		abs("emulator_dirs", d, false)
	}
	switch c.Emulator {
	case host.ChoiceAuto, host.ChoiceFirst:
	default:
		bad("emulator", `%q must be "auto" or "first"`, c.Emulator)
	}
	pinned := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Emulators)) {
		key, path := "emulators."+name, c.Emulators[name]
		a, err := binfmt.Lookup(name)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		abs(key, path, false)
		if prev, ok := pinned[a.Name]; ok && prev != path {
			bad(key, "%s is pinned twice: %s and %s", a.Name, prev, path)
		}
		pinned[a.Name] = path
	}
	abs("persist_dir", c.PersistDir, false)
	atLeast("reconcile_interval", c.ReconcileInterval, MinReconcileInterval)
	abs("binfmt_mount", c.BinfmtMount, false)
	if filepath.IsAbs(c.BinfmtMount) {
		if err := binfmt.CheckMountPoint(c.BinfmtMount); err != nil {
			bad("binfmt_mount", "%v", err)
		}
	}
	abs("state_dir", c.StateDir, false)

	for name, dir := range c.Verify.Rootfs {
		key := "verify.rootfs." + name
		if _, err := binfmt.Lookup(name); err != nil {
			bad(key, "%v", err)
		}
		abs(key, dir, false)
	}
	if c.Verify.Interval.Duration != 0 {
		if c.Verify.Interval.Duration < 0 {
			bad("verify.interval", "%s is negative: give 0 to verify only at start and after repairs", c.Verify.Interval)
		} else {
			atLeast("verify.interval", c.Verify.Interval, MinVerifyInterval)
		}
	}
	if c.Verify.Timeout.Duration <= 0 {
		bad("verify.timeout", "must be more than 0")
	}

	if api.Rootless() && c.Control.Socket == "" && c.BuildKit.Socket == "" {
		bad("control.socket", "%s", noRuntimeDir)
		c.Control.Socket, c.BuildKit.Socket = "/-", "/-" // said once
	}
	abs("control.socket", c.Control.Socket, false)
	socketPath("control.socket", c.Control.Socket)
	if c.Control.Mode&^0o777 != 0 {
		bad("control.mode", "%s has bits beyond the permissions (0777)", c.Control.Mode)
	}
	group("control.group", c.Control.Group)

	address("metrics.address", c.Metrics.Address)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", `%q must be "debug", "info", "warn" or "error"`, c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "console", "json", "journal":
	default:
		bad("log.format", `%q must be "auto", "console", "json" or "journal"`, c.Log.Format)
	}

	b := c.BuildKit
	abs("buildkit.socket", b.Socket, false)
	socketPath("buildkit.socket", b.Socket)
	if b.Enabled && b.Socket != "" && b.Socket == c.Control.Socket {
		bad("buildkit.socket", "%q is the control socket too: give BuildKit its own", b.Socket)
	}
	group("buildkit.socket_group", b.SocketGroup)
	abs("buildkit.root", b.Root, false)
	abs("buildkit.binary", b.Binary, true)
	if b.KeepStorage != "" {
		if n, err := ParseSize(b.KeepStorage); err != nil {
			bad("buildkit.keep_storage", "%v", err)
		} else if n <= 0 {
			bad("buildkit.keep_storage", "%q: give more than 0, or \"\" to size the cache to the disk", b.KeepStorage)
		}
	}
	address("buildkit.tcp_address", b.TCPAddress)
	if b.TCPAddress != "" {
		var missing []string
		for _, f := range []struct{ name, v string }{{"tls_cert", b.TLSCert}, {"tls_key", b.TLSKey}, {"tls_ca", b.TLSCA}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			bad("buildkit.tcp_address", "needs tls_cert, tls_key and tls_ca (BuildKit is served over TCP with mutual TLS only, never plain); missing %s", strings.Join(missing, ", "))
		}
	}
	abs("buildkit.tls_cert", b.TLSCert, true)
	abs("buildkit.tls_key", b.TLSKey, true)
	abs("buildkit.tls_ca", b.TLSCA, true)
	if b.StopTimeout.Duration <= 0 {
		bad("buildkit.stop_timeout", "must be more than 0")
	}
	return append(errs, c.Fleet.validate()...)
}

// Warnings are what Validate accepts but a careful administrator would
// want to hear about: permissions that let anyone drive the daemon.
func (c Config) Warnings() []string {
	var out []string
	if c.Control.Mode&0o002 != 0 {
		out = append(out, fmt.Sprintf("control.mode %s lets every user on the host use the control API (POST /v1/reconcile and /v1/verify make the daemon work as root); use \"0660\" with a [control] group", c.Control.Mode))
	}
	if c.Control.Mode&0o222 == 0 && c.Control.Mode != 0 {
		out = append(out, fmt.Sprintf("control.mode %s lets nobody write to the socket: clients (mabd status) cannot connect", c.Control.Mode))
	}
	if c.Flags != "" {
		if f, err := binfmt.ParseFlags(c.Flags); err == nil && f.Has(binfmt.Credentials) {
			out = append(out, "flags: C makes setuid programs run the emulator with their privileges (as root for setuid-root programs)")
		}
	}
	return out
}
