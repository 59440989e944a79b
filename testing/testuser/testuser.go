// Package testuser makes ordinary users for the tests and the bench of
// rootless mode: useradd with a subordinate id range and a runtime
// directory, then userdel with everything put back as found — the user's
// processes killed (and reported), /etc/subuid and /etc/subgid and their
// backups restored, nothing of someone else's undone.
package testuser

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mabd/testing/procs"
)

// subIDFiles are the files useradd and userdel change for subordinate
// ids, with their backups.
var subIDFiles = []string{"/etc/subuid", "/etc/subgid", "/etc/subuid-", "/etc/subgid-"}

// fileState is a file as it was found: absent, or its bytes and mode.
type fileState struct {
	exists bool
	data   []byte
	mode   os.FileMode
}

func readFileState(p string) (fileState, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return fileState{}, err
	}
	return fileState{exists: true, data: b, mode: fi.Mode().Perm()}, nil
}

// withoutUser returns b without the lines of user name ("name:…").
func withoutUser(b []byte, name string) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) > 0 && !bytes.HasPrefix(l, []byte(name+":")) {
			out = append(out, l...)
		}
	}
	return out
}

// restoreFile puts p back as it was found, after user name was added and
// removed: a file that was absent is removed when it holds nothing else (a
// backup is always removed); one that existed gets its content back when
// all that differs is name's lines. It returns what it could not restore.
func restoreFile(p string, was fileState, name string) string {
	now, err := readFileState(p)
	if err != nil {
		return fmt.Sprintf("%s: %v", p, err)
	}
	backup := strings.HasSuffix(p, "-")
	switch {
	case !was.exists && !now.exists:
		return ""
	case !was.exists:
		if backup || len(bytes.TrimSpace(withoutUser(now.data, name))) == 0 {
			if err := os.Remove(p); err != nil {
				return fmt.Sprintf("%s: %v", p, err)
			}
			return ""
		}
		return fmt.Sprintf("%s did not exist and now lists other users (changed meanwhile by someone else): left", p)
	case !now.exists:
		return fmt.Sprintf("%s was removed", p)
	case bytes.Equal(now.data, was.data) && now.mode == was.mode:
		return ""
	}
	if !backup && !bytes.Equal(withoutUser(now.data, name), was.data) {
		return fmt.Sprintf("%s was changed meanwhile by someone else: left", p)
	}
	// A backup holds what the last useradd or userdel replaced: put back
	// what was there.
	if err := os.WriteFile(p, was.data, was.mode); err != nil {
		return fmt.Sprintf("%s: %v", p, err)
	}
	if err := os.Chmod(p, was.mode); err != nil {
		return fmt.Sprintf("%s: %v", p, err)
	}
	return ""
}

// User is an ordinary user made for a test or the bench.
type User struct {
	Name     string
	UID, GID int
	Home     string
	// Runtime is its XDG_RUNTIME_DIR: a directory of its own, mode 0700.
	Runtime string
	subIDs  map[string]fileState
}

// New creates a user (useradd -m, with more useradd arguments extra) and a
// runtime directory of its own. /etc/subuid and /etc/subgid are created
// empty for it when missing, so that useradd gives it a subordinate id
// range unless extra says otherwise. Remove undoes all of it.
func New(extra ...string) (*User, error) {
	for _, tool := range []string{"useradd", "userdel", "newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%v: apt-get install passwd uidmap", err)
		}
	}
	u := &User{subIDs: map[string]fileState{}}
	for _, f := range subIDFiles {
		st, err := readFileState(f)
		if err != nil {
			return nil, err
		}
		u.subIDs[f] = st
	}
	var b [4]byte
	rand.Read(b[:])
	u.Name = "mabdt" + hex.EncodeToString(b[:])
	for _, f := range subIDFiles[:2] {
		if !u.subIDs[f].exists {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				u.restoreSubIDs()
				return nil, err
			}
		}
	}
	args := append(append([]string{"-m", "-s", "/bin/sh"}, extra...), u.Name)
	if out, err := exec.Command("useradd", args...).CombinedOutput(); err != nil {
		u.restoreSubIDs()
		return nil, fmt.Errorf("useradd %v: %v: %s", args, err, bytes.TrimSpace(out))
	}
	fail := func(err error) (*User, error) {
		u.Remove()
		return nil, err
	}
	pw, err := user.Lookup(u.Name)
	if err != nil {
		return fail(err)
	}
	u.Home = pw.HomeDir
	u.UID, _ = strconv.Atoi(pw.Uid)
	u.GID, _ = strconv.Atoi(pw.Gid)
	if u.Runtime, err = os.MkdirTemp("", "mabd-rt-"); err != nil {
		return fail(err)
	}
	if err := os.Chown(u.Runtime, u.UID, u.GID); err != nil {
		return fail(err)
	}
	if err := os.Chmod(u.Runtime, 0o700); err != nil {
		return fail(err)
	}
	return u, nil
}

// restoreSubIDs puts the subordinate id files back as found; it returns
// what it could not.
func (u *User) restoreSubIDs() []string {
	var problems []string
	for _, f := range subIDFiles {
		if p := restoreFile(f, u.subIDs[f], u.Name); p != "" {
			problems = append(problems, p)
		}
	}
	return problems
}

// Remove kills what is left of the user's processes (by PID), removes the
// user, its home and runtime directory, and puts the subordinate id files
// back as found. It returns what was wrong (processes left, files not
// restored).
func (u *User) Remove() []string {
	var problems []string
	if u.UID > 0 {
		if pids := procs.OfUser(u.UID); len(pids) > 0 {
			problems = append(problems, fmt.Sprintf("processes of %s left (killed): %v", u.Name, pids))
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	if out, err := exec.Command("userdel", "-r", u.Name).CombinedOutput(); err != nil {
		problems = append(problems, fmt.Sprintf("userdel -r %s: %v: %s", u.Name, err, bytes.TrimSpace(out)))
	}
	if u.Home != "" {
		if _, err := os.Lstat(u.Home); err == nil {
			problems = append(problems, fmt.Sprintf("%s left by userdel: removed", u.Home))
			os.RemoveAll(u.Home)
		}
	}
	if u.Runtime != "" {
		os.RemoveAll(u.Runtime)
	}
	return append(problems, u.restoreSubIDs()...)
}

// command returns a command that runs as the user, with its environment.
func (u *User) Command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = u.Home
	cmd.Env = append([]string{"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "XDG_RUNTIME_DIR=" + u.Runtime}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}}
	return cmd
}

// WriteConfig writes the user's ~/.config/mabd/mabd.toml, the user's.
func (u *User) WriteConfig(config string) error {
	dir := filepath.Join(u.Home, ".config", "mabd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(u.Home, ".config"), dir} {
		if err := os.Chown(d, u.UID, u.GID); err != nil {
			return err
		}
	}
	p := filepath.Join(dir, "mabd.toml")
	if err := os.WriteFile(p, []byte(config), 0o644); err != nil {
		return err
	}
	return os.Chown(p, u.UID, u.GID)
}

// HasSubIDs reports whether /etc/subuid gives the user a subordinate id
// range.
func (u *User) HasSubIDs() bool {
	sub, _ := os.ReadFile("/etc/subuid")
	return bytes.Contains(sub, []byte("\n"+u.Name+":")) || bytes.HasPrefix(sub, []byte(u.Name+":"))
}
