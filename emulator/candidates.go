package emulator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"mabd/internal/parallel"
)

// SourcePin is the Source of a [Candidate] that the configuration names
// for its architecture (a pin), rather than one found in an emulator
// directory.
const SourcePin = "pin"

// Candidate is an emulator that may serve an architecture: every
// qemu-<arch>-static and qemu-<arch> in every emulator directory is one
// (Debian 12's qemu-user-static in /usr/bin and a QEMU 10 extracted into
// /opt, say), and so is a pinned path. Which of them is registered is the
// caller's choice (package host proves them first).
type Candidate struct {
	Emulator
	// Source says where it came from: the emulator directory it was
	// found in, or SourcePin.
	Source string
	// ID is the identity of its file when it was found: a candidate
	// whose file changes since (an upgrade renamed over it) is another.
	ID FileID
	// Refused says why it may not be registered, nil when it may: a file
	// that is no emulator ([*UnusableError]), one that anyone but root
	// could replace ([CheckTrusted]'s error), an emulator of another
	// architecture ([*WrongTargetError]) or a pin to a missing file
	// ([*PinError]).
	Refused error
	// Warning says what could not be learnt about a candidate that may
	// still be registered: its --version failed or did not parse (so
	// Version and Target are "").
	Warning error
}

// Usable reports whether c may be registered.
func (c Candidate) Usable() bool { return c.Refused == nil }

// PinError says that a pinned emulator cannot be used: its path does not
// exist or is no file.
type PinError struct {
	Arch string // the architecture it is pinned for
	Path string
	Err  error
}

// Error reads, for example:
//
//	the emulator pinned for aarch64, /opt/qemu/bin/qemu-aarch64, does not exist: install it there or remove the pin
func (e *PinError) Error() string {
	if errors.Is(e.Err, fs.ErrNotExist) {
		return fmt.Sprintf("the emulator pinned for %s, %s, does not exist: install it there or remove the pin", e.Arch, e.Path)
	}
	return fmt.Sprintf("the emulator pinned for %s, %s: %v", e.Arch, e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *PinError) Unwrap() error { return e.Err }

// FindCandidates returns every emulator for arch (a QEMU name) in dirs
// (nil: [DefaultDirs]), in the order [Find] prefers them: for each
// directory in turn, qemu-<arch>-static, then qemu-<arch>. Files that are
// missing, not executable or not regular are passed over, as Find does,
// and so is a second name of a file already found (a symlink or a hard
// link to it). Each candidate is checked before it ever runs: one that is
// no ELF executable or that anyone but root could replace is refused
// (Refused says why) and not run. The others' versions and targets are
// read through versions (a nil cache asks each emulator), and one of
// another architecture is refused too. The error is only for an invalid
// architecture name.
func FindCandidates(ctx context.Context, arch string, dirs []string, versions *VersionCache) ([]Candidate, error) {
	if arch == "" || filepath.Base(arch) != arch {
		return nil, fmt.Errorf("find emulators: invalid architecture name %q", arch)
	}
	if len(dirs) == 0 {
		dirs = DefaultDirs
	}
	var out []Candidate
	seen := map[FileID]bool{}
	for _, f := range emulatorFiles(arch, dirs) {
		if f.err != nil || f.id == (FileID{}) || seen[f.id] {
			continue
		}
		seen[f.id] = true
		out = append(out, inspectCandidate(ctx, Candidate{Emulator: Emulator{Arch: arch, Path: f.path}, Source: f.dir, ID: f.id}, versions))
	}
	return out, nil
}

// PinnedCandidate returns the candidate a configuration pins for arch:
// the emulator at path, checked as [FindCandidates] checks the ones it
// finds. A path that is not absolute, does not exist or is no regular
// file is refused with a [*PinError].
func PinnedCandidate(ctx context.Context, arch, path string, versions *VersionCache) Candidate {
	c := Candidate{Emulator: Emulator{Arch: arch, Path: path}, Source: SourcePin}
	if !filepath.IsAbs(path) {
		c.Refused = &PinError{Arch: arch, Path: path, Err: errors.New("not an absolute path")}
		return c
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		c.Refused = &PinError{Arch: arch, Path: path, Err: err}
		return c
	case !fi.Mode().IsRegular():
		c.Refused = &PinError{Arch: arch, Path: path, Err: errors.New("not a regular file")}
		return c
	}
	c.ID, _ = StatFileID(path)
	return inspectCandidate(ctx, c, versions)
}

// inspectCandidate checks c (trust, ELF, static) and reads its version
// and target through versions.
func inspectCandidate(ctx context.Context, c Candidate, versions *VersionCache) Candidate {
	if err := CheckTrusted(c.Path); err != nil {
		c.Refused = err
		return c
	}
	static, err := versions.static(c.Path, c.ID)
	if err != nil {
		c.Refused = &UnusableError{Arch: c.Arch, Path: c.Path, Err: err}
		return c
	}
	c.Static = static
	c.Version, c.Target, err = versions.inspect(ctx, c.Path, c.ID)
	if err != nil {
		c.Warning = err
		return c
	}
	c.Refused = c.checkTarget()
	return c
}

// FindAllCandidates runs [FindCandidates] for each architecture of
// arches (QEMU names; duplicates once) concurrently, at most
// runtime.NumCPU()*2 at a time, and puts the pinned candidate of those
// that pins names (keyed by QEMU name) in front of the ones found (which
// then leave out its file). The map is keyed by architecture; one with no
// candidate is absent.
func FindAllCandidates(ctx context.Context, arches, dirs []string, pins map[string]string, versions *VersionCache) (map[string][]Candidate, error) {
	uniq := uniqueStrings(arches)
	found := make([][]Candidate, len(uniq))
	errs := make([]error, len(uniq))
	parallel.Run(len(uniq), runtime.NumCPU()*2, func(i int) {
		arch := uniq[i]
		var pin *Candidate
		if p, ok := pins[arch]; ok {
			c := PinnedCandidate(ctx, arch, p, versions)
			pin, found[i] = &c, []Candidate{c}
		}
		cs, err := FindCandidates(ctx, arch, dirs, versions)
		for _, c := range cs {
			if pin == nil || pin.ID == (FileID{}) || c.ID != pin.ID {
				found[i] = append(found[i], c)
			}
		}
		errs[i] = err
	})
	out := map[string][]Candidate{}
	for i, a := range uniq {
		if len(found[i]) > 0 {
			out[a] = found[i]
		}
	}
	return out, errors.Join(errs...)
}
