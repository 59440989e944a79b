package userns

// Subordinate ids: an ordinary user's namespace maps its own id to root
// and the ranges /etc/subuid and /etc/subgid give it to the ids after, as
// newuidmap(1) and newgidmap(1) (Debian's uidmap) may write for it.

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"mabd/internal/safefile"
)

// The files of subordinate ids and the tools that map them.
const (
	SubUIDFile = "/etc/subuid"
	SubGIDFile = "/etc/subgid"
	NewUIDMap  = "newuidmap"
	NewGIDMap  = "newgidmap"
	// UIDMapPackage is the Debian package of newuidmap and newgidmap.
	UIDMapPackage = "uidmap"
)

// maxSubIDFile bounds what is read of /etc/subuid and /etc/subgid.
const maxSubIDFile = 4 << 20

// IDRange is a range of ids: Count ids from Start.
type IDRange struct {
	Start, Count int
}

// SubIDs are an ordinary user's ids and subordinate id ranges: in a
// namespace made with them ([Spec.Subordinate]) the user's uid and gid are
// 0, and the subordinate ranges follow from 1 on, as rootless containers
// have them.
type SubIDs struct {
	User       string // the user's name, for messages
	UID, GID   int
	UIDs, GIDs []IDRange
}

// NoSubIDsError says that a user has no subordinate id range in File: an
// administrator gives one with usermod --add-subuids/--add-subgids.
type NoSubIDsError struct {
	User string
	File string // SubUIDFile or SubGIDFile
}

func (e *NoSubIDsError) Error() string {
	return fmt.Sprintf("%s has no subordinate id range in %s", e.User, e.File)
}

// MissingToolError says that newuidmap or newgidmap is not installed.
type MissingToolError struct {
	Tool    string
	Package string
	Err     error
}

func (e *MissingToolError) Error() string { return e.Tool + ": " + e.Err.Error() }
func (e *MissingToolError) Unwrap() error { return e.Err }

// LookupSubIDs returns u's subordinate ids from /etc/subuid and
// /etc/subgid (entries by name or by numeric id). A user without a range
// in one of them is a *NoSubIDsError.
func LookupSubIDs(u *user.User) (SubIDs, error) {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return SubIDs{}, fmt.Errorf("user %s: ids %q and %q are not numbers", u.Username, u.Uid, u.Gid)
	}
	s := SubIDs{User: u.Username, UID: uid, GID: gid}
	var err error
	if s.UIDs, err = readSubIDs(SubUIDFile, u.Username, u.Uid); err != nil {
		return SubIDs{}, err
	}
	if s.GIDs, err = readSubIDs(SubGIDFile, u.Username, u.Uid); err != nil {
		return SubIDs{}, err
	}
	return s, nil
}

// readSubIDs returns the ranges of the user called name (or of uid) in
// file; none is a *NoSubIDsError.
func readSubIDs(file, name, uid string) ([]IDRange, error) {
	b, err := safefile.Read(file, maxSubIDFile, safefile.Options{})
	if errors.Is(err, syscall.ENOENT) {
		return nil, &NoSubIDsError{User: name, File: file}
	}
	if err != nil {
		return nil, err
	}
	rs := parseSubIDs(string(b), name, uid)
	if len(rs) == 0 {
		return nil, &NoSubIDsError{User: name, File: file}
	}
	return rs, nil
}

// parseSubIDs returns the ranges of name (or uid) in the text of a subuid
// or subgid file: lines "owner:start:count".
func parseSubIDs(text, name, uid string) []IDRange {
	var out []IDRange
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || (f[0] != name && f[0] != uid) {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || start < 0 || count <= 0 {
			continue
		}
		out = append(out, IDRange{Start: start, Count: count})
	}
	return out
}

// mapArgs returns newuidmap's (newgidmap's) arguments after the pid: the
// user's own id to 0, then each range after the last.
func mapArgs(own int, ranges []IDRange) []string {
	args := []string{"0", strconv.Itoa(own), "1"}
	inside := 1
	for _, r := range ranges {
		args = append(args, strconv.Itoa(inside), strconv.Itoa(r.Start), strconv.Itoa(r.Count))
		inside += r.Count
	}
	return args
}

// CheckTools returns a *MissingToolError unless newuidmap and newgidmap
// are installed.
func CheckTools() error {
	_, err := SubIDs{}.tools()
	return err
}

// tools returns the paths of newuidmap and newgidmap, or a
// *MissingToolError.
func (s SubIDs) tools() ([2]string, error) {
	var out [2]string
	for i, tool := range []string{NewUIDMap, NewGIDMap} {
		path, err := exec.LookPath(tool)
		if err != nil {
			return out, &MissingToolError{Tool: tool, Package: UIDMapPackage, Err: err}
		}
		out[i] = path
	}
	return out, nil
}

// writeMaps maps the ids of the user namespace of pid with newuidmap and
// newgidmap.
func (s SubIDs) writeMaps(pid int) error {
	tools, err := s.tools()
	if err != nil {
		return err
	}
	for i, m := range []struct {
		own    int
		ranges []IDRange
	}{{s.UID, s.UIDs}, {s.GID, s.GIDs}} {
		path := tools[i]
		args := append([]string{strconv.Itoa(pid)}, mapArgs(m.own, m.ranges)...)
		if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", path, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
