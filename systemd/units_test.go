package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unitDir holds the unit files, relative to this package.
const unitDir = "../packaging/systemd"

// installedBinary is mabd's path in ExecStart=.
const installedBinary = "/usr/local/bin/mabd"

// TestUnitFilesVerify runs `systemd-analyze verify` on the unit files.
// verify insists that ExecStart's binary exists, so it checks copies whose
// ExecStart runs a stub in a temporary directory; nothing is installed. It
// fails on any output, not only on a non-zero exit: verify warns about
// unknown or malformed settings (and ignores them) yet exits 0.
func TestUnitFilesVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed (apt-get install systemd): %v", err)
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "mabd")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, name := range []string{"mabd.service", "mabd.socket", "user/mabd.service"} {
		b, err := os.ReadFile(filepath.Join(unitDir, name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.HasSuffix(name, "mabd.service") {
			if !strings.Contains(text, "\nExecStart="+installedBinary+" daemon\n") {
				t.Fatalf("%s: no ExecStart=%s daemon", name, installedBinary)
			}
			text = strings.ReplaceAll(text, "ExecStart="+installedBinary, "ExecStart="+stub)
		}
		p := filepath.Join(dir, name) // same names: mabd.socket's Service= finds the copy
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// --man=no: whether man pages named in Documentation= are installed is
	// the host's business, not the unit's. The user unit is verified as
	// the service manager of a user runs it.
	for _, files := range [][]string{{"--system", paths[0], paths[1]}, {"--user", paths[2]}} {
		cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...)
		// A user's manager needs its runtime directory.
		cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0", "XDG_RUNTIME_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("systemd-analyze verify %s: %v\n%s", strings.Join(files, " "), err, out)
		}
	}
}

// unitSettings parses a unit file into section → key → values, skipping
// comments.
func unitSettings(t *testing.T, name string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(unitDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", name, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitFilesSettings pins the settings mabd depends on, and keeps out
// the hardening settings that would break it (see the comments in
// mabd.service).
func TestUnitFilesSettings(t *testing.T) {
	tests := []struct {
		file, section, key string
		want               []string // nil: must not be set
	}{
		{"mabd.service", "Unit", "After", []string{"systemd-binfmt.service proc-sys-fs-binfmt_misc.mount", "network.target"}},
		{"mabd.service", "Unit", "Wants", []string{"systemd-binfmt.service proc-sys-fs-binfmt_misc.mount"}},
		{"mabd.service", "Service", "Type", []string{"notify"}},
		{"mabd.service", "Service", "NotifyAccess", []string{"main"}},
		{"mabd.service", "Service", "ExecStart", []string{installedBinary + " daemon"}},
		{"mabd.service", "Service", "ExecReload", []string{"/bin/kill -HUP $MAINPID"}},
		{"mabd.service", "Service", "WatchdogSec", []string{"30s"}},
		{"mabd.service", "Service", "Restart", []string{"on-failure"}},
		{"mabd.service", "Service", "RestartSec", []string{"2s"}},
		{"mabd.service", "Service", "KillMode", []string{"mixed"}},
		{"mabd.service", "Service", "Delegate", []string{"yes"}},
		{"mabd.service", "Service", "LimitNOFILE", []string{"1048576"}},
		{"mabd.service", "Service", "StateDirectory", []string{"mabd"}},
		{"mabd.service", "Service", "RuntimeDirectory", []string{"mabd"}},
		{"mabd.service", "Service", "RuntimeDirectoryPreserve", []string{"yes"}},
		{"mabd.service", "Service", "ConfigurationDirectory", []string{"mabd"}},
		{"mabd.service", "Service", "ProtectSystem", []string{"full"}},
		{"mabd.service", "Service", "ReadWritePaths", []string{"-/etc/binfmt.d"}},
		{"mabd.service", "Service", "ProtectHome", []string{"read-only"}},
		{"mabd.service", "Service", "PrivateTmp", []string{"yes"}},
		{"mabd.service", "Service", "NoNewPrivileges", nil},
		{"mabd.service", "Service", "RestrictSUIDSGID", nil},
		{"mabd.service", "Service", "ProtectKernelTunables", nil},
		{"mabd.service", "Service", "ProtectControlGroups", nil},
		{"mabd.service", "Service", "ProtectKernelModules", nil},
		{"mabd.service", "Service", "PrivateDevices", nil},
		{"mabd.service", "Service", "ProtectClock", nil},
		{"mabd.service", "Service", "ProtectHostname", nil},
		{"mabd.service", "Service", "RestrictNamespaces", nil},
		{"mabd.service", "Service", "LockPersonality", nil},
		{"mabd.service", "Service", "SystemCallArchitectures", nil},
		{"mabd.service", "Service", "SystemCallFilter", nil},
		{"mabd.service", "Service", "MemoryDenyWriteExecute", nil},
		{"mabd.service", "Service", "RestrictAddressFamilies", nil},
		{"mabd.service", "Service", "PrivateNetwork", nil},
		{"mabd.service", "Service", "PrivateUsers", nil},
		{"mabd.service", "Service", "DynamicUser", nil},
		{"mabd.service", "Service", "User", nil},
		{"mabd.socket", "Socket", "ListenStream", []string{"/run/mabd/mabd.sock"}},
		{"mabd.socket", "Socket", "SocketMode", []string{"0660"}},
		{"mabd.socket", "Socket", "SocketGroup", []string{"root"}},
		{"mabd.socket", "Socket", "Service", []string{"mabd.service"}},
		{"mabd.socket", "Socket", "Accept", nil},
	}
	units := map[string]map[string]map[string][]string{}
	for _, tt := range tests {
		u, ok := units[tt.file]
		if !ok {
			u = unitSettings(t, tt.file)
			units[tt.file] = u
		}
		got := u[tt.section][tt.key]
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") || len(got) != len(tt.want) {
			t.Errorf("%s [%s] %s = %q, want %q", tt.file, tt.section, tt.key, got, tt.want)
		}
	}
}
