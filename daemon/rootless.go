package daemon

// Rootless mode: `mabd daemon` run by an ordinary user. It never touches
// the host's binfmt_misc table (it is root's); its builder emulates in a
// private table of its own, in a user namespace that maps the user's
// subordinate ids (newuidmap, newgidmap), and its files are the user's:
// configuration under $XDG_CONFIG_HOME/mabd, state under
// $XDG_STATE_HOME/mabd, sockets under $XDG_RUNTIME_DIR/mabd.

import (
	"errors"
	"os/user"
	"path/filepath"

	"mabd/daemon/api"
	"mabd/internal/userns"
)

// rootlessDefaults changes the defaults for an ordinary user: nothing in
// the host's table, the user's own directories.
func rootlessDefaults(c *Config) {
	d := api.UserDirs()
	c.Architectures = Architectures{}
	c.StateDir = d.State
	c.Control.Socket = filepath.Join(d.Runtime, "mabd.sock")
	c.Control.Mode = 0o600
	c.BuildKit.Socket = filepath.Join(d.Runtime, "buildkitd.sock")
	c.BuildKit.Root = filepath.Join(d.State, "buildkit")
	if d.Runtime == "" {
		c.Control.Socket, c.BuildKit.Socket = "", ""
	}
	if d.State == "" {
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
