package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// Selection: which catalog image each component instance is to be flashed with, and whether
// it needs flashing at all.

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

// target makes a step of in to item's version. rec is the catalog record of that version (nil
// when none exists); the step is installed by the task's method, whose records alone are
// targeted without an explicit URL.
func (pl *planning) target(in *inst, rec *record, item task.Firmware, force, reinstall bool) {
	if in.step != nil {
		pl.fail(task.CodeAmbiguousFirmware, in.name, "named more than once (%s and %s)", in.step.to.Raw, item.Version)
		return
	}
	if rec != nil && pl.duplicated(in, rec) {
		return
	}
	s := &step{in: in, rec: rec, item: item, force: force, reinstall: reinstall, method: pl.req.Method}
	if rec != nil {
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
			}
			// With a URL, the image is the operator's, but the catalog record of that version
			// still says what the version requires: its requirements and preconditions apply
			// whatever the image's source.
			if !supports(in.c, pl.req.Method) {
				pl.skip(in, ReasonMethodMismatch, "component is not updatable %s", pl.req.Method)
				continue
			}
			if item.URL != "" && (rec == nil || !sameChecksum(rec.fw.Checksum, item.Checksum)) {
				urlTargets = append(urlTargets, in)
			}
			pl.target(in, rec, item, item.Force, item.Reinstall)
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

// duplicated refuses AMBIGUOUS_FIRMWARE when another applicable record of rec's version says
// something different about it (requirements or order hints): which one is right cannot be
// guessed, and the choice would otherwise depend on the install mode or catalog order.
func (pl *planning) duplicated(in *inst, rec *record) bool {
	for _, r := range in.recs {
		if r != rec && r.bad == nil && r.scheme == rec.scheme && r.ver.Equal(rec.ver) && r.terms != rec.terms {
			pl.fail(task.CodeAmbiguousFirmware, in.name, "catalog records %s and %s are both version %s with different requirements (%s; %s)",
				rec.fw.ID, r.fw.ID, rec.fw.Version, rec.termsText(), r.termsText())
			return true
		}
	}
	return false
}

// pickVersion returns the applicable record of version v for in: one of method m first, then a
// non-test tag, then catalog order. Records of one version that disagree are refused by target.
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
		pl.target(in, rec, task.Firmware{Component: in.c.Slug, Serial: in.c.Serial, Version: rec.fw.Version}, pl.req.Force, pl.req.Reinstall)
	}
}

// compare decides, for each targeted instance, between skip (already there), reinstall,
// upgrade and downgrade. What the planner cannot vouch for (a downgrade, versions without an
// order, an image of a version no catalog record describes) is refused unless forced; an equal
// version is skipped unless a reinstall is asked for.
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
			if !s.reinstall {
				pl.skip(in, ReasonAlreadyAtVersion, "%s", s.to.Raw)
				in.step = nil
				continue
			}
			s.flags.reinstall = true
		}
		if s.rec == nil {
			if !s.force {
				pl.fail(task.CodeImageMissing, in.name, "no catalog record describes version %s of it, so nothing is known of what that version requires; force installs the given image anyway (uncatalogued)",
					s.to.Raw)
				continue
			}
			s.flags.uncatalogued = true
		}
		if s.flags.reinstall {
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

// images refuses every step without a downloadable, verifiable image, whichever inventory
// source the record came from: no URL is IMAGE_MISSING; no checksum, or one of an algorithm
// nothing can verify (crc32:…), is CHECKSUM_MISSING.
func (pl *planning) images() {
	for _, s := range pl.steps {
		url, checksum, _, id := s.image()
		what := "the requested image"
		if id != "" && s.item.URL == "" {
			what = "firmware " + id
		}
		switch _, err := firmware.ParseChecksum(checksum); {
		case url == "":
			pl.fail(task.CodeImageMissing, s.in.name, "%s for %s has no URL to download it from", what, s.to.Raw)
		case checksum == "":
			pl.fail(task.CodeChecksumMissing, s.in.name, "%s for %s has no checksum to verify it with", what, s.to.Raw)
		case err != nil:
			pl.fail(task.CodeChecksumMissing, s.in.name, "%s for %s cannot be verified: %v", what, s.to.Raw, err)
		}
	}
}
