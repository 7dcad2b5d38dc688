package plan

import (
	"slices"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// record is a catalog firmware record with everything the planner needs parsed once per
// catalog snapshot, so that a plan costs map lookups rather than catalog scans.
type record struct {
	fw     *inventory.Firmware
	pos    int // catalog order, for stable choices
	slug   string
	vendor string
	models []string
	scheme firmware.Scheme
	ver    firmware.Version
	bad    *Error // scheme or version does not parse; the record is never planned
	reqs   []requirement
	after  []string
	// terms is the record's requirements and order hints in one canonical text, to tell
	// records of one version that say the same from records that disagree.
	terms  string
	method task.Method
}

type requirement struct {
	slug string
	name string // as written, for messages
	c    firmware.Constraint
	err  error
}

func (r *record) label() string {
	return r.fw.Component + " " + r.fw.Version + " (firmware " + r.fw.ID + ")"
}

// termsText is terms for people: "no requirements" rather than an empty string.
func (r *record) termsText() string {
	if r.terms == "" {
		return "no requirements"
	}
	return r.terms
}

// canonicalTerms renders requirements and order hints sorted, so that order in the catalog
// does not matter.
func canonicalTerms(reqs []requirement, after []string) string {
	var parts []string
	for _, q := range reqs {
		parts = append(parts, "requires "+q.slug+" "+strings.Join(strings.Fields(q.c.Raw), ""))
	}
	for _, a := range after {
		parts = append(parts, "after "+a)
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	return strings.Join(parts, ", ")
}

func (r *record) models1(m string) bool { return slices.Contains(r.models, m) }

type key struct{ slug, vendor, model string }

// index is a catalog snapshot prepared for planning. It is built once per *inventory.Catalog
// pointer: catalogs are immutable, so the pointer identifies the content.
type index struct {
	cat        *inventory.Catalog
	byID       map[string]*record
	byKey      map[key][]*record
	bySlug     map[string][]*record
	setsByID   map[string]*inventory.FirmwareSet
	setsByName map[string][]*inventory.FirmwareSet
	// cycles holds the same-target requirement cycle each record is part of.
	cycles map[*record]*Error
}

func newIndex(cat *inventory.Catalog) *index {
	ix := &index{
		cat:        cat,
		byID:       make(map[string]*record, len(cat.Firmware)),
		byKey:      make(map[key][]*record),
		bySlug:     make(map[string][]*record),
		setsByID:   make(map[string]*inventory.FirmwareSet, len(cat.Sets)),
		setsByName: make(map[string][]*inventory.FirmwareSet, len(cat.Sets)),
	}
	for i, fw := range cat.Firmware {
		if fw == nil {
			continue
		}
		r := &record{fw: fw, pos: i, slug: firmware.NormalizeSlug(fw.Component), vendor: firmware.NormalizeVendor(fw.Vendor), method: task.MethodOutOfBand}
		if fw.InBand {
			r.method = task.MethodInBand
		}
		for _, m := range fw.Models {
			if nm := firmware.NormalizeModel(m); nm != "" && !slices.Contains(r.models, nm) {
				r.models = append(r.models, nm)
			}
		}
		if sc, err := firmware.ParseScheme(fw.Scheme); err != nil {
			r.bad = refusal(err)
		} else {
			r.scheme = sc
			var err error
			if r.ver, err = sc.Parse(fw.Version); err != nil {
				r.bad = refusal(err)
			}
		}
		for _, q := range fw.Requires {
			c, err := firmware.ParseConstraint(q.Constraint)
			r.reqs = append(r.reqs, requirement{slug: firmware.NormalizeSlug(q.Component), name: q.Component, c: c, err: err})
		}
		for _, a := range fw.After {
			r.after = append(r.after, firmware.NormalizeSlug(a))
		}
		r.terms = canonicalTerms(r.reqs, r.after)
		if _, dup := ix.byID[fw.ID]; !dup {
			ix.byID[fw.ID] = r
		}
		ix.bySlug[r.slug] = append(ix.bySlug[r.slug], r)
		for _, m := range r.models {
			k := key{r.slug, r.vendor, m}
			ix.byKey[k] = append(ix.byKey[k], r)
		}
	}
	for _, s := range cat.Sets {
		if s == nil {
			continue
		}
		if _, dup := ix.setsByID[s.ID]; !dup {
			ix.setsByID[s.ID] = s
		}
		ix.setsByName[s.Name] = append(ix.setsByName[s.Name], s)
	}
	ix.cycles = sameTargetCycles(ix)
	return ix
}

// applicable returns the records for a component slug whose vendor matches the component's or
// the server's vendor and one of whose models matches the component's or the server's model,
// in catalog order. Component-level identity (a drive's vendor and model) and server-level
// identity (a BIOS built for a server model) are both how vendors publish firmware.
func (ix *index) applicable(slug string, vendors, models []string) []*record {
	var out []*record
	for _, v := range vendors {
		for _, m := range models {
			for _, r := range ix.byKey[key{slug, v, m}] {
				if !slices.Contains(out, r) {
					out = append(out, r)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b *record) int { return a.pos - b.pos })
	return out
}

// related reports whether two records could describe firmware of one server: the same vendor or
// a shared model.
func related(a, b *record) bool {
	if a.vendor == b.vendor {
		return true
	}
	for _, m := range a.models {
		if b.models1(m) {
			return true
		}
	}
	return false
}

// satisfies reports whether record r's version satisfies c; errors count as no.
func satisfies(r *record, c firmware.Constraint) bool {
	if r.bad != nil {
		return false
	}
	ok, err := c.Check(r.ver)
	return err == nil && ok
}

// sameTargetCycles finds cycles among records of one component that require that component
// (BMC 1.5 requires BMC =1.4, BMC 1.4 requires BMC =1.5). A self-requirement is a precondition
// on the installed version, so a record satisfying its own requirement is not a cycle.
func sameTargetCycles(ix *index) map[*record]*Error {
	g := graph{}
	for _, recs := range ix.bySlug {
		for _, r := range recs {
			for _, q := range r.reqs {
				if q.err != nil || q.slug != r.slug {
					continue
				}
				for _, o := range recs {
					if o != r && o.vendor == r.vendor && related(r, o) && satisfies(o, q.c) {
						g.add(r, o, r.label()+" requires "+q.name+" "+q.c.Raw+", which "+o.label()+" satisfies")
					}
				}
			}
		}
	}
	out := map[*record]*Error{}
	for _, cyc := range g.cycles() {
		e := refuse(task.CodeDependencyCycle, "same-target requirement cycle in the catalog")
		for _, ed := range cyc {
			e.with(ed.from.label(), "%s", ed.why)
		}
		for _, ed := range cyc {
			out[ed.from] = e
		}
	}
	return out
}

type edge struct {
	from, to *record
	why      string
}

// graph is a small directed graph over records for cycle detection.
type graph struct {
	nodes []*record
	out   map[*record][]edge
}

func (g *graph) add(from, to *record, why string) {
	if g.out == nil {
		g.out = map[*record][]edge{}
	}
	for _, n := range []*record{from, to} {
		if _, ok := g.out[n]; !ok {
			g.out[n] = nil
			g.nodes = append(g.nodes, n)
		}
	}
	g.out[from] = append(g.out[from], edge{from, to, why})
}

// cycles returns one cycle (as its edges, in order) per strongly connected component of two or
// more nodes, by Tarjan's algorithm: linear, so it ends on any input.
func (g *graph) cycles() [][]edge {
	slices.SortFunc(g.nodes, func(a, b *record) int { return a.pos - b.pos })
	index := map[*record]int{}
	low := map[*record]int{}
	on := map[*record]bool{}
	var stack []*record
	var sccs [][]*record
	n := 0
	var visit func(v *record)
	visit = func(v *record) {
		index[v], low[v] = n, n
		n++
		stack = append(stack, v)
		on[v] = true
		for _, e := range g.out[v] {
			if _, seen := index[e.to]; !seen {
				visit(e.to)
				low[v] = min(low[v], low[e.to])
			} else if on[e.to] {
				low[v] = min(low[v], index[e.to])
			}
		}
		if low[v] == index[v] {
			var scc []*record
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			if len(scc) > 1 {
				sccs = append(sccs, scc)
			}
		}
	}
	for _, v := range g.nodes {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	var out [][]edge
	for _, scc := range sccs {
		out = append(out, g.cycleIn(scc))
	}
	return out
}

// cycleIn walks edges inside one strongly connected component from its first node until a node
// repeats; at most len(scc) steps, since every node has an edge inside the component.
func (g *graph) cycleIn(scc []*record) []edge {
	in := map[*record]bool{}
	for _, r := range scc {
		in[r] = true
	}
	slices.SortFunc(scc, func(a, b *record) int { return a.pos - b.pos })
	seen := map[*record]int{}
	var path []edge
	v := scc[0]
	for range len(scc) + 1 {
		if i, ok := seen[v]; ok {
			return path[i:]
		}
		seen[v] = len(path)
		for _, e := range g.out[v] {
			if in[e.to] {
				path = append(path, e)
				v = e.to
				break
			}
		}
	}
	return path
}
