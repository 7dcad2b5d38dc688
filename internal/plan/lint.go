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

// Lint checks a catalog for records the planner could never use safely: unknown schemes,
// versions that do not parse under their scheme, requirement constraints that do not parse or
// order an opaque component, records of one component line that disagree on the scheme,
// same-target requirement cycles, and cross-target cycles of exact pins (each record's
// requirement is met by exactly one image, which in turn requires the first): such records can
// only be installed together, which sequential flashing cannot do. Cross-target cycles that a
// server's installed versions may break (">=" constraints met by several images) are left to
// plan time, where they are DEPENDENCY_CYCLE when they bind. Lint ends on any input: every
// loop is bounded by the catalog's size.
func Lint(cat *inventory.Catalog) []error {
	if cat == nil {
		return nil
	}
	ix := newIndex(cat)
	var errs []*LintError
	add := func(r *record, e *Error) { errs = append(errs, &LintError{FirmwareID: r.fw.ID, Err: e}) }
	recs := make([]*record, 0, len(cat.Firmware))
	for _, rs := range ix.bySlug {
		recs = append(recs, rs...)
	}
	slices.SortFunc(recs, func(a, b *record) int { return a.pos - b.pos })

	for _, r := range recs {
		if r.bad != nil {
			e := *r.bad
			add(r, &e)
		}
		for _, q := range r.reqs {
			if q.err != nil {
				add(r, refuse(task.CodeInvalidRequest, "requirement on %s: %v", q.slug, q.err))
				continue
			}
			if q.slug == "" {
				add(r, refuse(task.CodeInvalidRequest, "requirement without a component"))
				continue
			}
			schemes := map[firmware.Scheme]bool{}
			for _, o := range ix.bySlug[q.slug] {
				if o.bad == nil && related(r, o) {
					schemes[o.scheme] = true
				}
			}
			if q.slug == r.slug && r.bad == nil {
				schemes = map[firmware.Scheme]bool{r.scheme: true}
			}
			if len(schemes) == 1 {
				for sc := range schemes {
					if err := q.c.Validate(sc); err != nil {
						e := *refusal(err)
						e.Message = "requirement " + q.name + " " + q.c.Raw + ": " + e.Message
						add(r, &e)
					}
				}
			}
		}
	}
	// One component line (slug, vendor, model) must have one scheme, or its versions could not
	// be compared with each other.
	flagged := map[*record]bool{}
	keys := make([]key, 0, len(ix.byKey))
	for k := range ix.byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return strings.Compare(a.slug+"\x00"+a.vendor+"\x00"+a.model, b.slug+"\x00"+b.vendor+"\x00"+b.model)
	})
	for _, k := range keys {
		rs := ix.byKey[k]
		for _, r := range rs[1:] {
			if r.bad == nil && rs[0].bad == nil && r.scheme != rs[0].scheme && !flagged[r] {
				flagged[r] = true
				add(r, refuse(task.CodeUnorderableVersion, "scheme %s differs from %s of firmware %s for the same %s %s %s",
					r.scheme, rs[0].scheme, rs[0].fw.ID, k.vendor, k.model, r.fw.Component))
			}
		}
	}
	reported := map[*Error]bool{}
	for _, r := range recs {
		if e := ix.cycles[r]; e != nil && !reported[e] {
			reported[e] = true
			add(r, e)
		}
	}
	var g graph
	for _, r := range recs {
		for _, q := range r.reqs {
			if q.err != nil || q.slug == r.slug {
				continue
			}
			var sat []*record
			for _, o := range ix.bySlug[q.slug] {
				if related(r, o) && satisfies(o, q.c) {
					sat = append(sat, o)
				}
			}
			if len(sat) == 1 {
				g.add(r, sat[0], r.label()+" requires "+q.name+" "+q.c.Raw+", which only "+sat[0].label()+" satisfies")
			}
		}
	}
	for _, cyc := range g.cycles() {
		e := refuse(task.CodeDependencyCycle, "cross-target requirement cycle of exact pins: these images can only be installed together")
		for _, ed := range cyc {
			e.with(ed.from.label(), "%s", ed.why)
		}
		first := cyc[0].from
		for _, ed := range cyc {
			if ed.from.pos < first.pos {
				first = ed.from
			}
		}
		add(first, e)
	}
	slices.SortStableFunc(errs, func(a, b *LintError) int { return ix.byID[a.FirmwareID].pos - ix.byID[b.FirmwareID].pos })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}
