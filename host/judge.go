package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"mabd/binfmt"
	"mabd/emulator"
)

// DefaultConfDirs are the directories systemd-binfmt reads binfmt.d files
// from, in its order of precedence: a file in an earlier one overrides a
// file of the same name in a later one (so mabd's --persist files in
// /etc/binfmt.d override Debian's in /usr/lib/binfmt.d at boot).
var DefaultConfDirs = []string{"/etc/binfmt.d", "/run/binfmt.d", "/usr/local/lib/binfmt.d", "/usr/lib/binfmt.d"}

// binfmtSupportDir is where Debian's update-binfmts (binfmt-support)
// records the formats it registers.
const binfmtSupportDir = "/var/lib/binfmts"

// Defects of an entry: the first words of [Judgement.Reason] when it does
// not serve its architecture, followed by ": " and the details.
const (
	DefectSelectsOther = "selects other programs"        // its magic wants other bytes than the architecture's programs have
	DefectNarrowMask   = "mask rejects valid programs"   // it checks bits that vary among the architecture's programs
	DefectTooBroad     = "selects other architectures"   // it also takes another architecture's programs
	DefectDisabled     = "disabled"                      // the entry is disabled
	DefectMissing      = "interpreter missing"           // its interpreter does not exist
	DefectNotEmulator  = "interpreter not an emulator"   // not a regular file, or not an ELF executable
	DefectUntrusted    = "interpreter not trusted"       // someone but root could replace it
	DefectNoFixBinary  = "registered without the F flag" // not reachable in chroots and containers
	DefectDynamic      = "interpreter dynamically linked"
	DefectFailedVerify = "fails verification" // its last verification failed
)

// Judgement is what [Host.Judge] found about an entry registered under an
// architecture's handler name.
type Judgement struct {
	// Ours: mabd registered it (see [IsOurs]).
	Ours bool
	// Owner says who registered it, as far as the host shows: "mabd",
	// "systemd-binfmt (/usr/lib/binfmt.d/qemu-aarch64.conf)",
	// "update-binfmts (/var/lib/binfmts/qemu-aarch64)" or "another tool".
	Owner string
	// Serves: the entry runs every program of the architecture, in
	// chroots and containers too, through a trusted static emulator, and
	// its last verification (if any is current) passed.
	Serves bool
	// Reason is why it does not serve (one of the Defect constants,
	// followed by details), "" when it does.
	Reason string
	// Detail is one line for a person: who registered it and, when it
	// serves, that it does.
	Detail string
}

// Judge inspects e, an entry registered under a's handler name, and says
// whether it serves a's programs as mabd's own handler would: it selects
// every program of a and no other architecture's, it is enabled, it has
// the F flag with a static, trusted interpreter that exists, and, when
// last holds a verification of a made through this very entry, that
// verification passed. Entries of other tools (Debian's systemd-binfmt
// entries, binfmt-support's, tonistiigi/binfmt's) that serve are as good
// as mabd's; those that do not are conflicts, with the Reason.
func (h Host) Judge(a binfmt.Arch, e binfmt.Entry, last *Verification) Judgement {
	j := Judgement{Ours: IsOurs(e.Spec, a)}
	j.Owner = h.owner(a, e, j.Ours)
	j.Reason = h.defect(a, e, j.Ours)
	if j.Reason == "" {
		if r := last.current(a, &e); r != nil && r.State == emulator.StateFailed {
			j.Reason = DefectFailedVerify + ": " + r.Reason
		}
	}
	j.Serves = j.Reason == ""
	switch {
	case j.Serves && !j.Ours:
		j.Detail = fmt.Sprintf("served by %s: it runs every %s program, in containers too", j.Owner, platformOrName(a))
	case !j.Serves:
		j.Detail = fmt.Sprintf("registered by %s with interpreter %s and flags %q: %s", j.Owner, e.Interpreter, e.Flags.String(), j.Reason)
	}
	return j
}

// defect returns why e does not serve a, judged from the table and the
// files alone, or "".
func (h Host) defect(a binfmt.Arch, e binfmt.Entry, ours bool) string {
	want := a.Spec(e.Interpreter, e.Flags)
	if ok, n := e.Covers(want); !ok {
		if n == nil || n.Differs {
			return fmt.Sprintf("%s: %s", DefectSelectsOther, binfmt.Diff(e.Spec, want))
		}
		return fmt.Sprintf("%s: at byte %d (%s) its mask %#02x checks bits that vary among %s programs%s", DefectNarrowMask, n.Offset, elfField(n.Offset), n.Mask, platformOrName(a), refusedAt(n))
	}
	for o := range binfmt.All() {
		if o.Name != a.Name && e.Matches(o.Magic) {
			return fmt.Sprintf("%s: it also takes %s programs", DefectTooBroad, platformOrName(o))
		}
	}
	fi, err := os.Stat(e.Interpreter)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s: %s does not exist", DefectMissing, e.Interpreter)
	case err != nil:
		return fmt.Sprintf("%s: %v", DefectMissing, err)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s: %s is not a regular file", DefectNotEmulator, e.Interpreter)
	}
	if err := emulator.CheckTrusted(e.Interpreter); err != nil {
		return fmt.Sprintf("%s: %v", DefectUntrusted, err)
	}
	if !e.Enabled {
		return DefectDisabled
	}
	if ours {
		// mabd's own entries carry the flags they were asked for.
		return ""
	}
	if !e.Flags.Has(binfmt.FixBinary) {
		return fmt.Sprintf("%s: the kernel looks for %s inside each program's root, so %s programs fail with ENOENT in containers and chroots (BuildKit's RUN steps)", DefectNoFixBinary, e.Interpreter, platformOrName(a))
	}
	static, err := emulator.IsStatic(e.Interpreter)
	switch {
	case err != nil:
		return fmt.Sprintf("%s: %v", DefectNotEmulator, err)
	case !static:
		return fmt.Sprintf("%s: with F the kernel runs %s inside containers, where its shared libraries are missing", DefectDynamic, e.Interpreter)
	}
	return ""
}

// owner says who registered e, as far as the host shows it.
func (h Host) owner(a binfmt.Arch, e binfmt.Entry, ours bool) string {
	dirs := h.ConfDirs
	if dirs == nil {
		dirs = DefaultConfDirs
	}
	// systemd-binfmt reads the first file of a name among its
	// directories.
	for _, d := range dirs {
		p := filepath.Join(d, e.Name+".conf")
		specs, err := binfmt.ReadConf(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		for _, s := range specs {
			if s.Name == e.Name && binfmt.Same(e.Spec, s) {
				if binfmt.WrittenByMabd(p) {
					return "mabd (--persist)"
				}
				return "systemd-binfmt (" + p + ")"
			}
		}
		break
	}
	if ours {
		return "mabd"
	}
	p := filepath.Join(binfmtSupportDir, e.Name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return "update-binfmts (" + p + ")"
	}
	return "another tool"
}

// elfField names the ELF header field at byte offset n of a file, for a
// person.
func elfField(n int) string {
	switch {
	case n < 4:
		return "the ELF magic"
	case n == 4:
		return "EI_CLASS"
	case n == 5:
		return "EI_DATA"
	case n == 6:
		return "EI_VERSION"
	case n == 7:
		return "EI_OSABI"
	case n == 8:
		return "EI_ABIVERSION"
	case n < 16:
		return "EI_PAD"
	case n < 18:
		return "e_type"
	case n < 20:
		return "e_machine"
	}
	return "the header's flags"
}

// platformOrName is a's OCI platform, or its QEMU name when it has none.
func platformOrName(a binfmt.Arch) string {
	if a.Platform != "" {
		return a.Platform
	}
	return a.Name
}

// refusedAt says which valid programs a narrowing refuses, where it is
// known.
func refusedAt(n *binfmt.Narrowing) string {
	if n.Offset == 8 && n.Want&n.Extra == 0 {
		return fmt.Sprintf(": those of ABI version %d and above are refused", int(n.Extra&-n.Extra))
	}
	return ""
}
