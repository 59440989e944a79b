package daemon

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

const examplePath = "../packaging/mabd.toml"

// normalized makes nil and empty maps equal for comparisons.
func normalized(c Config) Config {
	if len(c.Verify.Rootfs) == 0 {
		c.Verify.Rootfs = nil
	}
	if len(c.Emulators) == 0 {
		c.Emulators = nil
	}
	return c
}

func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mabd.toml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"architectures", c.Architectures, Architectures{"all"}},
		{"flags", c.Flags, ""},
		{"conflict", c.Conflict, "repair"},
		{"emulator_dirs", c.EmulatorDirs, []string{"/usr/bin", "/usr/local/bin"}},
		{"emulator", c.Emulator, "auto"},
		{"emulators", len(c.Emulators), 0},
		{"persist", c.Persist, false},
		{"persist_dir", c.PersistDir, "/etc/binfmt.d"},
		{"reconcile_interval", c.ReconcileInterval.Duration, 2 * time.Second},
		{"unregister_on_stop", c.UnregisterOnStop, false},
		{"binfmt_mount", c.BinfmtMount, "/proc/sys/fs/binfmt_misc"},
		{"state_dir", c.StateDir, "/var/lib/mabd"},
		{"verify.rootfs", len(c.Verify.Rootfs), 0},
		{"verify.interval", c.Verify.Interval.Duration, time.Hour},
		{"verify.timeout", c.Verify.Timeout.Duration, 10 * time.Second},
		{"control.socket", c.Control.Socket, "/run/mabd/mabd.sock"},
		{"control.mode", c.Control.Mode, FileMode(0o660)},
		{"control.group", c.Control.Group, ""},
		{"metrics.address", c.Metrics.Address, ""},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "auto"},
		{"buildkit.enabled", c.BuildKit.Enabled, true},
		{"buildkit.socket", c.BuildKit.Socket, "/run/mabd/buildkitd.sock"},
		{"buildkit.socket_group", c.BuildKit.SocketGroup, ""},
		{"buildkit.root", c.BuildKit.Root, "/var/lib/mabd/buildkit"},
		{"buildkit.binary", c.BuildKit.Binary, ""},
		{"buildkit.keep_storage", c.BuildKit.KeepStorage, ""},
		{"buildkit.tcp_address", c.BuildKit.TCPAddress, ""},
		{"buildkit.tls_cert", c.BuildKit.TLSCert, ""},
		{"buildkit.tls_key", c.BuildKit.TLSKey, ""},
		{"buildkit.tls_ca", c.BuildKit.TLSCA, ""},
		{"buildkit.stop_timeout", c.BuildKit.StopTimeout.Duration, 10 * time.Second},
		{"fleet.check_interval", c.Fleet.CheckInterval.Duration, 15 * time.Second},
		{"fleet.check_timeout", c.Fleet.CheckTimeout.Duration, 5 * time.Second},
		{"fleet.nodes", len(c.Fleet.Nodes), 0},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	// DefaultConfig hands out fresh slices.
	c.EmulatorDirs[0] = "/changed"
	if DefaultConfig().EmulatorDirs[0] != "/usr/bin" {
		t.Error("DefaultConfig shares its emulator_dirs")
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	c, err := LoadConfig(missing, false)
	if err != nil {
		t.Fatalf("missing file, not explicit: %v", err)
	}
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Errorf("missing file gives %+v, want the defaults", c)
	}
	_, err = LoadConfig(missing, true)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file, explicit: err = %v, want one naming %s and wrapping fs.ErrNotExist", err, missing)
	}
	// A directory is no configuration, explicit or not.
	if _, err := LoadConfig(t.TempDir(), false); err == nil {
		t.Error("a directory as configuration: no error")
	}
	for _, doc := range []string{"", "\n# nothing but comments\n", "[verify]\n[control]\n"} {
		c, err := LoadConfig(writeConfig(t, doc), true)
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if !reflect.DeepEqual(normalized(c), DefaultConfig()) {
			t.Errorf("%q gives %+v, want the defaults", doc, c)
		}
	}
}

// settingLine matches the example's commented-out settings and tables.
var settingLine = regexp.MustCompile(`^# ?((?:[a-z0-9_]+|"[^"]+") = .*|\[[a-z_.]+\])$`)

func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig(examplePath, true)
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if !reflect.DeepEqual(normalized(c), DefaultConfig()) {
		t.Errorf("the example gives\n%+v\nwant the defaults\n%+v", c, DefaultConfig())
	}

	// Uncommented, every setting the example shows is its default (and
	// the rootfs example is taken as shown).
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	shown := map[string]bool{}
	table := ""
	for _, l := range strings.Split(string(data), "\n") {
		if m := settingLine.FindStringSubmatch(l); m != nil {
			l = m[1]
		}
		if strings.HasPrefix(l, "[") {
			table = strings.Trim(l, "[]") + "."
			shown[strings.TrimSuffix(table, ".")] = true
		} else if h, ok := strings.CutPrefix(l, "# ["); ok {
			// A commented example table, [fleet.nodes.NAME]: it shows
			// its parent.
			parts := strings.Split(strings.TrimSuffix(h, "]"), ".")
			shown[strings.Join(parts[:len(parts)-1], ".")] = true
		} else if k, _, ok := strings.Cut(l, " = "); ok && !strings.HasPrefix(l, "#") {
			shown[table+k] = true
		}
		out = append(out, l)
	}
	uncommented := strings.Join(out, "\n")
	c, err = parseConfig("uncommented", []byte(uncommented))
	if err != nil {
		t.Fatalf("the example uncommented does not load: %v\n%s", err, uncommented)
	}
	want := DefaultConfig()
	want.Verify.Rootfs = map[string]string{"arm64": "/srv/rootfs/arm64", "linux/arm/v7": "/srv/rootfs/armhf"}
	want.Emulators = map[string]string{"aarch64": "/opt/qemu-10/usr/bin/qemu-aarch64"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("the example uncommented gives\n%+v\nwant\n%+v", c, want)
	}
	// It documents every key.
	for _, k := range configSchema.Keys() {
		if !shown[k] {
			t.Errorf("the example does not show %s", k)
		}
	}
}

func TestConfigKeys(t *testing.T) {
	emptyDir := t.TempDir() // binfmt_misc may be mounted on an empty directory
	tests := []struct {
		key string
		doc string
		set func(c *Config)
	}{
		{"architectures", `architectures = ["arm64", "linux/riscv64", "armhf"]`, func(c *Config) { c.Architectures = Architectures{"arm64", "linux/riscv64", "armhf"} }},
		{"architectures", `architectures = "all"`, func(c *Config) {}},
		{"architectures", `architectures = "s390x"`, func(c *Config) { c.Architectures = Architectures{"s390x"} }},
		{"flags", `flags = "OCF"`, func(c *Config) { c.Flags = "OCF" }},
		{"conflict", `conflict = "replace"`, func(c *Config) { c.Conflict = "replace" }},
		{"emulator_dirs", `emulator_dirs = ["/opt/qemu/bin"]`, func(c *Config) { c.EmulatorDirs = []string{"/opt/qemu/bin"} }},
		{"emulator", `emulator = "first"`, func(c *Config) { c.Emulator = "first" }},
		{"emulators", "[emulators]\narm64 = \"/opt/q/qemu-aarch64\"\n\"linux/riscv64\" = \"/opt/q/qemu-riscv64\"", func(c *Config) {
			c.Emulators = map[string]string{"arm64": "/opt/q/qemu-aarch64", "linux/riscv64": "/opt/q/qemu-riscv64"}
		}},
		{"persist", `persist = true`, func(c *Config) { c.Persist = true }},
		{"persist_dir", `persist_dir = "/run/binfmt.d"`, func(c *Config) { c.PersistDir = "/run/binfmt.d" }},
		{"reconcile_interval", `reconcile_interval = "250ms"`, func(c *Config) { c.ReconcileInterval.Duration = 250 * time.Millisecond }},
		{"unregister_on_stop", `unregister_on_stop = true`, func(c *Config) { c.UnregisterOnStop = true }},
		{"binfmt_mount", `binfmt_mount = "` + emptyDir + `"`, func(c *Config) { c.BinfmtMount = emptyDir }},
		{"conflict", `conflict = "keep"`, func(c *Config) { c.Conflict = "keep" }},
		{"state_dir", `state_dir = "/srv/mabd"`, func(c *Config) { c.StateDir = "/srv/mabd" }},
		{"verify", "[verify]", func(c *Config) {}},
		{"verify.rootfs", "[verify.rootfs]\narm64 = \"/srv/a\"\n\"linux/arm/v7\" = \"/srv/b\"", func(c *Config) {
			c.Verify.Rootfs = map[string]string{"arm64": "/srv/a", "linux/arm/v7": "/srv/b"}
		}},
		{"verify.rootfs", `verify.rootfs = { s390x = "/srv/s" }`, func(c *Config) { c.Verify.Rootfs = map[string]string{"s390x": "/srv/s"} }},
		{"verify.interval", "[verify]\ninterval = \"30m\"", func(c *Config) { c.Verify.Interval.Duration = 30 * time.Minute }},
		{"verify.interval", "[verify]\ninterval = \"0\"", func(c *Config) { c.Verify.Interval.Duration = 0 }},
		{"verify.interval", "[verify]\ninterval = 0", func(c *Config) { c.Verify.Interval.Duration = 0 }},
		{"verify.interval", `verify = { interval = "2h" }`, func(c *Config) { c.Verify.Interval.Duration = 2 * time.Hour }},
		{"verify.timeout", "[verify]\ntimeout = \"1m\"", func(c *Config) { c.Verify.Timeout.Duration = time.Minute }},
		{"control", "[control]", func(c *Config) {}},
		{"control.socket", "[control]\nsocket = \"/run/x.sock\"", func(c *Config) { c.Control.Socket = "/run/x.sock" }},
		{"control.mode", "[control]\nmode = \"0600\"", func(c *Config) { c.Control.Mode = 0o600 }},
		{"control.mode", "[control]\nmode = \"640\"", func(c *Config) { c.Control.Mode = 0o640 }},
		{"control.mode", "[control]\nmode = 0o640", func(c *Config) { c.Control.Mode = 0o640 }},
		{"control.group", "[control]\ngroup = \"root\"", func(c *Config) { c.Control.Group = "root" }},
		{"control.group", "[control]\ngroup = \"4242\"", func(c *Config) { c.Control.Group = "4242" }},
		{"metrics", "[metrics]", func(c *Config) {}},
		{"metrics.address", "[metrics]\naddress = \"127.0.0.1:9090\"", func(c *Config) { c.Metrics.Address = "127.0.0.1:9090" }},
		{"metrics.address", "[metrics]\naddress = \"[::1]:9090\"", func(c *Config) { c.Metrics.Address = "[::1]:9090" }},
		{"log", "[log]", func(c *Config) {}},
		{"log.level", "[log]\nlevel = \"debug\"", func(c *Config) { c.Log.Level = "debug" }},
		{"log.format", "[log]\nformat = \"json\"", func(c *Config) { c.Log.Format = "json" }},
		{"buildkit", "[buildkit]", func(c *Config) {}},
		{"fleet", "[fleet]", func(c *Config) {}},
		{"buildkit.enabled", "[buildkit]\nenabled = false", func(c *Config) { c.BuildKit.Enabled = false }},
		{"buildkit.socket", "[buildkit]\nsocket = \"/run/bk.sock\"", func(c *Config) { c.BuildKit.Socket = "/run/bk.sock" }},
		{"buildkit.socket_group", "[buildkit]\nsocket_group = \"root\"", func(c *Config) { c.BuildKit.SocketGroup = "root" }},
		{"buildkit.root", "[buildkit]\nroot = \"/srv/buildkit\"", func(c *Config) { c.BuildKit.Root = "/srv/buildkit" }},
		{"buildkit.binary", "[buildkit]\nbinary = \"/opt/bin/buildkitd\"", func(c *Config) { c.BuildKit.Binary = "/opt/bin/buildkitd" }},
		{"buildkit.keep_storage", "[buildkit]\nkeep_storage = \"10GB\"", func(c *Config) { c.BuildKit.KeepStorage = "10GB" }},
		{"buildkit.tcp_address", "[buildkit]\ntcp_address = \"0.0.0.0:1234\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\ntls_ca = \"/ca\"", func(c *Config) {
			c.BuildKit.TCPAddress, c.BuildKit.TLSCert, c.BuildKit.TLSKey, c.BuildKit.TLSCA = "0.0.0.0:1234", "/c", "/k", "/ca"
		}},
		{"buildkit.tcp_address", "[buildkit]\ntcp_address = \"tcp://[::1]:1234\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\ntls_ca = \"/ca\"", func(c *Config) {
			c.BuildKit.TCPAddress, c.BuildKit.TLSCert, c.BuildKit.TLSKey, c.BuildKit.TLSCA = "tcp://[::1]:1234", "/c", "/k", "/ca"
		}},
		{"buildkit.tls_cert", "[buildkit]\ntls_cert = \"/etc/mabd/cert.pem\"", func(c *Config) { c.BuildKit.TLSCert = "/etc/mabd/cert.pem" }},
		{"buildkit.tls_key", "[buildkit]\ntls_key = \"/etc/mabd/key.pem\"", func(c *Config) { c.BuildKit.TLSKey = "/etc/mabd/key.pem" }},
		{"buildkit.tls_ca", "[buildkit]\ntls_ca = \"/etc/mabd/ca.pem\"", func(c *Config) { c.BuildKit.TLSCA = "/etc/mabd/ca.pem" }},
		{"buildkit.stop_timeout", "[buildkit]\nstop_timeout = \"1m30s\"", func(c *Config) { c.BuildKit.StopTimeout.Duration = 90 * time.Second }},
		{"buildkit.emulation", "[buildkit]\nemulation = \"host\"", func(c *Config) { c.BuildKit.Emulation = "host" }},
		{"buildkit.architectures", "[buildkit]\narchitectures = [\"arm64\", \"riscv64\"]", func(c *Config) { c.BuildKit.Architectures = Architectures{"arm64", "riscv64"} }},
		{"architectures", "architectures = []", func(c *Config) { c.Architectures = Architectures{} }},
		{"fleet.check_interval", "[fleet]\ncheck_interval = \"1m\"", func(c *Config) { c.Fleet.CheckInterval.Duration = time.Minute }},
		{"fleet.check_timeout", "[fleet]\ncheck_timeout = \"2s\"", func(c *Config) { c.Fleet.CheckTimeout.Duration = 2 * time.Second }},
		{"fleet.nodes", "[fleet.nodes.arm1]\naddress = \"unix:///run/arm1.sock\"\nnative = [\"linux/arm64\"]\n[fleet.nodes.\"riscv.lab\"]\naddress = \"unix:///run/rv.sock\"", func(c *Config) {
			c.Fleet.Nodes = map[string]FleetNode{
				"arm1":      {Address: "unix:///run/arm1.sock", Native: []string{"linux/arm64"}},
				"riscv.lab": {Address: "unix:///run/rv.sock"},
			}
		}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.key] = true
		t.Run(tt.key, func(t *testing.T) {
			got, err := LoadConfig(writeConfig(t, tt.doc+"\n"), true)
			if err != nil {
				t.Fatalf("%s: %v", tt.doc, err)
			}
			want := DefaultConfig()
			tt.set(&want)
			if !reflect.DeepEqual(normalized(got), normalized(want)) {
				t.Errorf("%s:\ngot  %+v\nwant %+v", tt.doc, got, want)
			}
		})
	}
	for _, k := range configSchema.Keys() {
		if !covered[k] {
			t.Errorf("no test sets %s", k)
		}
	}
}

// TestConfigMarshal writes a configuration with go-toml and reads it back.
func TestConfigMarshal(t *testing.T) {
	c := DefaultConfig()
	c.Architectures = Architectures{"arm64", "riscv64"}
	c.Flags = "F"
	c.Conflict = "replace"
	c.ReconcileInterval.Duration = 1500 * time.Millisecond
	c.Verify.Rootfs = map[string]string{"arm64": "/srv/arm64"}
	c.Verify.Interval.Duration = 0
	c.Control.Mode = 0o600
	c.Metrics.Address = "127.0.0.1:9090"
	c.BuildKit.KeepStorage = "512MiB"
	c.BuildKit.StopTimeout.Duration = time.Minute
	b, err := toml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseConfig("marshaled", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v\n%s", got, c, b)
	}
	if !bytes.Contains(b, []byte(`mode = '0600'`)) || !bytes.Contains(b, []byte(`reconcile_interval = '1.5s'`)) {
		t.Errorf("mode and durations are not written as strings:\n%s", b)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
		key  string
		msg  string // a part of the error's text
	}{
		{"typo", "# mabd\n\narchitecturs = [\"arm64\"]\n", 3, "architecturs",
			`mabd.toml:3: unknown key "architecturs" (did you mean "architectures"?)`},
		{"typo in a table", "[verify]\nintervall = \"1h\"\n", 2, "verify.intervall", `(did you mean "verify.interval"?)`},
		{"dashes", "reconcile-interval = \"1s\"\n", 1, "reconcile-interval", `did you mean "reconcile_interval"?`},
		{"capitals", "[log]\nLevel = \"info\"\n", 2, "log.Level", `did you mean "log.level"?`},
		{"top-level key after a table", "[log]\nlevel = \"info\"\npersist = true\n", 3, "log.persist",
			`did you mean "persist"? top-level keys go before the first [table]`},
		{"key of another table", "timeout = \"5s\"\n", 1, "timeout", `did you mean "verify.timeout"?`},
		{"no near key", "frobnicate = 1\n", 1, "frobnicate", `unknown key "frobnicate"`},
		{"socket at the top", "socket = \"/run/x.sock\"\n", 1, "socket", `did you mean "control.socket" or "buildkit.socket"?`},
		{"table name as key", "[buildkit]\nverify = 1\n", 2, "buildkit.verify", `did you mean [verify]? top-level keys go before the first [table]`},
		{"dotted unknown", "verfy.interval = \"1h\"\n", 1, "verfy", `did you mean [verify]?`},
		{"unknown array table", "[[mirrors]]\n", 1, "mirrors", `unknown table [mirrors]`},
		{"unknown table", "\n[verfy]\ninterval = \"1h\"\n", 2, "verfy", `unknown table [verfy] (did you mean [verify]?)`},
		{"unknown subtable", "[verify.foo]\n", 1, "verify.foo", `unknown table [verify.foo]`},

		{"persist string", "persist = \"yes\"\n", 1, "persist", `key "persist": must be true or false, not a string`},
		{"architectures integer", "\narchitectures = 3\n", 2, "architectures", `must be "all" or a list of architectures`},
		{"architectures of integers", "architectures = [1]\n", 1, "architectures", `not a list holding an integer`},
		{"emulator_dirs string", "emulator_dirs = \"/usr/bin\"\n", 1, "emulator_dirs", `must be a list of strings, not a string`},
		{"emulator_dirs of integers", "emulator_dirs = [\"/usr/bin\", 2]\n", 1, "emulator_dirs", `not a list holding an integer`},
		{"table as value", "verify = 3\n", 1, "verify", `must be a table ([verify]), not an integer`},
		{"value as table", "[persist]\n", 1, "persist", `must be true or false, not a table`},
		{"dotted key through a value", "persist.a = 1\n", 1, "persist", `must be true or false, not a table`},
		{"array of tables", "[[verify]]\ninterval = \"1s\"\n", 1, "verify", `not an array of tables`},
		{"rootfs integer", "[verify.rootfs]\narm64 = 1\n", 2, "verify.rootfs.arm64", `must be a string, not an integer`},
		{"mode integer", "[control]\nmode = 660\n", 2, "control.mode", `must be an octal mode string like "0660", not an integer`},
		{"duration integer", "reconcile_interval = 2\n", 1, "reconcile_interval", `must be a duration string like "2s", not an integer`},
		{"duration boolean", "[buildkit]\nstop_timeout = true\n", 2, "buildkit.stop_timeout", `not a boolean`},

		{"bad duration", "persist = true\n\n\n\nreconcile_interval = \"fast\"\n", 5, "reconcile_interval",
			`mabd.toml:5: key "reconcile_interval": "fast" is not a duration (like "2s")`},
		{"bad duration inline", "verify = { timeout = \"soon\" }\n", 1, "verify.timeout", `"soon" is not a duration`},
		{"short reconcile", "reconcile_interval = \"1ms\"\n", 1, "reconcile_interval", `1ms is too short: the minimum is 100ms`},
		{"negative interval", "[verify]\ninterval = \"-1h\"\n", 2, "verify.interval", `negative`},
		{"short interval", "[verify]\ninterval = \"10ms\"\n", 2, "verify.interval", `too short`},
		{"zero timeout", "[verify]\ntimeout = \"0s\"\n", 2, "verify.timeout", `must be more than 0`},
		{"conflict", "persist = false\n\n\n\n\n\nconflict = \"fight\"\n", 7, "conflict",
			`mabd.toml:7: key "conflict": "fight" must be "repair", "keep" or "replace"`},
		{"flags", "flags = \"FX\"\n", 1, "flags", `unknown flag 'X'`},
		{"unknown architecture", "\narchitectures = [\"arm64\", \"vax\"]\n", 2, "architectures", `unknown architecture "vax"`},
		{"windows", "architectures = [\"windows/arm64\"]\n", 1, "architectures", `linux binaries only`},
		{"all with others", "architectures = [\"all\", \"arm64\"]\n", 1, "architectures", `"all" stands alone`},
		{"all with others", "architectures = [\"all\", \"arm64\"]\n", 1, "architectures", `"all" stands alone`},
		{"builder architectures", "[buildkit]\narchitectures = [\"vax\"]\n", 2, "buildkit.architectures", `unknown architecture "vax"`},
		{"emulation", "[buildkit]\nemulation = \"shared\"\n", 2, "buildkit.emulation", `must be "private" or "host"`},
		{"no emulator dir", "emulator_dirs = []\n", 1, "emulator_dirs", `at least one directory`},
		{"relative emulator dir", "emulator_dirs = [\"bin\"]\n", 1, "emulator_dirs", `"bin" must be an absolute path`},
		{"emulator", "emulator = \"newest\"\n", 1, "emulator", `"newest" must be "auto" or "first"`},
		{"emulator pinned for an unknown architecture", "[emulators]\nvax = \"/opt/q/qemu-vax\"\n", 2, "emulators.vax", `unknown architecture "vax"`},
		{"emulator pinned by a relative path", "[emulators]\narm64 = \"qemu-aarch64\"\n", 2, "emulators.arm64", `"qemu-aarch64" must be an absolute path`},
		{"emulator pinned twice", "[emulators]\narm64 = \"/a/qemu-aarch64\"\naarch64 = \"/b/qemu-aarch64\"\n", 2, "emulators.arm64", `aarch64 is pinned twice: /b/qemu-aarch64 and /a/qemu-aarch64`},
		{"emulator pin not a string", "[emulators]\narm64 = 1\n", 2, "emulators.arm64", `must be a string, not an integer`},
		{"empty state dir", "state_dir = \"\"\n", 1, "state_dir", `must not be empty`},
		{"rootfs arch", "[verify.rootfs]\nvax = \"/srv/vax\"\n", 2, "verify.rootfs.vax", `unknown architecture "vax"`},
		{"rootfs relative", "[verify]\nrootfs = { arm64 = \"srv\" }\n", 2, "verify.rootfs.arm64", `must be an absolute path`},
		{"mode 999", "[control]\n\nmode = \"999\"\n", 3, "control.mode", `"999" is not a file mode`},
		{"mode too big", "[control]\nmode = \"01777\"\n", 2, "control.mode", `is not a file mode`},
		{"mode empty", "[control]\nmode = \"\"\n", 2, "control.mode", `is not a file mode`},
		{"group", "[control]\ngroup = \"no-such-group-mabd\"\n", 2, "control.group", `group "no-such-group-mabd" does not exist`},
		{"socket group", "[buildkit]\nsocket_group = \"no-such-group-mabd\"\n", 2, "buildkit.socket_group", `does not exist`},
		{"metrics without host", "[metrics]\naddress = \":9090\"\n", 2, "metrics.address", `":9090" names no host: give a loopback or explicit address, like "127.0.0.1:9090" ("0.0.0.0:9090" for every interface)`},
		{"metrics not host:port", "[metrics]\naddress = \"localhost\"\n", 2, "metrics.address", `is not host:port`},
		{"metrics port", "[metrics]\naddress = \"127.0.0.1:http\"\n", 2, "metrics.address", `port must be a number`},
		{"log level", "[log]\nlevel = \"loud\"\n", 2, "log.level", `"loud" must be "debug", "info", "warn" or "error"`},
		{"log format", "[log]\nformat = \"xml\"\n", 2, "log.format", `must be "auto", "console", "json" or "journal"`},
		{"tcp without TLS", "[buildkit]\ntcp_address = \"10.0.0.1:1234\"\ntls_cert = \"/c.pem\"\n", 2, "buildkit.tcp_address",
			`mutual TLS only, never plain); missing tls_key, tls_ca`},
		{"tcp without host", "[buildkit]\ntcp_address = \"tcp://:1234\"\n", 2, "buildkit.tcp_address", `like "127.0.0.1:1234"`},
		{"relative binary", "[buildkit]\nbinary = \"buildkitd\"\n", 2, "buildkit.binary", `must be an absolute path`},
		{"keep_storage", "[buildkit]\nkeep_storage = \"lots\"\n", 2, "buildkit.keep_storage", `"lots" is not a size`},
		{"keep_storage zero", "[buildkit]\nkeep_storage = \"0GB\"\n", 2, "buildkit.keep_storage", `give more than 0`},
		{"same socket", "[control]\nsocket = \"/run/s\"\n[buildkit]\nsocket = \"/run/s\"\n", 4, "buildkit.socket", `is the control socket too`},
		{"socket too long", "[control]\nsocket = \"/run/" + strings.Repeat("s", 103) + "\"\n", 2, "control.socket", `is 108 bytes long: a unix socket's path holds at most 107`},
		{"buildkit socket too long", "[buildkit]\nsocket = \"/" + strings.Repeat("b", 120) + "\"\n", 2, "buildkit.socket", `holds at most 107`},
		{"binfmt_mount over files", "binfmt_mount = \"/etc\"\n", 1, "binfmt_mount", `holds files`},
		{"binfmt_mount missing", "binfmt_mount = \"/nonexistent-mabd\"\n", 1, "binfmt_mount", `does not exist`},
		{"fleet check interval", "[fleet]\ncheck_interval = \"10ms\"\n", 2, "fleet.check_interval", `10ms is too short: the minimum is 1s`},
		{"fleet check timeout", "[fleet]\ncheck_timeout = \"0s\"\n", 2, "fleet.check_timeout", `must be more than 0`},
		{"fleet node called local", "[fleet.nodes.local]\naddress = \"unix:///run/x.sock\"\n", 1, "fleet.nodes.local", `"local" is the daemon's own builder`},
		{"fleet node name", "[fleet.nodes.\"arm 1\"]\naddress = \"unix:///run/x.sock\"\n", 1, "fleet.nodes.arm 1", `is not a node name`},
		{"fleet node without address", "[fleet.nodes.arm1]\nnative = [\"linux/arm64\"]\n", 1, "fleet.nodes.arm1", `no address: give address = "tcp://host:port" or "unix:///path"`},
		{"fleet node over plain tcp", "[fleet.nodes.arm1]\naddress = \"tcp://10.0.0.2:1234\"\n", 2, "fleet.nodes.arm1.address", `needs ca, cert and key (mutual TLS`},
		{"fleet node scheme", "[fleet.nodes.arm1]\naddress = \"ssh://arm1\"\n", 2, "fleet.nodes.arm1.address", `want tcp://host:port or unix:///path`},
		{"fleet node relative socket", "[fleet.nodes.arm1]\naddress = \"unix://bk.sock\"\n", 2, "fleet.nodes.arm1.address", `give an absolute path`},
		{"fleet node certificate missing", "[fleet.nodes.arm1]\naddress = \"tcp://10.0.0.2:1234\"\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n", 3, "fleet.nodes.arm1.ca", `/nonexistent/ca.pem: no such file or directory`},
		{"fleet node native", "[fleet.nodes.arm1]\naddress = \"unix:///run/x.sock\"\nnative = [\"linux/arm64\", \"not a platform\"]\n", 3, "fleet.nodes.arm1.native", `"not a platform"`},
		{"fleet nodes as array", "[[fleet.nodes]]\naddress = \"unix:///run/x.sock\"\n", 1, "fleet.nodes", `[fleet.nodes.NAME] tables`},

		{"duplicate key", "persist = true\nconflict = \"keep\"\npersist = false\n", 3, "persist", `defined more than once`},
		{"duplicate table", "[log]\n[verify]\n[log]\n", 3, "log", `defined more than once`},
		{"syntax", "persist = true\nconflict = \n", 2, "", `mabd.toml:2: invalid TOML: `},
		{"unterminated string", "[log]\nlevel = \"info\n", 2, "", `invalid TOML`},
		{"unclosed table", "[verify\n", 1, "", `invalid TOML`},
		// What comes first in the file is reported.
		{"type error before syntax error", "persist = 1\n[log\n", 1, "persist", `must be true or false`},
		{"syntax error before type error", "[log\npersist = 1\n", 1, "", `invalid TOML`},
		{"duplicate before type error", "flags = \"\"\nflags = \"F\"\npersist = 1\n", 2, "flags", `defined more than once`},
		{"unknown key before type error", "persit = true\npersist = 1\n", 1, "persit", `unknown key "persit"`},
		{"type error before unknown key", "persist = 1\npersit = true\n", 1, "persist", `must be true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.doc)
			_, err := LoadConfig(p, false)
			if err == nil {
				t.Fatalf("%q: no error", tt.doc)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("%q: %T %v is no ConfigError", tt.doc, err, err)
			}
			if ce.File != p || ce.Line != tt.line || ce.Key != tt.key {
				t.Errorf("%q: file %q line %d key %q, want %q %d %q (%v)", tt.doc, ce.File, ce.Line, ce.Key, p, tt.line, tt.key, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("%q: %q does not say %q", tt.doc, err, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), p+":") {
				t.Errorf("%q: %q does not start with the file", tt.doc, err)
			}
		})
	}
}

func TestConfigErrorsSeveral(t *testing.T) {
	p := writeConfig(t, "persit = true\n[log]\nlevle = \"info\"\n")
	_, err := LoadConfig(p, true)
	want := p + `:1: unknown key "persit" (did you mean "persist"?)` + "\n" +
		p + `:3: unknown key "log.levle" (did you mean "log.level"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Line != 1 {
		t.Errorf("errors.As finds %+v, want the first", ce)
	}

	p = writeConfig(t, "conflict = \"fight\"\n[log]\nlevel = \"loud\"\n")
	_, err = LoadConfig(p, true)
	want = p + `:1: key "conflict": "fight" must be "repair", "keep" or "replace"` + "\n" +
		p + `:3: key "log.level": "loud" must be "debug", "info", "warn" or "error"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.Control.Socket = "relative.sock"
	c.Control.Mode = 0o4755
	err := c.Validate()
	want := `key "control.socket": "relative.sock" must be an absolute path` + "\n" +
		`key "control.mode": 4755 has bits beyond the permissions (0777)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c = DefaultConfig()
	c.Architectures = Architectures{"vax"}
	var ce *ConfigError
	if err := c.Validate(); !errors.As(err, &ce) || ce.Key != "architectures" || ce.Line != 0 || ce.File != "" {
		t.Errorf("an unknown architecture: %#v", err)
	}
	c = DefaultConfig()
	c.Architectures = nil // the host's table gets no handler: allowed
	if err := c.Validate(); err != nil {
		t.Errorf("no architectures for the host: %v", err)
	}
}

func TestConfigErrorFormat(t *testing.T) {
	tests := []struct {
		e    ConfigError
		want string
	}{
		{ConfigError{File: "/etc/mabd/mabd.toml", Line: 5, Key: "reconcile_interval", Msg: `"fast" is not a duration (like "2s")`},
			`/etc/mabd/mabd.toml:5: key "reconcile_interval": "fast" is not a duration (like "2s")`},
		{ConfigError{File: "/etc/mabd/mabd.toml", Key: "conflict", Msg: "bad"}, `/etc/mabd/mabd.toml: key "conflict": bad`},
		{ConfigError{File: "f", Line: 2, Msg: "invalid TOML: x"}, `f:2: invalid TOML: x`},
		{ConfigError{Line: 2, Key: "k", Msg: "bad"}, `line 2: key "k": bad`},
		{ConfigError{Key: "k", Msg: "bad"}, `key "k": bad`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1048576", 1 << 20},
		{"10GB", 10 << 30},
		{"10gb", 10 << 30},
		{"10G", 10 << 30},
		{"10GiB", 10 << 30},
		{"512MiB", 512 << 20},
		{"1.5 TB", 3 << 39},
		{"2k", 2048},
		{"100B", 100},
		{"1PB", 1 << 50},
		{"0", 0},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if n := (BuildKitConfig{KeepStorage: "2GB"}).KeepStorageBytes(); n != 2<<30 {
		t.Errorf("KeepStorageBytes of 2GB = %d", n)
	}
	if n := (BuildKitConfig{}).KeepStorageBytes(); n != 0 {
		t.Errorf("KeepStorageBytes of \"\" = %d", n)
	}
	for _, in := range []string{"", "GB", "lots", "10XB", "1..5GB", ".5GB", "5.GB", "-1GB", "10 G B", "10i", "10iB", "1e3", "99999999999PB"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
}

func FuzzLoadConfig(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"architectures = [\"arm64\", \"riscv64\"]\nflags = \"FP\"\n[verify]\ninterval = \"0\"\n",
		"architecturs = [\"arm64\"]\n",
		"persist = \"yes\"\narchitectures = 3\n",
		"[verify.rootfs]\narm64 = \"/srv\"\n\"linux/arm/v7\" = \"x\"\n",
		"verify = { interval = \"1h\", rootfs = { vax = 1 } }\n",
		"[control]\nmode = 0o640\ngroup = \"root\"\n[[buildkit]]\n",
		"a.b.c = 1\n[x.y]\nz = [1, {a = 2}]\n",
		"persist = true\npersist = true\n",
		"[buildkit]\ntcp_address = \"1.2.3.4:5\"\nkeep_storage = \"1.5GiB\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig("fuzz.toml", data)
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted, but Validate says %v", err)
			}
			return
		}
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("%T %v is no ConfigError", err, err)
		}
		if ce.File != "fuzz.toml" || ce.Line < 0 || ce.Line > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("bad position in %+v", ce)
		}
	})
}

// TestConfigHostileInput: a huge unknown key gets no did-you-mean search
// (which grows with the square of its length), and a file that is not a
// regular file of sane size is refused without being read to its end.
func TestConfigHostileInput(t *testing.T) {
	if _, err := LoadConfig(writeConfig(t, strings.Repeat("k", 10<<20)+" = 1\n"), true); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a 10 MB file: %.200v", err)
	}
	long := strings.Repeat("k", 512<<10)
	_, err := LoadConfig(writeConfig(t, long+" = 1\n"), true)
	var ce *ConfigError
	if !errors.As(err, &ce) || strings.Contains(err.Error(), "did you mean") || len(err.Error()) > 1000 {
		t.Fatalf("a 512 KB unknown key: %.200v", err)
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# comment\n", 200000)), 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.toml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{big, zero, fifo} {
		if _, err := LoadConfig(p, true); err == nil {
			t.Errorf("%s: accepted", p)
		}
	}
}

// TestConfigWarnings: what Validate accepts but an administrator should
// hear about.
func TestConfigWarnings(t *testing.T) {
	tests := []struct {
		doc, says string
	}{
		{"[control]\nmode = \"0777\"\n", "lets every user on the host use the control API"},
		{"[control]\nmode = \"0444\"\n", "nobody write to the socket"},
		{"flags = \"FC\"\n", "setuid programs"},
		{"", ""},
	}
	for _, tt := range tests {
		c, err := LoadConfig(writeConfig(t, tt.doc), true)
		if err != nil {
			t.Fatalf("%q: %v", tt.doc, err)
		}
		w := strings.Join(c.Warnings(), "\n")
		if (tt.says == "") != (w == "") || !strings.Contains(w, tt.says) {
			t.Errorf("%q: warnings %q; want %q", tt.doc, w, tt.says)
		}
	}
}
