package task

import (
	"fmt"
	"strings"
)

// Divergence lists how live, a re-plan against the versions the hardware reports when the task
// starts or resumes, departs from p, the plan the operator was shown. A step of p departs when
// live drops it (unless live skips it because its component already is at the step's version:
// done, by this task before a restart or by someone else) or changes it (another version, image
// or install method). A step of live that p does not have departs too: the operator never saw
// it. Order and from-versions may differ. Empty means live does what the operator was shown, or
// less because some of it is done.
func (p *Plan) Divergence(live *Plan) []string {
	var out []string
	used := make([]bool, len(live.Steps))
	for _, s := range p.Steps {
		i := findStep(live.Steps, used, s.Component, s.Serial)
		if i < 0 {
			if sk := findSkip(live.Skipped, s.Component, s.Serial); sk != nil && sk.Version == s.ToVersion {
				continue
			} else if sk != nil {
				out = append(out, fmt.Sprintf("%s dropped: %s", s.describe(), sk.Reason))
			} else {
				out = append(out, fmt.Sprintf("%s dropped: the component is not reported", s.describe()))
			}
			continue
		}
		used[i] = true
		l := live.Steps[i]
		switch {
		case l.ToVersion != s.ToVersion:
			out = append(out, fmt.Sprintf("%s changed: now %s", s.describe(), l.describe()))
		case l.Checksum != s.Checksum:
			out = append(out, fmt.Sprintf("%s changed: another image (%s)", s.describe(), l.Checksum))
		case l.Method != s.Method:
			out = append(out, fmt.Sprintf("%s changed: method %s", s.describe(), l.Method))
		}
	}
	for i, l := range live.Steps {
		if !used[i] {
			out = append(out, fmt.Sprintf("%s added: it was not in the plan shown", l.describe()))
		}
	}
	return out
}

// Summary lists the plan's steps in order, e.g. "BMC 6.10→7.00, NIC NIC-A2 21.80→22.31".
func (p *Plan) Summary() string {
	if p == nil || len(p.Steps) == 0 {
		return "no steps"
	}
	s := make([]string, len(p.Steps))
	for i, st := range p.Steps {
		s[i] = st.describe()
	}
	return strings.Join(s, ", ")
}

func (s Step) describe() string {
	n := s.Component
	if s.Serial != "" {
		n += " " + s.Serial
	}
	return n + " " + s.FromVersion + "→" + s.ToVersion
}

// findStep finds the unused step of a component instance: by component and serial, or by
// component alone when each side has only one instance of it (the inventory source and the
// hardware may disagree about a serial the plan does not need).
func findStep(steps []Step, used []bool, component, serial string) int {
	only, n := -1, 0
	for i, s := range steps {
		if used[i] || !strings.EqualFold(s.Component, component) {
			continue
		}
		if s.Serial == serial {
			return i
		}
		only, n = i, n+1
	}
	if n == 1 && (serial == "" || steps[only].Serial == "") {
		return only
	}
	return -1
}

func findSkip(skips []Skip, component, serial string) *Skip {
	for i, s := range skips {
		if strings.EqualFold(s.Component, component) && (s.Serial == serial || serial == "" || s.Serial == "") {
			return &skips[i]
		}
	}
	return nil
}
