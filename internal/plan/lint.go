package plan

import (
	"slices"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// LintError is one problem Lint found in a catalog, tied to the firmware record it concerns so
// that a loader can point at the record's file and line.
type LintError struct {
	FirmwareID string
	Err        *Error
}

func (e *LintError) Error() string { return "firmware " + e.FirmwareID + ": " + e.Err.Error() }

// FirmwareRecord names the record, so that a loader can point at its file and line.
func (e *LintError) FirmwareRecord() string { return e.FirmwareID }

// Unwrap returns the structured refusal.
func (e *LintError) Unwrap() error { return e.Err }

// Lint checks a catalog for what plan time would refuse, so that a catalog is rejected when it
// is loaded rather than when a server needs it:
//   - unknown schemes and versions that do not parse under their scheme;
//   - requirement constraints that do not parse, or that the scheme of any firmware line they
//     may constrain on a server of the record's models cannot check (">=" on an opaque line,
//     a dotted version on a date line);
//   - records of one component line (component, vendor, model) that disagree on the scheme;
//   - duplicates: records of one line and one version whose requirements or order hints
//     differ (AMBIGUOUS_FIRMWARE: plan time cannot know which one is right);
//   - firmware sets that list two versions for one line (AMBIGUOUS_FIRMWARE);
//   - same-target requirement cycles, and cross-target cycles of exact pins among the records
//     of one server model (each requirement met by exactly one image of that model, which in
//     turn requires the first): such images can only be installed together, which sequential
//     flashing cannot do. Records for other models never hide such a cycle.
//
// Cross-target cycles that a server's installed versions may break (">=" constraints met by
// several images) are left to plan time, where they are DEPENDENCY_CYCLE when they bind. Lint
// ends on any input: every loop is bounded by the catalog's size.
func Lint(cat *inventory.Catalog) []error {
	if cat == nil {
		return nil
	}
	l := &linter{ix: newIndex(cat)}
	l.recs = make([]*record, 0, len(cat.Firmware))
	for _, rs := range l.ix.bySlug {
		l.recs = append(l.recs, rs...)
	}
	slices.SortFunc(l.recs, func(a, b *record) int { return a.pos - b.pos })
	l.records()
	l.requirements()
	l.lineSchemes()
	l.duplicates()
	l.sets()
	l.sameTargetCycles()
	l.exactPinCycles()
	slices.SortStableFunc(l.errs, func(a, b *LintError) int {
		return l.ix.byID[a.FirmwareID].pos - l.ix.byID[b.FirmwareID].pos
	})
	out := make([]error, len(l.errs))
	for i, e := range l.errs {
		out[i] = e
	}
	return out
}

type linter struct {
	ix   *index
	recs []*record // catalog order
	errs []*LintError
}

func (l *linter) add(r *record, e *Error) {
	l.errs = append(l.errs, &LintError{FirmwareID: r.fw.ID, Err: e})
}

// records reports records whose scheme or version does not parse.
func (l *linter) records() {
	for _, r := range l.recs {
		if r.bad != nil {
			e := *r.bad
			l.add(r, &e)
		}
	}
}

// constrained returns the records a requirement of r on slug may be checked against on a
// server r applies to: those of slug sharing one of r's models, else (component firmware
// identified by its own model) those of r's vendor.
func (l *linter) constrained(r *record, slug string) []*record {
	var byModel, byVendor []*record
	for _, o := range l.ix.bySlug[slug] {
		if o.bad != nil {
			continue
		}
		for _, m := range r.models {
			if o.models1(m) {
				byModel = append(byModel, o)
				break
			}
		}
		if o.vendor == r.vendor {
			byVendor = append(byVendor, o)
		}
	}
	if len(byModel) > 0 {
		return byModel
	}
	return byVendor
}

// requirements reports requirements that do not parse, name no component, or that a scheme
// they may be checked under cannot check.
func (l *linter) requirements() {
	for _, r := range l.recs {
		for _, q := range r.reqs {
			if q.err != nil {
				l.add(r, refuse(task.CodeInvalidRequest, "requirement on %s: %v", q.slug, q.err))
				continue
			}
			if q.slug == "" {
				l.add(r, refuse(task.CodeInvalidRequest, "requirement without a component"))
				continue
			}
			var schemes []firmware.Scheme
			if q.slug == r.slug {
				if r.bad == nil {
					schemes = []firmware.Scheme{r.scheme}
				}
			} else {
				for _, o := range l.constrained(r, q.slug) {
					if !slices.Contains(schemes, o.scheme) {
						schemes = append(schemes, o.scheme)
					}
				}
			}
			for _, sc := range schemes {
				if err := q.c.Validate(sc); err != nil {
					e := *refusal(err)
					e.Message = "requirement " + q.name + " " + q.c.Raw + " on a " + string(sc) + " line: " + e.Message
					l.add(r, &e)
					break
				}
			}
		}
	}
}

// sortedKeys returns the index's component lines in a stable order.
func (l *linter) sortedKeys() []key {
	keys := make([]key, 0, len(l.ix.byKey))
	for k := range l.ix.byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return strings.Compare(a.slug+"\x00"+a.vendor+"\x00"+a.model, b.slug+"\x00"+b.vendor+"\x00"+b.model)
	})
	return keys
}

// lineSchemes reports component lines (slug, vendor, model) with more than one scheme, whose
// versions could not be compared with each other.
func (l *linter) lineSchemes() {
	flagged := map[*record]bool{}
	for _, k := range l.sortedKeys() {
		rs := l.ix.byKey[k]
		for _, r := range rs[1:] {
			if r.bad == nil && rs[0].bad == nil && r.scheme != rs[0].scheme && !flagged[r] {
				flagged[r] = true
				l.add(r, refuse(task.CodeUnorderableVersion, "scheme %s differs from %s of firmware %s for the same %s %s %s",
					r.scheme, rs[0].scheme, rs[0].fw.ID, k.vendor, k.model, r.fw.Component))
			}
		}
	}
}

// duplicates reports records of one line and version that disagree on requirements or order
// hints: the planner refuses to choose between them.
func (l *linter) duplicates() {
	flagged := map[[2]*record]bool{}
	for _, k := range l.sortedKeys() {
		rs := l.ix.byKey[k]
		for i, a := range rs {
			for _, b := range rs[i+1:] {
				if a.bad != nil || b.bad != nil || a.scheme != b.scheme || !a.ver.Equal(b.ver) || a.terms == b.terms || flagged[[2]*record{a, b}] {
					continue
				}
				flagged[[2]*record{a, b}] = true
				l.add(b, refuse(task.CodeAmbiguousFirmware, "same %s %s %s version %s as firmware %s, with different requirements (%s; %s)",
					k.vendor, k.model, b.fw.Component, b.fw.Version, a.fw.ID, b.termsText(), a.termsText()))
			}
		}
	}
}

// sets reports firmware sets that list two versions for one component line: a server of that
// line could not be planned from the set.
func (l *linter) sets() {
	for _, set := range l.ix.cat.Sets {
		if set == nil {
			continue
		}
		first := map[key]*record{}
		for _, id := range set.Firmware {
			r := l.ix.byID[id]
			if r == nil || r.bad != nil {
				continue
			}
			for _, m := range r.models {
				k := key{r.slug, r.vendor, m}
				o := first[k]
				if o == nil {
					first[k] = r
					continue
				}
				if o != r && !o.ver.Equal(r.ver) {
					l.add(r, refuse(task.CodeAmbiguousFirmware, "firmware set %s lists it and firmware %s (%s) for the same %s %s %s",
						set.ID, o.fw.ID, o.fw.Version, r.vendor, m, r.fw.Component))
					break
				}
			}
		}
	}
}

// sameTargetCycles reports the index's same-target requirement cycles, once each.
func (l *linter) sameTargetCycles() {
	reported := map[*Error]bool{}
	for _, r := range l.recs {
		if e := l.ix.cycles[r]; e != nil && !reported[e] {
			reported[e] = true
			l.add(r, e)
		}
	}
}

// exactPinCycles reports cross-target cycles of exact pins, per server model: an edge r → o
// when o is the only image of that model satisfying a requirement of r. Images of other models
// satisfying it too do not matter, since they never apply to the same server.
func (l *linter) exactPinCycles() {
	var models []string
	seen := map[string]bool{}
	for _, r := range l.recs {
		for _, m := range r.models {
			if !seen[m] {
				seen[m] = true
				models = append(models, m)
			}
		}
	}
	reported := map[string]bool{}
	for _, m := range models {
		var g graph
		for _, r := range l.recs {
			if !r.models1(m) {
				continue
			}
			for _, q := range r.reqs {
				if q.err != nil || q.slug == r.slug {
					continue
				}
				var sat []*record
				for _, o := range l.ix.bySlug[q.slug] {
					if o.models1(m) && satisfies(o, q.c) {
						sat = append(sat, o)
					}
				}
				if len(sat) == 1 {
					g.add(r, sat[0], r.label()+" requires "+q.name+" "+q.c.Raw+", which only "+sat[0].label()+" satisfies")
				}
			}
		}
		for _, cyc := range g.cycles() {
			first := cyc[0].from
			var ids []string
			for _, ed := range cyc {
				ids = append(ids, ed.from.fw.ID)
				if ed.from.pos < first.pos {
					first = ed.from
				}
			}
			slices.Sort(ids)
			if id := strings.Join(ids, ","); !reported[id] {
				reported[id] = true
				e := refuse(task.CodeDependencyCycle, "cross-target requirement cycle of exact pins: these images can only be installed together")
				for _, ed := range cyc {
					e.with(ed.from.label(), "%s", ed.why)
				}
				l.add(first, e)
			}
		}
	}
}
