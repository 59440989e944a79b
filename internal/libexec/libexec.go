// Package libexec finds mabd's other programs, which mabd runs for some of
// its subcommands as git and docker run theirs: mabd-build (build,
// manifest, image, and the daemon's checks of its fleet's nodes: BuildKit's
// client, gRPC, registries) and mabd-daemon (the service: its metrics and
// the builder's supervision). mabd itself — what an administrator types,
// what runs at boot for install and status — links neither.
package libexec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// The programs.
const (
	Build  = "mabd-build"
	Daemon = "mabd-daemon"
)

// Dir is where the Debian package installs them (beside the pinned
// buildkitd).
const Dir = "/usr/lib/mabd"

// NotFoundError says where a program was looked for.
type NotFoundError struct {
	Name   string
	Looked []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s not found (looked at %v and in $PATH)", e.Name, e.Looked)
}

// Path finds the program name: beside the running executable (bin/ of a
// build tree, /usr/local/bin after `make install`), then in Dir, then in
// $PATH.
func Path(name string) (string, error) {
	var looked []string
	if exe, err := os.Executable(); err == nil {
		looked = append(looked, filepath.Join(filepath.Dir(exe), name))
	}
	looked = append(looked, filepath.Join(Dir, name))
	for _, p := range looked {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", &NotFoundError{Name: name, Looked: looked}
		}
		return "", err
	}
	return p, nil
}
