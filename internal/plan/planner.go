package plan

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// Skip reasons. A task.Skip's Reason starts with one of these, then ": " and details.
const (
	ReasonAlreadyAtVersion = "already at version"
	ReasonNotApplicable    = "not applicable"
	ReasonMethodMismatch   = "method mismatch"
	ReasonNoFirmwareInSet  = "no firmware in set for it"
)

// Request says what to plan for one server.
type Request struct {
	Mode task.InstallMode
	// Method is the task's method; only firmware installed by this method is planned.
	Method task.Method
	// FirmwareSet is the set's id or name in ModeFirmwareSet.
	FirmwareSet string
	// Firmware is the explicit list in ModeFirmware.
	Firmware []task.Firmware
	// Force applies to every member in the set modes: equal versions are reinstalled and
	// downgrades proceed. Explicit items carry their own Force.
	Force bool
}

// Planner turns a server's installed state, a catalog and a request into a task.Plan. It is safe
// for concurrent use; it keeps one prepared index of the latest catalog snapshot it was given.
type Planner struct {
	idx atomic.Pointer[index]
}

// New returns a Planner.
func New() *Planner { return &Planner{} }

func (p *Planner) index(cat *inventory.Catalog) *index {
	if ix := p.idx.Load(); ix != nil && ix.cat == cat {
		return ix
	}
	ix := newIndex(cat)
	p.idx.Store(ix)
	return ix
}

// Plan computes the plan for server under req against cat, or returns an *Error saying why it
// refuses. An empty plan (everything already at version, or nothing applicable) is not an error.
func (p *Planner) Plan(server *inventory.Server, cat *inventory.Catalog, req Request) (*task.Plan, error) {
	if server == nil {
		return nil, refuse(task.CodeInvalidRequest, "no server")
	}
	if cat == nil {
		cat = &inventory.Catalog{}
	}
	pl := &planning{ix: p.index(cat), srv: server, req: req}
	out, err := pl.run()
	if err != nil {
		if e, ok := err.(*Error); ok && e.Server == "" {
			e.Server = server.ID
		}
		return nil, err
	}
	return out, nil
}

// inst is one component instance of the server during planning.
type inst struct {
	c      inventory.Component
	pos    int
	slug   string
	name   string    // for messages: "NIC serial=MT1"
	recs   []*record // applicable catalog records, catalog order
	scheme firmware.Scheme
	schErr error
	old    firmware.Version
	oldErr error
	// oldRecs are the applicable records of the installed version: their requirements are the
	// constraints in force while the instance is not changed.
	oldRecs []*record
	step    *step
}

func (in *inst) oldReqs() []requirement {
	var out []requirement
	for _, r := range in.oldRecs {
		out = append(out, r.reqs...)
	}
	return out
}

// step is a planned change of one instance.
type step struct {
	in     *inst
	rec    *record // nil for an explicit URL with no catalog record of that version
	to     firmware.Version
	toErr  error
	item   task.Firmware
	method task.Method
	force  bool
	flags  struct{ downgrade, reinstall bool }
}

func (s *step) label() string { return s.in.name + " " + s.in.c.Version + " → " + s.to.Raw }

func (s *step) reqs() []requirement {
	if s.rec == nil {
		return nil
	}
	return s.rec.reqs
}

type planning struct {
	ix    *index
	srv   *inventory.Server
	req   Request
	insts []*inst
	// bySlug lists the instances of each slug, for requirement checks.
	bySlug map[string][]*inst
	set    *inventory.FirmwareSet
	skips  []task.Skip
	steps  []*step
	errs   map[Code]*Error
}

func (pl *planning) fail(code Code, subject, format string, args ...any) {
	if pl.errs == nil {
		pl.errs = map[Code]*Error{}
	}
	e := pl.errs[code]
	if e == nil {
		e = &Error{Code: code}
		pl.errs[code] = e
	}
	e.with(subject, format, args...)
}

// failed returns the collected refusal, most fundamental code first.
func (pl *planning) failed() error {
	msgs := map[Code]string{
		task.CodeInvalidRequest:     "invalid request",
		task.CodeComponentNotFound:  "the server has no such component",
		task.CodeAmbiguousFirmware:  "more than one image applies to a component",
		task.CodeImageMissing:       "no image for a wanted version",
		task.CodeUnorderableVersion: "versions cannot be ordered",
		task.CodeDowngradeRefused:   "downgrade without force",
	}
	for _, c := range []Code{task.CodeInvalidRequest, task.CodeComponentNotFound, task.CodeAmbiguousFirmware, task.CodeImageMissing, task.CodeUnorderableVersion, task.CodeDowngradeRefused} {
		if e := pl.errs[c]; e != nil {
			e.Message = msgs[c]
			return e
		}
	}
	return nil
}

func (pl *planning) skip(in *inst, reason, format string, args ...any) {
	r := reason
	if format != "" {
		r += ": " + fmt.Sprintf(format, args...)
	}
	pl.skips = append(pl.skips, task.Skip{Component: in.c.Slug, Serial: in.c.Serial, Version: in.c.Version, Reason: r})
}

func (pl *planning) run() (*task.Plan, error) {
	if !pl.req.Method.Valid() {
		return nil, refuse(task.CodeInvalidRequest, "unknown method %q", pl.req.Method)
	}
	pl.instances()
	switch pl.req.Mode {
	case task.ModeFirmware:
		pl.explicit()
	case task.ModeFirmwareSet:
		set, err := pl.findSet()
		if err != nil {
			return nil, err
		}
		pl.fromSet(set)
	case task.ModeResolve:
		set, err := pl.resolve()
		if err != nil {
			return nil, err
		}
		pl.fromSet(set)
	default:
		return nil, refuse(task.CodeInvalidRequest, "unknown install mode %q", pl.req.Mode)
	}
	if err := pl.failed(); err != nil {
		return nil, err
	}
	pl.compare()
	if err := pl.failed(); err != nil {
		return nil, err
	}
	for _, s := range pl.steps {
		if s.rec != nil && pl.ix.cycles[s.rec] != nil {
			c := *pl.ix.cycles[s.rec]
			c.Message = "same-target requirement cycle: " + s.label() + " can never be planned"
			return nil, &c
		}
	}
	if err := pl.unsatisfiable(); err != nil {
		return nil, err
	}
	order, err := pl.order()
	if err != nil {
		return nil, err
	}
	if err := pl.simulate(order); err != nil {
		return nil, err
	}
	return pl.output(order), nil
}

func (pl *planning) instances() {
	sv, sm := firmware.NormalizeVendor(pl.srv.Vendor), firmware.NormalizeModel(pl.srv.Model)
	count := map[string]int{}
	for _, c := range pl.srv.Components {
		count[firmware.NormalizeSlug(c.Slug)]++
	}
	pl.bySlug = make(map[string][]*inst, len(count))
	// Instances of one model share their applicable records: look them up once.
	type lineKey struct{ slug, vendor, model string }
	lines := map[lineKey][]*record{}
	vendorNorm, modelNorm := map[string]string{}, map[string]string{}
	memo := func(m map[string]string, s string, f func(string) string) string {
		n, ok := m[s]
		if !ok {
			n = f(s)
			m[s] = n
		}
		return n
	}
	for i, c := range pl.srv.Components {
		in := &inst{c: c, pos: i, slug: firmware.NormalizeSlug(c.Slug)}
		switch {
		case c.Serial != "":
			in.name = fmt.Sprintf("%s serial=%s", c.Slug, c.Serial)
		case count[in.slug] > 1:
			in.name = fmt.Sprintf("%s #%d", c.Slug, i)
		default:
			in.name = c.Slug
		}
		cv, cm := memo(vendorNorm, c.Vendor, firmware.NormalizeVendor), memo(modelNorm, c.Model, firmware.NormalizeModel)
		lk := lineKey{in.slug, cv, cm}
		recs, ok := lines[lk]
		if !ok {
			recs = pl.ix.applicable(in.slug, uniq(cv, sv), uniq(cm, sm))
			lines[lk] = recs
		}
		in.recs = recs
		pl.bySlug[in.slug] = append(pl.bySlug[in.slug], in)
		in.scheme = firmware.SchemeOpaque
		seen := false
		for _, r := range in.recs {
			if r.scheme == "" {
				continue
			}
			if seen && in.scheme != r.scheme && in.schErr == nil {
				in.schErr = refuse(task.CodeUnorderableVersion, "catalog images for %s declare schemes %s and %s", in.name, in.scheme, r.scheme)
			}
			in.scheme, seen = r.scheme, true
		}
		in.old, in.oldErr = in.scheme.Parse(c.Version)
		for _, r := range in.recs {
			if r.bad == nil && sameVersion(in.old, in.oldErr, r.ver) {
				in.oldRecs = append(in.oldRecs, r)
			}
		}
		pl.insts = append(pl.insts, in)
	}
}

func uniq(a, b string) []string {
	switch {
	case a == "" || a == b:
		return []string{b}
	case b == "":
		return []string{a}
	}
	return []string{a, b}
}

// sameVersion compares by the scheme when the installed version parses, else by its text.
func sameVersion(v firmware.Version, verr error, w firmware.Version) bool {
	if verr != nil {
		return v.Raw == w.Raw
	}
	return v.Equal(w)
}

// supports reports whether a component can be updated by method m. A component that declares
// neither flag is unknown and not filtered: the method check on the firmware still applies.
func supports(c inventory.Component, m task.Method) bool {
	if !c.InBand && !c.OutOfBand {
		return true
	}
	if m == task.MethodInBand {
		return c.InBand
	}
	return c.OutOfBand
}

func (pl *planning) target(in *inst, rec *record, item task.Firmware, force bool) {
	if in.step != nil {
		pl.fail(task.CodeAmbiguousFirmware, in.name, "named more than once (%s and %s)", in.step.to.Raw, item.Version)
		return
	}
	s := &step{in: in, rec: rec, item: item, force: force, method: pl.req.Method}
	if rec != nil {
		s.method = rec.method
		s.to = rec.ver
	} else {
		s.to, s.toErr = in.scheme.Parse(item.Version)
	}
	in.step = s
	pl.steps = append(pl.steps, s)
}

func (pl *planning) explicit() {
	if len(pl.req.Firmware) == 0 {
		pl.fail(task.CodeInvalidRequest, "firmware", "an explicit request needs at least one firmware item")
		return
	}
	for n, item := range pl.req.Firmware {
		subject := fmt.Sprintf("firmware[%d] %s %s", n, item.Component, item.Version)
		slug := firmware.NormalizeSlug(item.Component)
		if slug == "" || strings.TrimSpace(item.Version) == "" {
			pl.fail(task.CodeInvalidRequest, subject, "component and version are required")
			continue
		}
		if bad := invalidActions(item); bad != "" {
			pl.fail(task.CodeInvalidRequest, subject, "unknown action %q", bad)
			continue
		}
		if item.URL != "" {
			sum, err := firmware.ParseChecksum(item.Checksum)
			if err != nil {
				pl.fail(task.CodeInvalidRequest, subject, "an explicit URL needs a checksum sha256:<64 hex>, sha512:<128 hex> or md5:<32 hex>, got %q", item.Checksum)
				continue
			}
			// Vendor pages print digests in upper case: plan with the canonical form, which is
			// the artifact cache's key.
			item.Checksum = sum.String()
		}
		var matched []*inst
		for _, in := range pl.insts {
			if in.slug == slug && (item.Serial == "" || strings.EqualFold(strings.TrimSpace(item.Serial), strings.TrimSpace(in.c.Serial))) {
				matched = append(matched, in)
			}
		}
		if len(matched) == 0 {
			if item.Serial != "" {
				pl.fail(task.CodeComponentNotFound, subject, "server has no %s with serial %q", item.Component, item.Serial)
			} else {
				pl.fail(task.CodeComponentNotFound, subject, "server has no %s", item.Component)
			}
			continue
		}
		var urlTargets []*inst
		for _, in := range matched {
			if item.Vendor != "" && firmware.NormalizeVendor(item.Vendor) != firmware.NormalizeVendor(in.c.Vendor) && firmware.NormalizeVendor(item.Vendor) != firmware.NormalizeVendor(pl.srv.Vendor) ||
				item.Model != "" && firmware.NormalizeModel(item.Model) != firmware.NormalizeModel(in.c.Model) && firmware.NormalizeModel(item.Model) != firmware.NormalizeModel(pl.srv.Model) {
				pl.skip(in, ReasonNotApplicable, "vendor/model mismatch: item is for %s %s, component is %s %s", item.Vendor, item.Model, in.c.Vendor, in.c.Model)
				continue
			}
			rec := pickVersion(in, item.Version, pl.req.Method)
			if item.URL == "" {
				switch {
				case rec == nil:
					pl.fail(task.CodeImageMissing, in.name, "no catalog image of version %s applies to %s %s and no URL was given", item.Version, in.c.Vendor, in.c.Model)
					continue
				case rec.method != pl.req.Method:
					pl.skip(in, ReasonMethodMismatch, "firmware %s installs %s, task is %s", rec.fw.ID, rec.method, pl.req.Method)
					continue
				}
			} else if rec != nil && !sameChecksum(rec.fw.Checksum, item.Checksum) {
				// The operator's image is not the catalog's: keep the catalog record for its
				// requirements only when the bytes are the same.
				rec = nil
			}
			if !supports(in.c, pl.req.Method) {
				pl.skip(in, ReasonMethodMismatch, "component is not updatable %s", pl.req.Method)
				continue
			}
			if item.URL != "" && rec == nil {
				urlTargets = append(urlTargets, in)
			}
			pl.target(in, rec, item, item.Force)
		}
		if item.Serial == "" && item.Model == "" {
			models := map[string]bool{}
			for _, in := range urlTargets {
				models[firmware.NormalizeVendor(in.c.Vendor)+"/"+firmware.NormalizeModel(in.c.Model)] = true
			}
			if len(models) > 1 {
				pl.fail(task.CodeAmbiguousFirmware, subject, "one URL for %d different %s models; name a serial or model", len(models), item.Component)
			}
		}
	}
}

// sameChecksum reports whether two checksum strings name the same digest.
func sameChecksum(a, b string) bool {
	x, err1 := firmware.ParseChecksum(a)
	y, err2 := firmware.ParseChecksum(b)
	return err1 == nil && err2 == nil && x == y
}

func invalidActions(f task.Firmware) string {
	for _, a := range append(slices.Clone(f.PreActions), f.PostActions...) {
		if !a.Valid() {
			return string(a)
		}
	}
	return ""
}

// pickVersion returns the applicable record of version v for in: one of method m first, then a
// non-test tag, then catalog order.
func pickVersion(in *inst, v string, m task.Method) *record {
	want, err := in.scheme.Parse(v)
	var best *record
	score := func(r *record) int {
		s := 0
		if r.method == m {
			s += 2
		}
		if !strings.EqualFold(r.fw.Tag, "test") {
			s++
		}
		return s
	}
	for _, r := range in.recs {
		if r.bad != nil || !sameVersion(want, err, r.ver) {
			continue
		}
		if best == nil || score(r) > score(best) {
			best = r
		}
	}
	return best
}

func (pl *planning) findSet() (*inventory.FirmwareSet, error) {
	name := strings.TrimSpace(pl.req.FirmwareSet)
	if name == "" {
		return nil, refuse(task.CodeInvalidRequest, "firmware set mode needs a set id or name")
	}
	set := pl.ix.setsByID[name]
	if set == nil {
		switch byName := pl.ix.setsByName[name]; len(byName) {
		case 0:
			return nil, refuse(task.CodeSetNotFound, "no firmware set with id or name %q", name)
		case 1:
			set = byName[0]
		default:
			e := refuse(task.CodeAmbiguousSet, "set name %q is not unique; use an id", name)
			for _, s := range byName {
				e.with("set "+s.ID, "named %q", s.Name)
			}
			return nil, e
		}
	}
	if v, ok := set.Labels["vendor"]; ok && firmware.NormalizeVendor(v) != firmware.NormalizeVendor(pl.srv.Vendor) ||
		hasLabel(set, "model") && firmware.NormalizeModel(set.Labels["model"]) != firmware.NormalizeModel(pl.srv.Model) {
		return nil, refuse(task.CodeServerModelMismatch, "set %s is for %s %s, server is %s %s",
			set.ID, set.Labels["vendor"], set.Labels["model"], pl.srv.Vendor, pl.srv.Model)
	}
	return set, nil
}

func hasLabel(s *inventory.FirmwareSet, k string) bool { _, ok := s.Labels[k]; return ok }

// resolve finds the one set labelled with the server's vendor and model. Several candidates are
// narrowed to those labelled default="true"; exactly one must remain.
func (pl *planning) resolve() (*inventory.FirmwareSet, error) {
	sv, sm := firmware.NormalizeVendor(pl.srv.Vendor), firmware.NormalizeModel(pl.srv.Model)
	var cands []*inventory.FirmwareSet
	for _, s := range pl.ix.cat.Sets {
		if s != nil && hasLabel(s, "vendor") && hasLabel(s, "model") &&
			firmware.NormalizeVendor(s.Labels["vendor"]) == sv && firmware.NormalizeModel(s.Labels["model"]) == sm {
			cands = append(cands, s)
		}
	}
	if len(cands) == 0 {
		return nil, refuse(task.CodeNoMatchingSet, "no firmware set is labelled vendor=%q model=%q", pl.srv.Vendor, pl.srv.Model)
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	var defaults []*inventory.FirmwareSet
	for _, s := range cands {
		if strings.EqualFold(strings.TrimSpace(s.Labels["default"]), "true") {
			defaults = append(defaults, s)
		}
	}
	if len(defaults) == 1 {
		return defaults[0], nil
	}
	e := refuse(task.CodeAmbiguousSet, "%d firmware sets match vendor=%q model=%q and %d of them are labelled default=true; name one",
		len(cands), pl.srv.Vendor, pl.srv.Model, len(defaults))
	for _, s := range cands {
		e.with("set "+s.ID, "name %q, default=%q", s.Name, s.Labels["default"])
	}
	return nil, e
}

func (pl *planning) fromSet(set *inventory.FirmwareSet) {
	pl.set = set
	members := make([]*record, 0, len(set.Firmware))
	for _, id := range set.Firmware {
		r := pl.ix.byID[id]
		if r == nil {
			pl.fail(task.CodeImageMissing, "set "+set.ID, "member %q is not in the catalog", id)
			continue
		}
		members = append(members, r)
	}
	for _, in := range pl.insts {
		var sameSlug, fits []*record
		for _, r := range members {
			if r.slug != in.slug {
				continue
			}
			sameSlug = append(sameSlug, r)
			if slices.Contains(in.recs, r) {
				fits = append(fits, r)
			}
		}
		switch {
		case len(sameSlug) == 0:
			pl.skip(in, ReasonNoFirmwareInSet, "")
			continue
		case len(fits) == 0:
			var ids []string
			for _, r := range sameSlug {
				ids = append(ids, r.fw.ID)
			}
			pl.skip(in, ReasonNotApplicable, "vendor/model mismatch: set firmware %s is not for %s %s", strings.Join(ids, ", "), in.c.Vendor, in.c.Model)
			continue
		}
		rec := fits[0]
		for _, r := range fits[1:] {
			if r.bad != nil || rec.bad != nil || !r.ver.Equal(rec.ver) {
				pl.fail(task.CodeAmbiguousFirmware, in.name, "set %s has %s and %s for it", set.ID, rec.fw.ID, r.fw.ID)
			}
		}
		if rec.bad != nil {
			pl.fail(task.CodeUnorderableVersion, "firmware "+rec.fw.ID, "%v", rec.bad)
			continue
		}
		if rec.method != pl.req.Method {
			pl.skip(in, ReasonMethodMismatch, "firmware %s installs %s, task is %s", rec.fw.ID, rec.method, pl.req.Method)
			continue
		}
		if !supports(in.c, pl.req.Method) {
			pl.skip(in, ReasonMethodMismatch, "component is not updatable %s", pl.req.Method)
			continue
		}
		pl.target(in, rec, task.Firmware{Component: in.c.Slug, Serial: in.c.Serial, Version: rec.fw.Version}, pl.req.Force)
	}
}

// compare decides, for each targeted instance, between skip (already there), reinstall,
// upgrade and downgrade; anything it cannot order is refused unless forced.
func (pl *planning) compare() {
	kept := pl.steps[:0]
	for _, s := range pl.steps {
		in := s.in
		switch {
		case s.toErr != nil:
			pl.fail(task.CodeUnorderableVersion, in.name, "wanted version %q: %v", s.item.Version, s.toErr)
			continue
		case in.schErr != nil:
			pl.fail(task.CodeUnorderableVersion, in.name, "%v", in.schErr)
			continue
		}
		if sameVersion(in.old, in.oldErr, s.to) {
			if !s.force {
				pl.skip(in, ReasonAlreadyAtVersion, "%s", s.to.Raw)
				in.step = nil
				continue
			}
			s.flags.reinstall = true
			kept = append(kept, s)
			continue
		}
		if in.oldErr != nil {
			if !s.force {
				pl.fail(task.CodeUnorderableVersion, in.name, "installed version %q does not parse under scheme %s (%v); force installs %s anyway", in.c.Version, in.scheme, in.oldErr, s.to.Raw)
				continue
			}
			kept = append(kept, s)
			continue
		}
		cmp, err := s.to.Compare(in.old)
		switch {
		case err != nil && !s.force:
			pl.fail(task.CodeUnorderableVersion, in.name, "cannot tell whether %s → %s is an upgrade (%s scheme); force installs it anyway", in.c.Version, s.to.Raw, in.scheme)
			continue
		case err == nil && cmp < 0 && !s.force:
			pl.fail(task.CodeDowngradeRefused, in.name, "%s → %s is a downgrade; force allows it", in.c.Version, s.to.Raw)
			continue
		case err == nil && cmp < 0:
			s.flags.downgrade = true
		}
		kept = append(kept, s)
	}
	pl.steps = kept
}

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

type orderEdge struct {
	from, to int           // step indices
	why      func() string // built only when a cycle is reported
}

// order sorts the steps: the default order, then order hints and requirements as edges of a
// graph sorted topologically. A cycle is DEPENDENCY_CYCLE naming every edge of it.
func (pl *planning) order() ([]*step, error) {
	steps := slices.Clone(pl.steps)
	slices.SortStableFunc(steps, func(a, b *step) int {
		if r := firmware.Rank(a.in.slug) - firmware.Rank(b.in.slug); r != 0 {
			return r
		}
		return a.in.pos - b.in.pos
	})
	at := map[*inst]int{}
	for i, s := range steps {
		at[s.in] = i
	}
	var edges []orderEdge
	for ai, a := range steps {
		if a.rec != nil {
			for _, h := range a.rec.after {
				for bi, b := range steps {
					if bi != ai && b.in.slug == h {
						edges = append(edges, orderEdge{bi, ai, func() string {
							return fmt.Sprintf("%s is to be flashed after %s (order hint of firmware %s)", a.in.name, b.in.name, a.rec.fw.ID)
						}})
					}
				}
			}
		}
		for _, q := range a.reqs() {
			if q.err != nil || q.slug == a.in.slug {
				continue
			}
			for bi, b := range steps {
				if bi == ai || b.in.slug != q.slug {
					continue
				}
				oldOK, err1 := check(q.c, b.in.old, b.in.oldErr)
				newOK, err2 := check(q.c, b.to, b.toErr)
				if err1 == nil && err2 == nil && !oldOK && newOK {
					edges = append(edges, orderEdge{bi, ai, func() string {
						return fmt.Sprintf("%s requires %s %s, which only its new version %s satisfies", requirer(a.in, true), b.in.name, q.c.Raw, b.to.Raw)
					}})
				}
			}
		}
		for _, q := range a.in.oldReqs() {
			if q.err != nil || q.slug == a.in.slug {
				continue
			}
			for bi, b := range steps {
				if bi == ai || b.in.slug != q.slug {
					continue
				}
				oldOK, err1 := check(q.c, b.in.old, b.in.oldErr)
				newOK, err2 := check(q.c, b.to, b.toErr)
				if err1 == nil && err2 == nil && oldOK && !newOK {
					edges = append(edges, orderEdge{ai, bi, func() string {
						return fmt.Sprintf("%s requires %s %s, which only its installed version %s satisfies, so it changes first", requirer(a.in, false), b.in.name, q.c.Raw, b.in.c.Version)
					}})
				}
			}
		}
	}
	n := len(steps)
	indeg := make([]int, n)
	succ := make([][]orderEdge, n)
	pred := make([][]orderEdge, n)
	for _, e := range edges {
		indeg[e.to]++
		succ[e.from] = append(succ[e.from], e)
		pred[e.to] = append(pred[e.to], e)
	}
	done := make([]bool, n)
	out := make([]*step, 0, n)
	// Kahn's algorithm, taking the earliest ready step in default order: n rounds at most.
	for range n {
		next := -1
		for i := range n {
			if !done[i] && indeg[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		done[next] = true
		out = append(out, steps[next])
		for _, e := range succ[next] {
			indeg[e.to]--
		}
	}
	if len(out) == n {
		return out, nil
	}
	// Every remaining step has a remaining predecessor: walk predecessors until one repeats
	// (at most n steps), which closes a cycle.
	v := -1
	for i := range n {
		if !done[i] {
			v = i
			break
		}
	}
	seen := map[int]int{}
	var path []orderEdge
	for range n + 1 {
		if k, ok := seen[v]; ok {
			cyc := path[k:]
			slices.Reverse(cyc)
			e := refuse(task.CodeDependencyCycle, "requirements and order hints form a cycle of %d steps", len(cyc))
			for _, ed := range cyc {
				e.with(steps[ed.from].label()+" before "+steps[ed.to].label(), "%s", ed.why())
			}
			return nil, e
		}
		seen[v] = len(path)
		for _, ed := range pred[v] {
			if !done[ed.from] {
				path = append(path, ed)
				v = ed.from
				break
			}
		}
	}
	return nil, refuse(task.CodeDependencyCycle, "requirements form a cycle")
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

func (pl *planning) output(order []*step) *task.Plan {
	out := &task.Plan{Steps: make([]task.Step, 0, len(order)), Skipped: pl.skips}
	if pl.set != nil {
		out.FirmwareSet = pl.set.ID
	}
	for _, in := range pl.insts {
		out.Snapshot = append(out.Snapshot, task.Installed{Component: in.c.Slug, Serial: in.c.Serial, Vendor: in.c.Vendor, Model: in.c.Model, Version: in.c.Version})
	}
	for _, s := range order {
		st := task.Step{
			Component: s.in.c.Slug, Serial: s.in.c.Serial, Vendor: s.in.c.Vendor, Model: s.in.c.Model,
			FromVersion: s.in.c.Version, ToVersion: s.to.Raw, Scheme: string(s.to.Scheme), Method: s.method,
			Force: s.force, Downgrade: s.flags.downgrade, Reinstall: s.flags.reinstall,
			Irreversible: len(s.in.oldRecs) == 0,
			PreActions:   slices.Clone(s.item.PreActions), PostActions: slices.Clone(s.item.PostActions),
			URL: s.item.URL, Checksum: s.item.Checksum,
		}
		if s.rec != nil {
			st.FirmwareID, st.Filename, st.URL, st.Checksum = s.rec.fw.ID, s.rec.fw.Filename, s.rec.fw.URL, s.rec.fw.Checksum
		}
		if sum, err := firmware.ParseChecksum(st.Checksum); err == nil {
			st.Checksum = sum.String()
		}
		if st.Filename == "" {
			st.Filename = baseName(st.URL)
		}
		out.Steps = append(out.Steps, st)
	}
	return out
}

func baseName(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u[strings.LastIndexByte(u, '/')+1:]
}

// Firmware lists a plan's steps as the task's resolved firmware items, for the set modes.
func Firmware(p *task.Plan) []task.Firmware {
	if p == nil {
		return nil
	}
	out := make([]task.Firmware, 0, len(p.Steps))
	for _, s := range p.Steps {
		out = append(out, task.Firmware{
			Component: s.Component, Serial: s.Serial, Vendor: s.Vendor, Model: s.Model, Version: s.ToVersion,
			URL: s.URL, Checksum: s.Checksum, FirmwareID: s.FirmwareID, Force: s.Force,
			PreActions: slices.Clone(s.PreActions), PostActions: slices.Clone(s.PostActions),
		})
	}
	return out
}
