package host

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
	Repairs []Repair `json:"repairs"`
	// Served are entries of other tools that serve their architecture,
	// left alone (see [Host.Judge]), with who registered them.
	Served []string `json:"served,omitempty"`
	// Conflicts are entries left alone that do not serve their
	// architecture, with why.
	Conflicts []string `json:"conflicts"`
	Failures  []string `json:"failures"` // what could not be done, with why
}

// Policy says what Reconcile does with an entry of the same name that is
// not the one mabd would register.
type Policy string

// The policies.
const (
	// PolicyKeep leaves other tools' entries alone; those that do not serve
	// their architecture are reported as conflicts.
	PolicyKeep Policy = "keep"
	// PolicyRepair leaves other tools' entries that serve their architecture
	// alone and replaces those that do not (a mask that refuses valid
	// programs, no F flag, a missing or failing interpreter).
	PolicyRepair Policy = "repair"
	// PolicyReplace replaces every entry of the name that is not mabd's own.
	PolicyReplace Policy = "replace"
)

// Reconcile makes the handlers in specs registered, enabled and equal to
// the spec, with binfmt's Apply, judging what is registered with
// [Host.Judge] (last is the last verification, for entries that failed
// it). An entry of the same name that is mabd's (see IsOurs) but differs
// is replaced; one of another tool is left alone when it serves the
// architecture (Served) and otherwise replaced or reported as a conflict,
// as policy says. It is cheap when nothing changed: one read per handler.
func (h Host) Reconcile(specs []binfmt.Spec, policy Policy, last *Verification) Reconciled {
	var r Reconciled
	judge := func(existing binfmt.Spec) Judgement {
		a, _ := binfmt.ArchByName(existing.Name)
		e := binfmt.Entry{Spec: existing, Enabled: true}
		if cur, err := h.Mount.Entry(existing.Name); err == nil {
			e = cur
		}
		return h.Judge(a, e, last)
	}
	replaceIf := func(existing binfmt.Spec) bool {
		j := judge(existing)
		return j.Ours || (policy == PolicyRepair && !j.Serves && j.Reason != DefectDisabled)
	}
	changes, err := h.Mount.Apply(specs, binfmt.ApplyOptions{Replace: policy == PolicyReplace, ReplaceIf: replaceIf})
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
			why := "it had " + binfmt.Diff(c.Old.Spec, c.Spec)
			if j := judge(c.Old.Spec); !j.Ours {
				why = "the entry " + j.Detail
			}
			r.Repairs = append(r.Repairs, Repair{c.Spec.Name, "replaced", why})
		case binfmt.Conflict:
			j := judge(c.Old.Spec)
			if j.Serves {
				r.Served = append(r.Served, c.Spec.Name+": "+j.Detail)
				continue
			}
			r.Conflicts = append(r.Conflicts, fmt.Sprintf("%s: %s; left alone (conflict = %q)", c.Spec.Name, j.Detail, string(policy)))
		case binfmt.Failed:
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %v", c.Spec.Name, c.Err))
		}
	}
	return r
}

// RemoveOurs unregisters the entries named in specs that are mabd's (see
// IsOurs), leaving other entries alone; it returns the names removed. An
// entry that is gone already is not an error.
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
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		removed = append(removed, s.Name)
	}
	return removed, errors.Join(errs...)
}
