package plan

import (
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/task"
)

// active returns the requirements in force for in when it is at its new version (changed) or
// its installed one.
func active(in *inst, changed bool) []requirement {
	if changed && in.step != nil {
		return in.step.reqs()
	}
	return in.oldReqs()
}

func requirer(in *inst, changed bool) string {
	if changed && in.step != nil {
		if in.step.rec != nil {
			return in.name + " at " + in.step.rec.label()
		}
		return in.name + " at " + in.step.to.Raw
	}
	var ids []string
	for _, r := range in.oldRecs {
		ids = append(ids, r.fw.ID)
	}
	return in.name + " at " + in.c.Version + " (firmware " + strings.Join(ids, ", ") + ")"
}

// versionOf returns in's version in a state where changed says whether it has been flashed.
func versionOf(in *inst, changed bool) (firmware.Version, error) {
	if changed && in.step != nil {
		return in.step.to, in.step.toErr
	}
	return in.old, in.oldErr
}

func check(c firmware.Constraint, v firmware.Version, verr error) (bool, error) {
	if verr != nil {
		return false, verr
	}
	return c.Check(v)
}

type bound struct {
	who *inst // the requirer, at its final version
	c   firmware.Constraint
}

// unsatisfiable refuses when two requirements in force after the plan admit no common known
// version (catalog images, the installed and the planned version) of the component they constrain.
func (pl *planning) unsatisfiable() error {
	e := refuse(task.CodeUnsatisfiable, "requirements on one component admit no common version")
	for _, j := range pl.insts {
		var bs []bound
		touched := []bool{}
		for _, i := range pl.insts {
			if i == j {
				continue
			}
			for _, q := range active(i, true) {
				if q.err == nil && q.slug == j.slug {
					bs = append(bs, bound{i, q.c})
					touched = append(touched, i.step != nil || j.step != nil)
				}
			}
		}
		if len(bs) < 2 {
			continue
		}
		cands := []firmware.Version{}
		if j.oldErr == nil {
			cands = append(cands, j.old)
		}
		if j.step != nil && j.step.toErr == nil {
			cands = append(cands, j.step.to)
		}
		for _, r := range j.recs {
			if r.bad == nil && r.scheme == j.scheme {
				cands = append(cands, r.ver)
			}
		}
		ok := func(c firmware.Constraint, v firmware.Version) bool { s, err := c.Check(v); return err == nil && s }
		for a := range bs {
			for b := a + 1; b < len(bs); b++ {
				if !touched[a] && !touched[b] {
					continue
				}
				alone, both := [2]bool{}, false
				for _, v := range cands {
					x, y := ok(bs[a].c, v), ok(bs[b].c, v)
					alone[0] = alone[0] || x
					alone[1] = alone[1] || y
					both = both || x && y
				}
				if alone[0] && alone[1] && !both {
					e.with(requirer(bs[a].who, true), "requires %s %s", j.name, bs[a].c.Raw)
					e.with(requirer(bs[b].who, true), "requires %s %s, and no known version of %s satisfies both", j.name, bs[b].c.Raw, j.name)
					return e
				}
			}
		}
	}
	return nil
}

// simulate applies the ordered steps one by one to a copy of the installed state and checks
// every requirement in force against every state. Violations that involve no flashed component
// were there before the plan and are not the plan's to refuse.
func (pl *planning) simulate(order []*step) error {
	changed := make([]bool, len(pl.insts))
	for k, s := range order {
		if changed[s.in.pos] {
			return refuse(task.CodeDependencyCycle, "%s would change twice", s.in.name)
		}
		for _, q := range s.reqs() {
			if q.err != nil {
				return refuse(task.CodeInvalidRequest, "firmware %s: requirement %s: %v", s.rec.fw.ID, q.c.Raw, q.err)
			}
			if q.slug != s.in.slug {
				continue
			}
			// A requirement on the component itself is a precondition on the version it is
			// flashed from.
			ok, err := check(q.c, s.in.old, s.in.oldErr)
			if err != nil || !ok {
				e := refuse(task.CodeConstraintViolated, "step %d (%s) is not allowed from the installed version", k+1, s.label())
				e.with(requirer(s.in, true), "requires %s %s before it is installed; installed %s%s", s.in.name, q.c.Raw, s.in.c.Version, errNote(err))
				return e
			}
		}
		changed[s.in.pos] = true
		if e := pl.violations(changed); e != nil {
			e.Message = fmt.Sprintf("after step %d (%s) a requirement is broken", k+1, s.label())
			return e
		}
	}
	return nil
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func (pl *planning) violations(changed []bool) *Error {
	var e *Error
	for _, i := range pl.insts {
		ci := changed[i.pos]
		for _, q := range active(i, ci) {
			if q.err != nil || q.slug == i.slug {
				continue
			}
			found := false
			for _, j := range pl.bySlug[q.slug] {
				found = true
				if !ci && !changed[j.pos] {
					continue
				}
				v, verr := versionOf(j, changed[j.pos])
				ok, err := check(q.c, v, verr)
				if err == nil && ok {
					continue
				}
				if e == nil {
					e = &Error{Code: task.CodeConstraintViolated}
					if err != nil {
						e.Code = task.CodeUnorderableVersion
					}
				}
				e.with(requirer(i, ci), "requires %s %s; it would be at %s%s", j.name, q.c.Raw, v.Raw, errNote(err))
			}
			if !found && ci {
				if e == nil {
					e = &Error{Code: task.CodeConstraintViolated}
				}
				e.with(requirer(i, true), "requires %s %s; the server has no %s", q.name, q.c.Raw, q.name)
			}
		}
	}
	return e
}
