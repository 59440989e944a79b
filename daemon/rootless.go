package daemon

// Rootless mode: `mabd daemon` run by an ordinary user. It never touches
// the host's binfmt_misc table (it is root's); its builder emulates in a
// private table of its own, in a user namespace that maps the user's
// subordinate ids (newuidmap, newgidmap), and its files are the user's:
// configuration under $XDG_CONFIG_HOME/mabd, state under
// $XDG_STATE_HOME/mabd, sockets under $XDG_RUNTIME_DIR/mabd.

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"mabd/builder"
	"mabd/internal/userns"
)

// Rootless reports whether this process runs the daemon in rootless mode:
// it is an ordinary user's.
func Rootless() bool { return os.Geteuid() != 0 }

// userDirs are an ordinary user's XDG base directories for mabd.
type userDirs struct {
	config, state, runtime string
}

// xdgDirs returns the user's mabd directories: $XDG_CONFIG_HOME/mabd
// (~/.config/mabd), $XDG_STATE_HOME/mabd (~/.local/state/mabd) and
// $XDG_RUNTIME_DIR/mabd (no default: pam_systemd sets it; /run/user/UID
// when it exists). A runtime directory it cannot find is "".
func xdgDirs() userDirs {
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
	d := userDirs{config: dir("XDG_CONFIG_HOME", ".config"), state: dir("XDG_STATE_HOME", ".local/state")}
	if v := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(v) {
		d.runtime = v
	} else if p := fmt.Sprintf("/run/user/%d", os.Geteuid()); isDir(p) {
		d.runtime = p
	}
	for _, p := range []*string{&d.config, &d.state, &d.runtime} {
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
	if d := xdgDirs(); d.config != "" {
		return filepath.Join(d.config, "mabd.toml")
	}
	return DefaultConfigPath
}

// Socket is the control socket clients use by default: an ordinary user's
// own daemon's ($XDG_RUNTIME_DIR/mabd/mabd.sock) when it is there, else
// the system daemon's, DefaultSocket.
func Socket() string {
	if Rootless() {
		if d := xdgDirs(); d.runtime != "" {
			if p := filepath.Join(d.runtime, "mabd.sock"); exists(p) {
				return p
			}
		}
	}
	return DefaultSocket
}

// BuildKitAddress is the BuildKit address clients use by default: an
// ordinary user's own daemon's when it is there, else the system
// daemon's, builder.DefaultAddress.
func BuildKitAddress() string {
	if Rootless() {
		if d := xdgDirs(); d.runtime != "" {
			if p := filepath.Join(d.runtime, "buildkitd.sock"); exists(p) {
				return "unix://" + p
			}
		}
	}
	return builder.DefaultAddress
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// rootlessDefaults changes the defaults for an ordinary user: nothing in
// the host's table, the user's own directories.
func rootlessDefaults(c *Config) {
	d := xdgDirs()
	c.Architectures = Architectures{}
	c.StateDir = d.state
	c.Control.Socket = filepath.Join(d.runtime, "mabd.sock")
	c.Control.Mode = 0o600
	c.BuildKit.Socket = filepath.Join(d.runtime, "buildkitd.sock")
	c.BuildKit.Root = filepath.Join(d.state, "buildkit")
	if d.runtime == "" {
		c.Control.Socket, c.BuildKit.Socket = "", ""
	}
	if d.state == "" {
		c.StateDir, c.BuildKit.Root = "", ""
	}
}

// noRuntimeDir says that an ordinary user's sockets have no home.
const noRuntimeDir = "XDG_RUNTIME_DIR is not set and /run/user/UID does not exist: log in through systemd (pam_systemd sets it), or set it to a directory you own (mode 0700)"

// RootlessError says why the daemon cannot run rootless here; Err is the
// typed error of the missing prerequisite (*userns.NoSubIDsError,
// *userns.MissingToolError, *userns.KernelTooOldError,
// *userns.UnavailableError) or one that says what else is wrong.
type RootlessError struct{ Err error }

func (e *RootlessError) Error() string { return "rootless: " + e.Err.Error() }
func (e *RootlessError) Unwrap() error { return e.Err }

// checkRootless checks, before anything is created, that an ordinary
// user's daemon can run: a runtime directory, subordinate ids, newuidmap
// and newgidmap, a kernel with per-user-namespace binfmt_misc and user
// namespaces allowed.
func checkRootless(cfg Config) error {
	if cfg.Control.Socket == "" || cfg.BuildKit.Socket == "" {
		return &RootlessError{Err: errors.New(noRuntimeDir)}
	}
	u, err := user.Current()
	if err != nil {
		return &RootlessError{Err: err}
	}
	ids, err := userns.LookupSubIDs(u)
	if err != nil {
		return &RootlessError{Err: err}
	}
	if err := userns.CheckTools(); err != nil {
		return &RootlessError{Err: err}
	}
	if err := userns.CheckHost(userns.Spec{Subordinate: &ids}); err != nil {
		return &RootlessError{Err: err}
	}
	return nil
}
