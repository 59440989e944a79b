package daemon

import (
	"errors"
	"fmt"

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
// the spec, with binfmt's Apply. An entry of the same name that is mabd's
// (see IsOurs) but differs is replaced; one that is someone else's is
// replaced only with replace, and otherwise reported as a conflict and left
// alone (mabd does not fight). It is cheap when nothing changed: one read
// per handler.
func Reconcile(m binfmt.Mount, specs []binfmt.Spec, replace bool) Reconciled {
	var r Reconciled
	ours := func(existing binfmt.Spec) bool {
		a, ok := binfmt.ArchByName(existing.Name)
		return ok && IsOurs(existing, a)
	}
	changes, err := m.Apply(specs, binfmt.ApplyOptions{Replace: replace, ReplaceIf: ours})
	if err != nil {
		r.Failures = append(r.Failures, err.Error())
		return r
	}
	for _, c := range changes {
		switch c.Action {
		case binfmt.Registered:
			r.Repairs = append(r.Repairs, Repair{c.Spec.Name, "registered", "it was missing"})
		case binfmt.Enabled:
			r.Repairs = append(r.Repairs, Repair{c.Spec.Name, "enabled", "it was disabled"})
		case binfmt.Replaced:
			r.Repairs = append(r.Repairs, Repair{c.Spec.Name, "replaced", "it had " + binfmt.Diff(c.Old.Spec, c.Spec)})
		case binfmt.Conflict:
			r.Conflicts = append(r.Conflicts, fmt.Sprintf("%s: an entry with %s is registered; left alone (conflict = \"keep\")", c.Spec.Name, binfmt.Diff(c.Old.Spec, c.Spec)))
		case binfmt.Failed:
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %v", c.Spec.Name, c.Err))
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
