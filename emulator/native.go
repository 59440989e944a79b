package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
	"mabd/internal/safefile"
)

// nativeTimeout bounds the run of the probe [KernelRuns] starts: a
// program of a few hundred bytes that the kernel runs itself.
const nativeTimeout = 5 * time.Second

// eiABIVersion is the byte of an ELF header that holds EI_ABIVERSION.
// binfmt_misc entries for ELF programs (Debian's, QEMU's, mabd's) want it
// 0; the kernel's own ELF loader does not look at it.
const eiABIVersion = 8

// ErrUndetermined is matched (via [errors.Is]) by the error of
// [KernelRuns] when the run proved nothing: the probe could not be
// started for another reason than the kernel refusing its format, or it
// ran under an emulator after all (a binfmt_misc entry that selects any
// ABI version).
var ErrUndetermined = errors.New("cannot tell whether the kernel runs it")

// KernelRuns reports whether the kernel runs programs of architecture a
// itself, without a binfmt_misc handler: a kernel for x86_64 runs i386
// programs only when it was built with IA32 emulation and it is not
// turned off (ia32_emulation=0 on its command line, or a hypervisor that
// cannot run 32-bit code). It runs a's tiny probe from memory, its
// EI_ABIVERSION byte set to 1, which the magic of binfmt_misc entries for
// ELF programs rejects, so that the kernel's ELF loader has the only say:
// true when the probe ran and printed the host's own machine (an emulator
// would print its own), false when the kernel refused it (ENOEXEC).
// Anything else is an error matching [ErrUndetermined]. The run is
// bounded by ctx and nativeTimeout.
func KernelRuns(ctx context.Context, a binfmt.Arch) (bool, error) {
	bin, ok, err := tinyProgram(a.Name)
	switch {
	case err != nil:
		return false, fmt.Errorf("%w: %w", ErrUndetermined, err)
	case !ok || len(bin) <= eiABIVersion:
		return false, fmt.Errorf("%w: no tiny probe for %s", ErrUndetermined, a.Name)
	}
	variant := slices.Clone(bin)
	variant[eiABIVersion] = 1
	out, err := runFromMemory(ctx, "mabd-native-"+a.Name, variant)
	if errno, ok := startErrno(err); ok && errno == syscall.ENOEXEC {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: run the %s probe: %w", ErrUndetermined, a.Name, err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false, fmt.Errorf("%w: uname: %w", ErrUndetermined, err)
	}
	if machine := unix.ByteSliceToString(u.Machine[:]); out != machine {
		return false, fmt.Errorf("%w: the %s probe printed %q, not the host's %q: something else ran it", ErrUndetermined, a.Name, out, machine)
	}
	return true, nil
}

// runFromMemory runs the program bin from a memfd (no file on disk),
// with an empty environment, and returns its first line of output. The
// run is bounded by ctx and nativeTimeout; the process is killed then.
func runFromMemory(ctx context.Context, name string, bin []byte) (string, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := f.Write(bin); err != nil {
		return "", fmt.Errorf("write memfd: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, nativeTimeout)
	defer cancel()
	// The child gets the memfd as its fd 3 (without close-on-exec) and
	// executes it through its own /proc/self/fd.
	cmd := exec.CommandContext(ctx, "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = []string{}
	var stdout limitedBuffer
	cmd.Stdout = &stdout
	cmd.WaitDelay = probeWaitDelay
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return firstLine(stdout.String()), nil
}

// NativeFileName is the file of a state directory in which [NativeIn]
// remembers what the kernel runs, for as long as that kernel runs.
const NativeFileName = "native.json"

// maxNativeFileBytes bounds what [NativeIn] reads of its file.
const maxNativeFileBytes = 4096

// bootIDFile names the running kernel: a new one at each boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// nativeRecord is the file [NativeIn] keeps.
type nativeRecord struct {
	BootID string   `json:"boot_id"`
	Native []string `json:"native"`
}

// nativeKnown is what [NativeIn] answered in this process, nil until it
// did.
var nativeKnown struct {
	mu    sync.Mutex
	names []string
}

// Native returns the QEMU names of the architectures this host's kernel
// runs without an emulator: its own first, then those of
// [binfmt.Native] that [KernelRuns] proves (i386 on an amd64 host whose
// kernel runs 32-bit programs). One that cannot be proved either way
// counts, as the kernel's default. Proved on the first call, once per
// process (what a kernel runs does not change while it runs); see
// [NativeIn] to remember it across processes.
func Native() []string {
	names, _ := NativeIn("")
	return names
}

// IsNative reports whether the QEMU architecture name is one [Native]
// returns.
func IsNative(name string) bool { return slices.Contains(Native(), name) }

// NativeIn is [Native], remembered in the file at path (see
// [NativeFileName]) for the kernel that proved it (its boot id): read
// from there when the same kernel wrote it, else proved and written
// there if path's directory exists, as a new file renamed over the old.
// A path that is not a regular file is neither read nor replaced. With
// path "" nothing is kept but this process's answer. Once the process
// knows the answer, later calls return it and read or write no file. The
// error, when not nil, says why the file was not written: a warning, the
// answer stands.
func NativeIn(path string) ([]string, error) {
	nativeKnown.mu.Lock()
	defer nativeKnown.mu.Unlock()
	if nativeKnown.names != nil {
		return slices.Clone(nativeKnown.names), nil
	}
	boot, err := safefile.Read(bootIDFile, 64, safefile.Options{})
	bootID := strings.TrimSpace(string(boot))
	if err == nil && path != "" {
		if names, ok := readNative(path, bootID); ok {
			nativeKnown.names = names
			return slices.Clone(names), nil
		}
	}
	nativeKnown.names = proveNative()
	switch {
	case path == "":
		return slices.Clone(nativeKnown.names), nil
	case err != nil:
		return slices.Clone(nativeKnown.names), &fs.PathError{Op: "remember native architectures", Path: path, Err: err}
	}
	return slices.Clone(nativeKnown.names), writeNative(path, nativeRecord{BootID: bootID, Native: nativeKnown.names})
}

// proveNative is Native's answer, proved.
func proveNative() []string {
	names := binfmt.Native("")
	if len(names) == 0 {
		return []string{}
	}
	out := []string{names[0]} // the host's own
	for _, n := range names[1:] {
		a, ok := binfmt.ArchByName(n)
		if !ok {
			continue
		}
		// KernelRuns bounds its run by nativeTimeout.
		if runs, err := KernelRuns(context.Background(), a); runs || err != nil {
			// Proved, or not disproved: the kernel's default stands.
			out = append(out, n)
		}
	}
	return out
}

// readNative returns the answer of the file at path if the kernel bootID
// wrote it and it names the host's own architecture first and nothing
// binfmt.Native does not.
func readNative(path, bootID string) ([]string, bool) {
	b, err := safefile.Read(path, maxNativeFileBytes, safefile.Options{NoFollow: true})
	if err != nil {
		return nil, false
	}
	var r nativeRecord
	if json.Unmarshal(b, &r) != nil || r.BootID != bootID || bootID == "" {
		return nil, false
	}
	may := binfmt.Native("")
	if len(r.Native) == 0 || len(may) == 0 || r.Native[0] != may[0] {
		return nil, false
	}
	for _, n := range r.Native {
		if !slices.Contains(may, n) {
			return nil, false
		}
	}
	return r.Native, true
}

// writeNative replaces the file at path with r, if path's directory
// exists (safefile.Write creates none) and path is a regular file or
// nothing.
func writeNative(path string, r nativeRecord) error {
	fail := func(err error) error {
		return &fs.PathError{Op: "remember native architectures", Path: path, Err: err}
	}
	if err := checkReplaceable(path); err != nil {
		return fail(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fail(err)
	}
	if err := safefile.Write(path, append(b, '\n'), 0o644); err != nil {
		return fail(err)
	}
	return nil
}
