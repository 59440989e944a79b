package daemon

import (
	"errors"
	"fmt"
	"io/fs"

	"mabd/binfmt"
)

// Repair is one thing reconcile changed to bring the table back to the
// desired handlers.
type Repair struct {
	Name string `json:"name"`
	// What happened: registered, enabled, replaced or removed.
	Action string `json:"action"`
	// Why, for a person: what was wrong before.
	Why string `json:"why"`
}

// Reconciled is the outcome of one reconcile pass.
type Reconciled struct {
	Repairs   []Repair `json:"repairs"`
	Conflicts []string `json:"conflicts"` // entries left alone (conflict policy keep), with why
	Failures  []string `json:"failures"`  // what could not be done, with why
}

// Reconcile makes the handlers in specs registered, enabled and equal to
// the spec. An entry of the same name that is mabd's (see IsOurs) but
// differs is replaced; one that is someone else's is replaced only with
// replace, and otherwise reported as a conflict and left alone (mabd does
// not fight). It is cheap when nothing changed: one read per handler.
func Reconcile(m binfmt.Mount, specs []binfmt.Spec, replace bool) Reconciled {
	var r Reconciled
	for _, s := range specs {
		e, err := m.Entry(s.Name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := m.Register(s); err != nil {
				r.Failures = append(r.Failures, fmt.Sprintf("%s: register: %v", s.Name, err))
				continue
			}
			r.Repairs = append(r.Repairs, Repair{s.Name, "registered", "it was missing"})
		case err != nil:
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %v", s.Name, err))
		case binfmt.Same(e.Spec, s):
			if e.Enabled {
				continue
			}
			if err := m.Enable(s.Name); err != nil {
				r.Failures = append(r.Failures, fmt.Sprintf("%s: enable: %v", s.Name, err))
				continue
			}
			r.Repairs = append(r.Repairs, Repair{s.Name, "enabled", "it was disabled"})
		default:
			a, _ := binfmt.ArchByName(s.Name)
			if !replace && !IsOurs(e.Spec, a) {
				r.Conflicts = append(r.Conflicts, fmt.Sprintf("%s: an entry with %s is registered; left alone (conflict = \"keep\")", s.Name, binfmt.Diff(e.Spec, s)))
				continue
			}
			why := binfmt.Diff(e.Spec, s)
			if err := m.Remove(s.Name); err != nil {
				r.Failures = append(r.Failures, fmt.Sprintf("%s: remove the changed entry: %v", s.Name, err))
				continue
			}
			if err := m.Register(s); err != nil {
				r.Failures = append(r.Failures, fmt.Sprintf("%s: register: %v", s.Name, err))
				continue
			}
			r.Repairs = append(r.Repairs, Repair{s.Name, "replaced", "it had " + why})
		}
	}
	return r
}

// RemoveOurs unregisters the entries named in specs that are mabd's (see
// IsOurs), leaving other entries alone; it returns the names removed.
func RemoveOurs(m binfmt.Mount, specs []binfmt.Spec) ([]string, error) {
	var removed []string
	var errs []error
	for _, s := range specs {
		e, err := m.Entry(s.Name)
		if err != nil {
			continue
		}
		a, ok := binfmt.ArchByName(s.Name)
		if !ok || !IsOurs(e.Spec, a) {
			continue
		}
		if err := m.Remove(s.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, s.Name)
	}
	return removed, errors.Join(errs...)
}
