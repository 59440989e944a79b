// Package buildbin finds mabd-build, the program that serves mabd's
// subcommands that speak BuildKit and registries (build, manifest, image)
// and the daemon's checks of its fleet's nodes, so that mabd itself — the
// host agent that runs as root at boot — links none of that code.
package buildbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Name is the program's name.
const Name = "mabd-build"

// LibDir is where the Debian package installs it (beside the pinned
// buildkitd).
const LibDir = "/usr/lib/mabd"

// NotFoundError says where mabd-build was looked for.
type NotFoundError struct {
	Looked []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s not found (looked at %v and in $PATH)", Name, e.Looked)
}

// Path finds mabd-build: beside the running executable (bin/ of a build
// tree, /usr/local/bin after `make install`), then in LibDir, then in
// $PATH.
func Path() (string, error) {
	var looked []string
	if exe, err := os.Executable(); err == nil {
		looked = append(looked, filepath.Join(filepath.Dir(exe), Name))
	}
	looked = append(looked, filepath.Join(LibDir, Name))
	for _, p := range looked {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(Name)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", &NotFoundError{Looked: looked}
		}
		return "", err
	}
	return p, nil
}
