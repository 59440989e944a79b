package api

import (
	"fmt"
	"os"
	"path/filepath"

	"mabd/builder/wire"
)

// DefaultSocket is the control API's default unix socket.
const DefaultSocket = "/run/mabd/mabd.sock"

// DefaultConfigPath is the system daemon's configuration file. When it
// does not exist (and no --config names another) the daemon runs on the
// defaults of its configuration.
const DefaultConfigPath = "/etc/mabd/mabd.toml"

// Rootless reports whether this process is an ordinary user's: its
// daemon runs in rootless mode, its clients look for the user's own
// daemon first.
func Rootless() bool { return os.Geteuid() != 0 }

// Dirs are an ordinary user's XDG base directories for mabd.
type Dirs struct {
	Config, State, Runtime string
}

// UserDirs returns the user's mabd directories: $XDG_CONFIG_HOME/mabd
// (~/.config/mabd), $XDG_STATE_HOME/mabd (~/.local/state/mabd) and
// $XDG_RUNTIME_DIR/mabd (no default: pam_systemd sets it; /run/user/UID
// when it exists). A runtime directory it cannot find is "".
func UserDirs() Dirs {
	home, _ := os.UserHomeDir()
	dir := func(env, fallback string) string {
		if v := os.Getenv(env); filepath.IsAbs(v) {
			return v
		}
		if home == "" {
			return ""
		}
		return filepath.Join(home, fallback)
	}
	d := Dirs{Config: dir("XDG_CONFIG_HOME", ".config"), State: dir("XDG_STATE_HOME", ".local/state")}
	if v := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(v) {
		d.Runtime = v
	} else if p := fmt.Sprintf("/run/user/%d", os.Geteuid()); isDir(p) {
		d.Runtime = p
	}
	for _, p := range []*string{&d.Config, &d.State, &d.Runtime} {
		if *p != "" {
			*p = filepath.Join(*p, "mabd")
		}
	}
	return d
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ConfigPath is the configuration file the daemon reads by default:
// DefaultConfigPath for root, $XDG_CONFIG_HOME/mabd/mabd.toml for an
// ordinary user.
func ConfigPath() string {
	if !Rootless() {
		return DefaultConfigPath
	}
	if d := UserDirs(); d.Config != "" {
		return filepath.Join(d.Config, "mabd.toml")
	}
	return DefaultConfigPath
}

// Socket is the control socket clients use by default: an ordinary user's
// own daemon's ($XDG_RUNTIME_DIR/mabd/mabd.sock) when it is there, else
// the system daemon's, DefaultSocket.
func Socket() string {
	if Rootless() {
		if d := UserDirs(); d.Runtime != "" {
			if p := filepath.Join(d.Runtime, "mabd.sock"); exists(p) {
				return p
			}
		}
	}
	return DefaultSocket
}

// BuildKitAddress is the BuildKit address clients use by default: an
// ordinary user's own daemon's when it is there, else the system
// daemon's, wire.DefaultAddress.
func BuildKitAddress() string {
	if Rootless() {
		if d := UserDirs(); d.Runtime != "" {
			if p := filepath.Join(d.Runtime, "buildkitd.sock"); exists(p) {
				return "unix://" + p
			}
		}
	}
	return wire.DefaultAddress
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
