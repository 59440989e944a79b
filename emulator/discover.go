package emulator

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// DefaultDirs are the directories [Find] searches, in order, when it is given
// none: Debian's qemu-user-static and qemu-user install into /usr/bin, and
// locally built emulators usually land in /usr/local/bin.
var DefaultDirs = []string{"/usr/bin", "/usr/local/bin"}

// ErrNotFound is the sentinel matched (via [errors.Is]) by every
// [*NotFoundError].
var ErrNotFound = errors.New("emulator not found")

// ErrNotELF reports that a file is not an ELF executable (for example a shell
// script, or an ELF object file or core dump). [IsStatic] wraps it.
var ErrNotELF = errors.New("not an ELF executable")

// Emulator is a QEMU user-mode emulator found on the host.
type Emulator struct {
	// Arch is the QEMU architecture name, e.g. "aarch64", "arm", "riscv64"
	// (the <arch> in qemu-<arch>-static).
	Arch string
	// Path is the absolute path of the emulator as found: a symlink is not
	// resolved, so Path is what binfmt_misc should be given.
	Path string
	// Static reports whether the emulator is statically linked (see
	// [IsStatic]), which the binfmt_misc F flag requires.
	Static bool
	// Version is the QEMU version, e.g. "7.2.22", or "" if unknown. [Find]
	// leaves it empty because reading it starts a process; [Emulator.Inspect],
	// [Version] and [FindAll] fill it.
	Version string
}

// NotFoundError is returned by [Find] when no usable emulator exists for an
// architecture. It matches [ErrNotFound] under [errors.Is].
type NotFoundError struct {
	// Arch is the QEMU architecture name that was looked up.
	Arch string
	// Dirs are the directories searched, in order.
	Dirs []string
}

// Error reads, for example:
//
//	qemu-aarch64-static not found in /usr/bin, /usr/local/bin: install qemu-user-static (apt-get install qemu-user-static) or pass --emulator-dir
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s not found in %s: install qemu-user-static (apt-get install qemu-user-static) or pass --emulator-dir",
		staticName(e.Arch), strings.Join(e.Dirs, ", "))
}

// Is reports whether target is [ErrNotFound].
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func staticName(arch string) string { return "qemu-" + arch + "-static" }

// Find looks for the QEMU user-mode emulator for arch (a QEMU architecture
// name such as "aarch64") in dirs; nil or empty dirs means [DefaultDirs].
//
// The search order is: for each directory in dirs, in order, first
// qemu-<arch>-static, then qemu-<arch>. The first candidate that is a
// regular file after following symlinks and has at least one execute
// permission bit wins. So within one directory the -static build wins, but
// a plain qemu-<arch> in an earlier directory wins over a qemu-<arch>-static
// in a later one. Candidates that are missing, are directories or other
// non-regular files, are not executable, or cannot be stat'ed are skipped
// silently.
//
// The winner's Path is made absolute (relative dirs are resolved against the
// working directory) but symlinks are not resolved. Static is filled with
// [IsStatic]; if the winner cannot be inspected (for example it is a shell
// script) Find returns that error rather than trying further candidates.
// Version is left empty: see [Emulator.Inspect].
//
// If no candidate qualifies, Find returns a [*NotFoundError] (matching
// [ErrNotFound]) listing the directories searched.
func Find(arch string, dirs []string) (*Emulator, error) {
	if arch == "" || strings.ContainsRune(arch, '/') || strings.ContainsRune(arch, 0) {
		return nil, fmt.Errorf("find emulator: invalid architecture name %q", arch)
	}
	if len(dirs) == 0 {
		dirs = DefaultDirs
	}
	for _, dir := range dirs {
		for _, name := range []string{staticName(arch), "qemu-" + arch} {
			p := filepath.Join(dir, name)
			if !isExecutableFile(p) {
				continue
			}
			abs, err := filepath.Abs(p)
			if err != nil {
				return nil, fmt.Errorf("find %s: %w", p, err)
			}
			static, err := IsStatic(abs)
			if err != nil {
				return nil, fmt.Errorf("find qemu-%s: %w", arch, err)
			}
			return &Emulator{Arch: arch, Path: abs, Static: static}, nil
		}
	}
	return nil, &NotFoundError{Arch: arch, Dirs: append([]string(nil), dirs...)}
}

// isExecutableFile reports whether path, after following symlinks, is a
// regular file with at least one execute permission bit set.
func isExecutableFile(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	return fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// IsStatic reports whether the ELF executable at path (symlinks followed) is
// statically linked, i.e. has no PT_INTERP program header and so needs no
// dynamic loader or shared libraries. A static-PIE executable (ET_DYN
// without PT_INTERP) counts as static.
//
// A file that is not an ELF executable (a shell script, an ELF relocatable
// object or core dump, a malformed ELF file) yields false and an error
// wrapping [ErrNotELF]. All errors read "inspect <path>: <cause>"; an error
// opening or reading the file wraps the underlying error (e.g.
// [fs.ErrNotExist]).
func IsStatic(path string) (bool, error) {
	fail := func(err error) (bool, error) {
		return false, &fs.PathError{Op: "inspect", Path: path, Err: err}
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fail(err)
	}
	defer f.Close()

	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(ErrNotELF)
		}
		return fail(err)
	}
	if !bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		return fail(ErrNotELF)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fail(fmt.Errorf("%w: malformed ELF file: %v", ErrNotELF, err))
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fail(fmt.Errorf("%w: ELF type %v", ErrNotELF, ef.Type))
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// CheckFixBinary reports whether e can be registered with binfmt_misc's F
// ("fix binary") flag: nil if e is statically linked, otherwise an error
// explaining why a dynamically linked emulator breaks under F and what to do
// about it.
func (e *Emulator) CheckFixBinary() error {
	if e.Static {
		return nil
	}
	return fmt.Errorf("%s is dynamically linked: the F flag opens it at registration and runs it inside chroots and containers, where its shared libraries are missing; install the static build (qemu-user-static) or drop F from the flags", e.Path)
}

// Inspect refreshes e.Static from the file at e.Path (see [IsStatic]) and
// fills e.Version by running the emulator once with --version (see
// [Version]). A field whose fact could not be read is left unchanged and the
// first error is returned.
func (e *Emulator) Inspect(ctx context.Context) error {
	static, err := IsStatic(e.Path)
	if err != nil {
		return err
	}
	e.Static = static
	v, err := Version(ctx, e.Path)
	if err != nil {
		return err
	}
	e.Version = v
	return nil
}

// FindAll runs [Find] for each architecture in arches (duplicates are looked
// up once) in dirs, and, if withVersion is true, reads each found emulator's
// version with [Version] under ctx. Architectures are handled concurrently,
// at most runtime.NumCPU()*2 at a time.
//
// The map holds the emulators found, keyed by architecture. An architecture
// for which no emulator exists is simply absent from the map and adds nothing
// to the error. Every other failure (an invalid name, an emulator that cannot
// be inspected, a --version that fails or cannot be parsed) is reported in the
// returned error, an [errors.Join] in the order of arches. An emulator whose
// version could not be read is still in the map, with Version "".
func FindAll(ctx context.Context, arches []string, dirs []string, withVersion bool) (map[string]*Emulator, error) {
	var versions *VersionCache
	if withVersion {
		versions = &VersionCache{m: map[string]cachedVersion{}}
	}
	return FindAllWith(ctx, arches, dirs, versions)
}

// FindAllWith is [FindAll] reading versions through a cache: with a nil
// cache it reads none, otherwise each emulator's version comes from the
// cache when the file did not change (see [VersionCache]).
func FindAllWith(ctx context.Context, arches []string, dirs []string, versions *VersionCache) (map[string]*Emulator, error) {
	withVersion := versions != nil
	var uniq []string
	seen := make(map[string]bool, len(arches))
	for _, a := range arches {
		if !seen[a] {
			seen[a] = true
			uniq = append(uniq, a)
		}
	}

	found := make([]*Emulator, len(uniq))
	errs := make([]error, len(uniq))
	sem := make(chan struct{}, runtime.NumCPU()*2)
	var wg sync.WaitGroup
	for i, arch := range uniq {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			e, err := Find(arch, dirs)
			if err != nil {
				if !errors.Is(err, ErrNotFound) {
					errs[i] = err
				}
				return
			}
			found[i] = e
			if withVersion {
				e.Version, errs[i] = versions.Version(ctx, e.Path)
			}
		})
	}
	wg.Wait()

	m := make(map[string]*Emulator, len(uniq))
	for i, e := range found {
		if e != nil {
			m[uniq[i]] = e
		}
	}
	return m, errors.Join(errs...)
}
