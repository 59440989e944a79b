package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"mabd/binfmt"
	"mabd/emulator"
)

// Host is a binfmt_misc instance and the emulators that may serve it, as
// mabd manages them: install, uninstall, status and verify work on it, for
// the CLI and for the daemon's reconcile loop.
type Host struct {
	// Mount is the binfmt_misc instance (the host's by default).
	Mount binfmt.Mount
	// EmulatorDirs are searched for qemu-<arch>[-static]; nil means
	// emulator.DefaultDirs.
	EmulatorDirs []string
	// PersistDir is where --persist writes binfmt.d files; "" means
	// /etc/binfmt.d.
	PersistDir string
	// StateDir holds the last verification; "" means DefaultStateDir and
	// "-" that Verify saves nothing.
	StateDir string
	// ConfDirs are the binfmt.d directories systemd-binfmt reads, searched
	// to name who registered an entry; nil means DefaultConfDirs.
	ConfDirs []string
}

// InputError is bad input: an unknown architecture, bad flags, a missing
// or unusable emulator. Nothing was changed. The CLI exits 2 for it.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// versionCache is the emulator version cache in the state directory, or
// a cache that only lives for this run when the state is not kept ("-").
// A stored cache that was ignored (too large, not JSON, not a regular
// file) comes with the warning.
func (h Host) versionCache() (*emulator.VersionCache, error) {
	if h.StateDir == "-" {
		return emulator.LoadVersionCache("")
	}
	return emulator.LoadVersionCache(filepath.Join(stateDir(h.StateDir), "emulators.json"))
}

// checkEmulatorDirs refuses emulator directories that do not exist or are
// no directories: a typo must not read as "no emulator installed".
func (h Host) checkEmulatorDirs() error {
	for _, d := range h.EmulatorDirs {
		fi, err := os.Stat(d)
		switch {
		case err != nil:
			return inputErr("emulator directory %s: %v", d, errors.Unwrap(err))
		case !fi.IsDir():
			return inputErr("emulator directory %s is not a directory", d)
		}
	}
	return nil
}

// isNative reports whether the kernel runs arch's programs itself (see
// [emulator.NativeIn]), as proved once per boot and remembered in the
// state directory.
func (h Host) isNative(arch string) bool { return slices.Contains(h.native(), arch) }

// native is [emulator.NativeIn] for h's state directory ("-": proved
// for this process only). Not remembering is no failure: the proof
// stands.
func (h Host) native() []string {
	path := ""
	if h.StateDir != "-" {
		path = filepath.Join(stateDir(h.StateDir), emulator.NativeFileName)
	}
	names, _ := emulator.NativeIn(path)
	return names
}

// hostArch is the QEMU name of the host's own architecture (x86_64 on
// amd64), which no handler may take over.
func hostArch() string {
	if n := binfmt.Native(""); len(n) > 0 {
		return n[0]
	}
	return ""
}

// InstallOptions are the arguments of `mabd install`.
type InstallOptions struct {
	// Arches are names as the user typed them; "all" means every
	// architecture of the table whose emulator is present, except the
	// host's own.
	Arches []string
	// Flags are the handler flags; "" means F, plus P when the emulator
	// honours it (QEMU ≥ 6.0).
	Flags string
	// Replace replaces conflicting entries of the same name.
	Replace bool
	// Persist also writes /etc/binfmt.d/qemu-<arch>.conf.
	Persist bool
	// Emulators pins the emulator of architectures: names as the user
	// typed them to absolute paths. A pinned emulator is registered
	// whatever the other candidates; one that may not be (missing,
	// untrusted, of another architecture) is bad input.
	Emulators map[string]string
	// Choice says how the emulator is chosen among several candidates
	// (every qemu-<arch>-static and qemu-<arch> in EmulatorDirs):
	// ChoiceAuto (also "") or ChoiceFirst. See [Choose].
	Choice string
	// Retry are architectures (QEMU names) whose candidates, and paths
	// of candidates, that are tried again rather than judged by the
	// trials the state directory remembers: the daemon's, when the
	// emulator it registered fails.
	Retry []string
	// Trial bounds the candidates' trials.
	Trial TrialOptions
	// EmulateNative registers handlers for the architectures named
	// explicitly that the host runs natively besides its own (i386 on
	// amd64): their programs then run under the emulator. Otherwise, and
	// always for the host's own, they are skipped.
	EmulateNative bool
}

// Note is something install passed over, with the reason.
type Note struct {
	Arch   string
	Reason string
}

// InstallResult is what Install did.
type InstallResult struct {
	Mounted bool // binfmt_misc was not mounted and Install mounted it
	Changes []binfmt.Change
	// Served are entries of the same name registered by another tool
	// that run the architecture's programs as mabd's would (see
	// [Host.Judge]): left alone, not conflicts.
	Served []Note
	// Conflicts are entries of the same name, registered by another
	// tool, that do not serve the architecture: left alone (without
	// Replace), with why.
	Conflicts []Note
	Skipped   []Note   // native architectures, absent emulators (with "all")
	Refused   []Note   // emulators that cannot take the flags (with "all")
	Persisted []string // files written
	// PersistFailed are the binfmt.d files --persist did not write: one
	// another tool or the administrator wrote, or an error.
	PersistFailed []Note
	Warnings      []string
	// Choices are the emulators chosen among several candidates (or
	// pinned), with why, by architecture in the order planned.
	Choices []Choice
}

// Degraded reports whether something asked for is not in place: a
// conflict, a failure, a refused emulator or a file not persisted.
func (r *InstallResult) Degraded() bool {
	if len(r.Refused)+len(r.PersistFailed)+len(r.Conflicts) > 0 {
		return true
	}
	for _, c := range r.Changes {
		if c.Action == binfmt.Failed {
			return true
		}
	}
	return false
}

// Plan resolves the options to the handler specs Install would register,
// checking every input first. It changes nothing.
func (h Host) Plan(ctx context.Context, opt InstallOptions) ([]binfmt.Spec, *InstallResult, error) {
	res := &InstallResult{}
	if len(opt.Arches) == 0 {
		return nil, nil, inputErr("no architecture given: name some (arm64, riscv64, linux/arm/v7, …) or say all")
	}
	var flags binfmt.Flags
	if opt.Flags != "" {
		f, err := binfmt.ParseFlags(opt.Flags)
		if err != nil {
			return nil, nil, &InputError{Err: fmt.Errorf("--flags: %w", err)}
		}
		flags = f
		if f.Has(binfmt.Credentials) {
			res.Warnings = append(res.Warnings, "flag C: setuid and setgid programs will run the emulator with their privileges (as root for setuid-root programs); use it only if you need setuid programs under emulation")
		}
	}
	all := false
	var arches []binfmt.Arch
	for _, n := range opt.Arches {
		if n == "all" {
			all = true
			continue
		}
		a, err := binfmt.Lookup(n)
		if err != nil {
			return nil, nil, &InputError{Err: err}
		}
		arches = append(arches, a)
	}
	explicit := map[string]bool{}
	for _, a := range arches {
		explicit[a.Name] = true
	}
	if all {
		for a := range binfmt.All() {
			if !explicit[a.Name] {
				arches = append(arches, a)
			}
		}
	}
	var names []string
	var wanted []binfmt.Arch
	seen := map[string]bool{}
	for _, a := range arches {
		if seen[a.Name] {
			continue
		}
		seen[a.Name] = true
		if h.isNative(a.Name) && !(opt.EmulateNative && explicit[a.Name] && a.Name != hostArch()) {
			if explicit[a.Name] {
				why := "native on this host: no handler needed"
				if a.Name == hostArch() && opt.EmulateNative {
					why = "the host's own architecture: never emulated (every program of the host would run under QEMU)"
				}
				res.Skipped = append(res.Skipped, Note{a.Name, why})
			}
			continue
		}
		names = append(names, a.Name)
		wanted = append(wanted, a)
	}
	if err := h.checkEmulatorDirs(); err != nil {
		return nil, nil, err
	}
	pins, err := resolvePins(opt.Emulators)
	if err != nil {
		return nil, nil, err
	}
	// Every candidate (qemu-<arch>-static and qemu-<arch> in each
	// directory, and a pin) that anyone but root could replace is
	// refused before it ever runs; the others run once (remembered
	// between runs by file identity) for their version (P depends on it)
	// and target (an emulator of another architecture is refused). Of
	// several, each is proved in a private instance and one that works
	// is chosen.
	versions, err := h.versionCache()
	if err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}
	defer func() {
		if err := versions.Save(); err != nil {
			res.Warnings = append(res.Warnings, "save the emulator versions: "+err.Error())
		}
	}()
	retry := map[string]bool{}
	for _, a := range opt.Retry {
		retry[a] = true
	}
	cands, choices, warnings := h.chooseEmulators(ctx, names, versions, chooseOptions{
		Pins: pins, How: opt.Choice, Retry: retry, Trial: opt.Trial,
		FixBinary: opt.Flags == "" || flags.Has(binfmt.FixBinary),
	})
	// An emulator whose version cannot be read is registered without
	// P, and its target is not checked.
	res.Warnings = append(res.Warnings, warnings...)
	var specs []binfmt.Spec
	for _, a := range wanted {
		cs := cands[a.Name]
		if len(cs) == 0 {
			if explicit[a.Name] {
				_, err := emulator.Find(a.Name, h.EmulatorDirs)
				return nil, nil, &InputError{Err: err}
			}
			res.Skipped = append(res.Skipped, Note{a.Name, NoEmulator})
			continue
		}
		ch := choices[a.Name]
		pinned := cs[0].Source == emulator.SourcePin
		if ch.Path == "" {
			var why []error
			for _, c := range cs {
				why = append(why, c.Refused)
				if pinned {
					break
				}
			}
			if explicit[a.Name] || pinned {
				return nil, nil, &InputError{Err: errors.Join(why...)}
			}
			res.Refused = append(res.Refused, Note{a.Name, ch.Reason})
			continue
		}
		if len(cs) > 1 || pinned {
			res.Choices = append(res.Choices, ch)
		}
		var e *emulator.Emulator
		for i := range cs {
			if cs[i].Path == ch.Path {
				e = &cs[i].Emulator
			} else if !cs[i].Usable() && !pinned {
				res.Warnings = append(res.Warnings, fmt.Sprintf("qemu-%s: candidate %s refused: %v", a.Name, cs[i].Path, cs[i].Refused))
			}
		}
		f := flags
		if opt.Flags == "" {
			f = binfmt.FixBinary
			if emulator.PreservesArgv0(e.Version) {
				f |= binfmt.PreserveArgv0
			}
		}
		if f.Has(binfmt.FixBinary) {
			if err := e.CheckFixBinary(); err != nil {
				if explicit[a.Name] {
					return nil, nil, &InputError{Err: err}
				}
				res.Refused = append(res.Refused, Note{a.Name, err.Error()})
				continue
			}
		}
		specs = append(specs, a.Spec(e.Path, f))
	}
	return specs, res, nil
}

// Install registers the handlers opt asks for: it plans (so bad input
// changes nothing), mounts binfmt_misc if needed (on an empty directory
// only), applies the specs and persists them when asked. An entry of the
// same name that another tool registered and that serves the architecture
// (see [Host.Judge]) is left alone and reported in Served, unless
// opt.Replace. Install goes on past the failures of single handlers and
// files and reports each.
func (h Host) Install(ctx context.Context, opt InstallOptions) (*InstallResult, error) {
	dir := h.Mount.Path("")
	// A directory binfmt_misc must not be mounted on is refused before
	// anything, the emulators' caches included, is written.
	if err := binfmt.CheckMountPoint(filepath.Clean(dir)); err != nil {
		var mp *binfmt.MountPointError
		if !errors.As(err, &mp) || mp.Reason != "does not exist" {
			return nil, err
		}
	}
	specs, res, err := h.Plan(ctx, opt)
	if err != nil {
		return nil, err
	}
	if res.Mounted, err = binfmt.EnsureMounted(filepath.Clean(dir)); err != nil {
		return nil, err
	}
	changes, err := h.Mount.Apply(specs, binfmt.ApplyOptions{Replace: opt.Replace})
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if c.Action == binfmt.Conflict {
			a, _ := binfmt.ArchByName(c.Spec.Name)
			if j := h.Judge(a, *c.Old, nil); j.Serves {
				res.Served = append(res.Served, Note{a.Name, j.Detail})
			} else {
				res.Conflicts = append(res.Conflicts, Note{a.Name, j.Detail})
			}
			continue
		}
		res.Changes = append(res.Changes, c)
	}
	if opt.Persist {
		for _, c := range res.Changes {
			if c.Action == binfmt.Failed {
				continue
			}
			p, err := binfmt.Persist(h.PersistDir, c.Spec)
			if err != nil {
				a, _ := binfmt.ArchByName(c.Spec.Name)
				res.PersistFailed = append(res.PersistFailed, Note{a.Name, err.Error()})
				continue
			}
			res.Persisted = append(res.Persisted, p)
		}
	}
	return res, nil
}

// UninstallResult is what Uninstall did.
type UninstallResult struct {
	Removed   []string // entries removed
	Absent    []string // architectures with no entry (or removed meanwhile)
	Kept      []Note   // entries that are not mabd's, left alone
	Unpersist []string // binfmt.d files removed
	// KeptFiles are binfmt.d files of those names that mabd did not
	// write: never removed.
	KeptFiles []string
	// Failed are the entries and files that could not be removed, with
	// the error.
	Failed []Note
}

// Changed reports whether Uninstall removed anything.
func (r *UninstallResult) Changed() bool { return len(r.Removed)+len(r.Unpersist) > 0 }

// Degraded reports whether something asked for was not done: an entry
// left alone, or a failure.
func (r *UninstallResult) Degraded() bool { return len(r.Kept)+len(r.Failed) > 0 }

// Uninstall removes mabd's handlers for the named architectures ("all":
// every one in the table) and the binfmt.d files --persist wrote. An entry
// of the same name is mabd's when its magic and mask are the table's and
// its interpreter is a qemu-<arch>[-static]; others are kept unless force.
// Files mabd did not write are never removed. It goes on past the failure
// of one entry or file, reporting each; an entry that disappears meanwhile
// (a concurrent uninstall) counts as absent.
func (h Host) Uninstall(names []string, force bool) (*UninstallResult, error) {
	if len(names) == 0 {
		return nil, inputErr("no architecture given: name some (arm64, riscv64, …) or say all")
	}
	var arches []binfmt.Arch
	for _, n := range names {
		if n == "all" {
			arches = binfmt.Arches()
			break
		}
		a, err := binfmt.Lookup(n)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		arches = append(arches, a)
	}
	if err := h.Mount.Check(); err != nil {
		return nil, err
	}
	res := &UninstallResult{}
	for _, a := range arches {
		h.uninstall(a, force, res)
	}
	return res, nil
}

func (h Host) uninstall(a binfmt.Arch, force bool, res *UninstallResult) {
	e, err := h.Mount.Entry(a.HandlerName())
	if err == nil && !force && !IsOurs(e.Spec, a) {
		res.Kept = append(res.Kept, Note{a.Name, fmt.Sprintf("%s is not mabd's (interpreter %s, flags %q)", e.Name, e.Interpreter, e.Flags.String())})
		return
	}
	if err == nil {
		// Gone meanwhile (a concurrent uninstall) is as good as removed
		// by us: absent.
		if err = h.Mount.Remove(e.Name); err == nil {
			res.Removed = append(res.Removed, e.Name)
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		res.Absent = append(res.Absent, a.Name)
	case err != nil:
		res.Failed = append(res.Failed, Note{a.Name, err.Error()})
		return
	}
	removed, err := binfmt.Unpersist(h.PersistDir, a.HandlerName())
	var foreign *binfmt.ForeignFileError
	switch {
	case errors.As(err, &foreign):
		res.KeptFiles = append(res.KeptFiles, foreign.Path)
	case err != nil:
		res.Failed = append(res.Failed, Note{a.Name, err.Error()})
	case removed:
		res.Unpersist = append(res.Unpersist, binfmt.PersistPath(h.PersistDir, a.HandlerName()))
	}
}

// IsOurs reports whether an entry looks like the handler mabd registers for
// a: the table's magic and mask, and an interpreter named qemu-<arch> or
// qemu-<arch>-static, whatever its flags and directory.
func IsOurs(s binfmt.Spec, a binfmt.Arch) bool {
	want := a.Spec(s.Interpreter, s.Flags)
	base := filepath.Base(s.Interpreter)
	return binfmt.Same(s, want) && (base == "qemu-"+a.Name || base == "qemu-"+a.Name+"-static")
}

// sortedKeys returns a map's keys in order.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// NoEmulator is the reason Install gives for skipping an architecture of
// "all" whose emulator is not installed.
const NoEmulator = "no emulator installed"
