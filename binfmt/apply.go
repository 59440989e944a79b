package binfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Action is what Apply did, or would not do, for one handler.
type Action string

// The actions of Apply.
const (
	Registered Action = "registered" // it was missing and is now registered
	Unchanged  Action = "unchanged"  // an equal entry was there: adopted as is
	Enabled    Action = "enabled"    // an equal but disabled entry was enabled
	Replaced   Action = "replaced"   // a different entry of that name was replaced
	Conflict   Action = "conflict"   // a different entry of that name was left alone
	Failed     Action = "failed"     // the kernel refused; see Err
)

// Change reports what Apply did for one spec.
type Change struct {
	Spec   Spec
	Action Action
	// Old is the entry that was there before, if any.
	Old *Entry
	// Err is set when Action is Failed.
	Err error
}

// Describe returns one line for a person: what was done and, for a
// conflict, what differs.
func (c Change) Describe() string {
	switch c.Action {
	case Conflict:
		return fmt.Sprintf("%s: conflict: an entry with %s is registered; left alone", c.Spec.Name, Diff(c.Old.Spec, c.Spec))
	case Replaced:
		return fmt.Sprintf("%s: replaced the entry with %s", c.Spec.Name, Diff(c.Old.Spec, c.Spec))
	case Failed:
		return fmt.Sprintf("%s: failed: %v", c.Spec.Name, c.Err)
	case Unchanged:
		return c.Spec.Name + ": already registered, unchanged"
	}
	return fmt.Sprintf("%s: %s (%s, flags %q)", c.Spec.Name, c.Action, c.Spec.Interpreter, c.Spec.Flags.String())
}

// ApplyOptions say how Apply treats an entry that differs from the spec.
type ApplyOptions struct {
	// Replace removes a conflicting entry of the same name and registers
	// the spec instead. Without it a conflict is reported and left alone.
	Replace bool
	// ReplaceIf, when set, also replaces the differing entries it returns
	// true for (the daemon's own handlers whose definition changed).
	ReplaceIf func(existing Spec) bool
}

// Apply makes every spec registered in m: it registers what is missing,
// adopts equal entries (enabling them if disabled), and reports or (with
// Replace) replaces entries of the same name that differ. Every spec is
// validated before anything is written, so bad input changes nothing. A
// failed replacement puts the old entry back.
func (m Mount) Apply(specs []Spec, opt ApplyOptions) ([]Change, error) {
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	out := make([]Change, 0, len(specs))
	for _, s := range specs {
		out = append(out, m.apply(s, opt))
	}
	return out, nil
}

func (m Mount) apply(s Spec, opt ApplyOptions) Change {
	c := Change{Spec: s}
	old, err := m.Entry(s.Name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := m.Register(s); err != nil {
			c.Action, c.Err = Failed, err
		} else {
			c.Action = Registered
		}
		return c
	case err != nil:
		c.Action, c.Err = Failed, err
		return c
	}
	c.Old = &old
	if Same(old.Spec, s) {
		c.Action = Unchanged
		if !old.Enabled {
			c.Action = Enabled
			if err := m.Enable(s.Name); err != nil {
				c.Action, c.Err = Failed, err
			}
		}
		return c
	}
	if !opt.Replace && (opt.ReplaceIf == nil || !opt.ReplaceIf(old.Spec)) {
		c.Action = Conflict
		return c
	}
	if err := m.Remove(s.Name); err != nil {
		c.Action, c.Err = Failed, err
		return c
	}
	if err := m.Register(s); err != nil {
		c.Action, c.Err = Failed, err
		if rerr := m.Register(old.Spec); rerr != nil {
			c.Err = fmt.Errorf("%w; restoring the old entry failed too: %v", err, rerr)
		} else if !old.Enabled {
			_ = m.Disable(s.Name)
		}
		return c
	}
	c.Action = Replaced
	return c
}

// Same reports whether a registered entry is the handler s describes:
// the same type, offset, magic, mask and flags, and an interpreter that is
// the same file (a symlink to it counts). This is how mabd decides to
// adopt an entry rather than call it a conflict.
func Same(entry, s Spec) bool {
	if entry.Type != s.Type || entry.Offset != s.Offset || entry.Flags.normalize() != s.Flags.normalize() ||
		!bytes.Equal(entry.Magic, s.Magic) || !bytes.Equal(entry.Mask, s.Mask) {
		return false
	}
	return SameFile(entry.Interpreter, s.Interpreter)
}

// SameFile reports whether two interpreter paths name the same file.
func SameFile(a, b string) bool {
	if a == b {
		return true
	}
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ia, ib)
}

// Diff says how have differs from want, for a person.
func Diff(have, want Spec) string {
	var d []string
	if !SameFile(have.Interpreter, want.Interpreter) {
		d = append(d, fmt.Sprintf("interpreter %s (want %s)", have.Interpreter, want.Interpreter))
	}
	if have.Flags.normalize() != want.Flags.normalize() {
		d = append(d, fmt.Sprintf("flags %q (want %q)", have.Flags.String(), want.Flags.String()))
	}
	if have.Type != want.Type || have.Offset != want.Offset || !bytes.Equal(have.Magic, want.Magic) {
		d = append(d, fmt.Sprintf("magic %x at offset %d (want %x at %d)", have.Magic, have.Offset, want.Magic, want.Offset))
	}
	if !bytes.Equal(have.Mask, want.Mask) {
		d = append(d, fmt.Sprintf("mask %x (want %x)", have.Mask, want.Mask))
	}
	if len(d) == 0 {
		return "the same definition"
	}
	s := d[0]
	for _, x := range d[1:] {
		s += ", " + x
	}
	return s
}
