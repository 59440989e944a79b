package emulator

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"mabd/internal/parallel"
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
	// [FindAll] and [FindTrustedWith] fill it.
	Version string
	// Target is the architecture the emulator says it runs (see [Inspect]),
	// filled with Version; "" if unknown. Once known it is Arch, or the
	// emulator is refused with a [*WrongTargetError].
	Target string
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
//	qemu-aarch64-static not found in /usr/bin, /usr/local/bin: install qemu-user-static (apt-get install qemu-user-static)
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s not found in %s: install qemu-user-static (apt-get install qemu-user-static)",
		staticName(e.Arch), strings.Join(e.Dirs, ", "))
}

// Is reports whether target is [ErrNotFound].
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func staticName(arch string) string { return "qemu-" + arch + "-static" }

// UnusableError says that the file found for an architecture cannot be
// its emulator: it is not an ELF executable (a shell script, an object
// file; it then matches [ErrNotELF]) or it cannot be read. Unwrap gives
// the error of [IsStatic].
type UnusableError struct {
	Arch string // the QEMU architecture name it was found for
	Path string // the file
	Err  error  // why, from IsStatic
}

// Error reads, for example:
//
//	/opt/qemu/qemu-aarch64-static cannot be the aarch64 emulator: not an ELF executable; install qemu-user-static
func (e *UnusableError) Error() string {
	cause := e.Err
	var pe *fs.PathError
	if errors.As(cause, &pe) && pe.Path == e.Path {
		cause = pe.Err
	}
	return fmt.Sprintf("%s cannot be the %s emulator: %v; install qemu-user-static", e.Path, e.Arch, cause)
}

// Unwrap returns the cause.
func (e *UnusableError) Unwrap() error { return e.Err }

// WrongTargetError says that an emulator runs another architecture's
// programs than the one it was found or given for: qemu-arm-static
// copied or linked as qemu-aarch64-static, say. Its target is what its
// --version says (see [Inspect]), which renaming does not change.
type WrongTargetError struct {
	Path string // the emulator
	Want string // the architecture it was meant for, QEMU's name ("aarch64")
	Got  string // the architecture it runs, from its --version ("arm")
}

// Error reads, for example:
//
//	/opt/qemu/qemu-aarch64-static is QEMU's arm emulator (its --version says "qemu-arm"), not aarch64's: it cannot run aarch64 programs; replace it with qemu-aarch64-static (install qemu-user-static)
func (e *WrongTargetError) Error() string {
	return fmt.Sprintf("%s is QEMU's %s emulator (its --version says %q), not %s's: it cannot run %s programs; replace it with %s (install qemu-user-static)",
		e.Path, e.Got, "qemu-"+e.Got, e.Want, e.Want, staticName(e.Want))
}

// checkTarget returns a *WrongTargetError when e's target is known and is
// not e.Arch.
func (e *Emulator) checkTarget() error {
	if e.Target == "" || e.Target == e.Arch {
		return nil
	}
	return &WrongTargetError{Path: e.Path, Want: e.Arch, Got: e.Target}
}

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
// script) Find returns an [*UnusableError] rather than trying further
// candidates. Version and Target are left empty: see [Emulator.Inspect].
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
	for _, f := range emulatorFiles(arch, dirs) {
		if f.err != nil {
			return nil, f.err
		}
		static, err := IsStatic(f.path)
		if err != nil {
			return nil, &UnusableError{Arch: arch, Path: f.path, Err: err}
		}
		return &Emulator{Arch: arch, Path: f.path, Static: static}, nil
	}
	return nil, &NotFoundError{Arch: arch, Dirs: append([]string(nil), dirs...)}
}

// emulatorFile is a file that may be an emulator: its absolute path, or
// why that could not be made (with the path as found).
type emulatorFile struct {
	dir, path string
	// id is the file's identity, from the stat that found it.
	id  FileID
	err error
}

// emulatorFiles returns the files that may be arch's emulator in dirs,
// in the order Find prefers them: for each directory, qemu-<arch>-static,
// then qemu-<arch>. Only regular files with an execute bit count (symlinks
// followed); each is stat'ed once.
func emulatorFiles(arch string, dirs []string) []emulatorFile {
	var out []emulatorFile
	for _, dir := range dirs {
		for _, name := range []string{staticName(arch), "qemu-" + arch} {
			p := filepath.Join(dir, name)
			fi, err := os.Stat(p)
			if err != nil || !isExecutable(fi) {
				continue
			}
			abs, err := filepath.Abs(p)
			if err != nil {
				err = fmt.Errorf("find %s: %w", p, err)
			}
			id, _ := fileIDOf(fi)
			out = append(out, emulatorFile{dir: dir, path: abs, id: id, err: err})
		}
	}
	return out
}

// isExecutable reports whether fi is a regular file with at least one
// execute permission bit set.
func isExecutable(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// headerBufs holds IsStatic's buffers for reuse: a status inspects some
// 70 emulators, and a buffer of its own for each would be a fresh page
// each (a page fault) in a process too short-lived to collect them.
var headerBufs = sync.Pool{New: func() any { return new([headerBytes]byte) }}

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
	// The kernel reads only the ELF header and the program headers, and
	// so does the fast path: one open and one read of the first
	// headerBytes (a static emulator is inspected for every status and
	// install). What it cannot decide there goes to debug/elf.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer syscall.Close(fd)
	page := headerBufs.Get().(*[headerBytes]byte)
	defer headerBufs.Put(page)
	buf := page[:]
	n, err := syscall.Pread(fd, buf, 0)
	if err != nil {
		return fail(err)
	}
	buf = buf[:n]
	if !bytes.HasPrefix(buf, []byte(elf.ELFMAG)) {
		return fail(ErrNotELF)
	}
	if static, typ, ok := staticFromHeaders(buf); ok {
		if typ != elf.ET_EXEC && typ != elf.ET_DYN {
			return fail(fmt.Errorf("%w: ELF type %v", ErrNotELF, typ))
		}
		return static, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
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

// headerBytes is how much of a file [IsStatic] reads first: the ELF
// header and, in every emulator and linker output seen, the program
// headers right after it.
const headerBytes = 4096

// staticFromHeaders reads the ELF header and program headers in b, the
// start of an ELF file: static is true when no program header is
// PT_INTERP. ok is false when b does not hold them all, or they are not
// what a well-formed file has (an unknown class or byte order, a program
// header size other than the class's, PN_XNUM headers): debug/elf
// decides those.
func staticFromHeaders(b []byte) (static bool, typ elf.Type, ok bool) {
	if len(b) < elf.EI_NIDENT {
		return false, 0, false
	}
	var bo binary.ByteOrder
	switch elf.Data(b[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		bo = binary.LittleEndian
	case elf.ELFDATA2MSB:
		bo = binary.BigEndian
	default:
		return false, 0, false
	}
	var phoff uint64
	var phentsize, phnum, want int
	switch elf.Class(b[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		var h elf.Header64
		if _, err := binary.Decode(b, bo, &h); err != nil {
			return false, 0, false
		}
		typ, phoff, phentsize, phnum, want = elf.Type(h.Type), h.Phoff, int(h.Phentsize), int(h.Phnum), int(unsafe.Sizeof(elf.Prog64{}))
	case elf.ELFCLASS32:
		var h elf.Header32
		if _, err := binary.Decode(b, bo, &h); err != nil {
			return false, 0, false
		}
		typ, phoff, phentsize, phnum, want = elf.Type(h.Type), uint64(h.Phoff), int(h.Phentsize), int(h.Phnum), int(unsafe.Sizeof(elf.Prog32{}))
	default:
		return false, 0, false
	}
	if phentsize != want || phnum == 0xffff || phoff > uint64(len(b)) || uint64(len(b))-phoff < uint64(phnum*phentsize) {
		return false, 0, false
	}
	for i := range phnum {
		// p_type is the first word of a program header in both classes.
		if elf.ProgType(bo.Uint32(b[int(phoff)+i*phentsize:])) == elf.PT_INTERP {
			return false, typ, true
		}
	}
	return true, typ, true
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
// fills e.Version and e.Target by running the emulator once with --version
// (see [Inspect]). A field whose fact could not be read is left unchanged
// and the first error is returned. A target other than e.Arch is filled
// in and reported as a [*WrongTargetError].
func (e *Emulator) Inspect(ctx context.Context) error {
	static, err := IsStatic(e.Path)
	if err != nil {
		return err
	}
	e.Static = static
	v, target, err := Inspect(ctx, e.Path)
	if err != nil {
		return err
	}
	e.Version, e.Target = v, target
	return e.checkTarget()
}

// FindAll runs [Find] for each architecture in arches (duplicates are looked
// up once) in dirs, and, if withVersion is true, reads each found emulator's
// version and target with [Inspect] under ctx. Architectures are handled
// concurrently, at most runtime.NumCPU()*2 at a time. It does not check who
// may replace the emulators: before registering any, use [FindTrustedWith].
//
// The map holds the emulators found, keyed by architecture. An architecture
// for which no emulator exists is simply absent from the map and adds nothing
// to the error. Every other failure is reported in the returned error, an
// [errors.Join] in the order of arches: an invalid name, a file that cannot
// be the emulator ([*UnusableError]) and, withVersion, an emulator of
// another architecture ([*WrongTargetError]) are left out of the map; an
// emulator whose --version fails or cannot be parsed is still in the map,
// with Version and Target "".
func FindAll(ctx context.Context, arches []string, dirs []string, withVersion bool) (map[string]*Emulator, error) {
	var versions *VersionCache
	if withVersion {
		versions, _ = LoadVersionCache("")
	}
	found, refused, err := find(ctx, arches, dirs, versions, nil)
	errs := []error{}
	for _, a := range uniqueStrings(arches) {
		if refused[a] != nil {
			errs = append(errs, refused[a])
		}
	}
	return found, errors.Join(append(errs, err)...)
}

// find is FindAll and FindTrustedWith: for each architecture of arches,
// concurrently, it finds the emulator in dirs, refuses it if check
// (when not nil) says so, and reads its version and target through
// versions (when not nil), refusing it if it runs another architecture.
// Refusals are keyed by architecture; err joins the other errors: invalid
// names and --version runs that failed or could not be parsed (whose
// emulators are found, with Version and Target "").
func find(ctx context.Context, arches, dirs []string, versions *VersionCache, check func(string) error) (found map[string]*Emulator, refused map[string]error, err error) {
	uniq := uniqueStrings(arches)
	emus := make([]*Emulator, len(uniq))
	refusals := make([]error, len(uniq))
	warnings := make([]error, len(uniq))
	parallel.Run(len(uniq), runtime.NumCPU()*2, func(i int) {
		emus[i], refusals[i], warnings[i] = findOne(ctx, uniq[i], dirs, versions, check)
	})

	found = make(map[string]*Emulator, len(uniq))
	refused = map[string]error{}
	for i, a := range uniq {
		switch {
		case refusals[i] != nil:
			refused[a] = refusals[i]
		case emus[i] != nil:
			found[a] = emus[i]
		}
	}
	return found, refused, errors.Join(warnings...)
}

// findOne is find for one architecture: the emulator, or why it is
// refused, and a warning.
func findOne(ctx context.Context, arch string, dirs []string, versions *VersionCache, check func(string) error) (e *Emulator, refused, warning error) {
	e, err := Find(arch, dirs)
	var unusable *UnusableError
	switch {
	case errors.As(err, &unusable):
		return nil, err, nil
	case errors.Is(err, ErrNotFound):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	if check != nil {
		if err := check(e.Path); err != nil {
			return nil, err, nil
		}
	}
	if versions == nil {
		return e, nil, nil
	}
	e.Version, e.Target, err = versions.Inspect(ctx, e.Path)
	if err != nil {
		return e, nil, err
	}
	if err := e.checkTarget(); err != nil {
		return nil, err, nil
	}
	return e, nil, nil
}

// uniqueStrings returns ss without duplicates, in order.
func uniqueStrings(ss []string) []string {
	var out []string
	seen := make(map[string]bool, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
