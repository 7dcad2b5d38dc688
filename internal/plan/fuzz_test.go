package plan

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// choices drives case generation from fuzz input: the input's bytes first, then a PRNG seeded
// with the whole input, so that short inputs still yield rich cases and every input is
// reproducible.
type choices struct {
	b []byte
	i int
	r *rand.Rand
}

func newChoices(data []byte) *choices {
	h := fnv.New64a()
	h.Write(data)
	return &choices{b: data, r: rand.New(rand.NewPCG(h.Sum64(), uint64(len(data))))}
}

func (s *choices) n(k int) int {
	if k <= 0 {
		return 0
	}
	if s.i < len(s.b) {
		v := int(s.b[s.i]) % k
		s.i++
		return v
	}
	return s.r.IntN(k)
}

var fuzzSlugs = []string{"BMC", "BIOS", "NIC", "Drive", "CPLD"}
var fuzzOps = []string{">=", "<=", "=", "!=", ">", "<"}

type fuzzCase struct {
	srv *inventory.Server
	cat *inventory.Catalog
	req Request
}

// genCase builds a server of up to 8 instances (versions 1–4), a catalog with every version of
// every slug and random requirements, order hints and schemes, and a random request.
func genCase(data []byte) fuzzCase {
	s := newChoices(data)
	srv := &inventory.Server{ID: "fuzz", Vendor: "V", Model: "M"}
	for i := range 1 + s.n(8) {
		slug := fuzzSlugs[s.n(len(fuzzSlugs))]
		srv.Components = append(srv.Components, inventory.Component{
			Slug: slug, Vendor: "V", Serial: "s" + strconv.Itoa(i), Version: strconv.Itoa(1 + s.n(4)),
		})
	}
	cat := &inventory.Catalog{}
	opaque := map[string]bool{}
	for _, slug := range fuzzSlugs {
		opaque[slug] = s.n(8) == 0
		for v := 1; v <= 4; v++ {
			if s.n(10) == 0 {
				continue // some versions have no image
			}
			f := fw(fmt.Sprintf("%s-%d", slug, v), "V", "M", slug, strconv.Itoa(v))
			if opaque[slug] {
				f.Scheme = "opaque"
			}
			for range []int{0, 0, 1, 1, 2}[s.n(5)] {
				f.Requires = append(f.Requires, inventory.Requirement{
					Component:  fuzzSlugs[s.n(len(fuzzSlugs))],
					Constraint: fuzzOps[s.n(len(fuzzOps))] + strconv.Itoa(1+s.n(4)),
				})
			}
			if s.n(6) == 0 {
				f.After = []string{fuzzSlugs[s.n(len(fuzzSlugs))]}
			}
			// Images that cannot be downloaded or verified, as fleetdb records have.
			switch s.n(16) {
			case 0:
				f.URL = ""
			case 1:
				f.Checksum = ""
			case 2:
				f.Checksum = "crc32:deadbeef"
			}
			cat.Firmware = append(cat.Firmware, f)
			if s.n(12) == 0 {
				// A duplicate record of the same version that disagrees on requirements.
				d := *f
				d.ID += "-dup"
				d.Requires = append(slices.Clone(f.Requires), inventory.Requirement{Component: fuzzSlugs[s.n(len(fuzzSlugs))], Constraint: ">=" + strconv.Itoa(1+s.n(4))})
				cat.Firmware = append(cat.Firmware, &d)
			}
		}
	}
	force, reinstall := s.n(3) == 0, s.n(3) == 0
	switch s.n(2) {
	case 0:
		set := &inventory.FirmwareSet{ID: "set"}
		for _, slug := range fuzzSlugs {
			// Usually one version per slug, sometimes none, rarely two (AMBIGUOUS_FIRMWARE).
			var ids []string
			for _, f := range cat.Firmware {
				if f.Component == slug {
					ids = append(ids, f.ID)
				}
			}
			for range []int{0, 1, 1, 1, 1, 1, 1, 2}[s.n(8)] {
				if len(ids) > 0 {
					set.Firmware = append(set.Firmware, ids[s.n(len(ids))])
				}
			}
		}
		cat.Sets = []*inventory.FirmwareSet{set}
		return fuzzCase{srv, cat, Request{Mode: task.ModeFirmwareSet, Method: task.MethodOutOfBand, FirmwareSet: "set", Force: force, Reinstall: reinstall}}
	default:
		var items []task.Firmware
		for range 1 + s.n(3) {
			c := srv.Components[s.n(len(srv.Components))]
			// Versions 1-4 have records (usually); 5 never has one.
			it := task.Firmware{Component: c.Slug, Version: strconv.Itoa(1 + s.n(5)), Force: s.n(2) == 0, Reinstall: s.n(3) == 0}
			if s.n(3) == 0 {
				// The operator's own image, for a catalogued version or not.
				it.URL, it.Checksum = "https://mirror.example/"+c.Slug+".bin", otherSum
			}
			if s.n(4) != 0 {
				it.Serial = c.Serial
			}
			items = append(items, it)
		}
		return fuzzCase{srv, cat, Request{Mode: task.ModeFirmware, Method: task.MethodOutOfBand, Firmware: items}}
	}
}

// holds evaluates an integer constraint independently of the planner's code.
func holds(constraint string, v string, opaque bool) (ok, ordered bool) {
	for _, op := range fuzzOps {
		if len(constraint) > len(op) && constraint[:len(op)] == op {
			want := constraint[len(op):]
			if op != "=" && op != "!=" {
				ordered = true
			}
			if opaque && ordered {
				return false, true
			}
			a, _ := strconv.Atoi(v)
			b, _ := strconv.Atoi(want)
			switch op {
			case ">=":
				return a >= b, ordered
			case "<=":
				return a <= b, ordered
			case "=":
				return a == b, ordered
			case "!=":
				return a != b, ordered
			case ">":
				return a > b, ordered
			case "<":
				return a < b, ordered
			}
		}
	}
	return false, false
}

// checkPlan verifies a plan against the case independently: every instance changes at most
// once, downgrades and reinstalls only with force, and every requirement in force that involves
// a changed instance holds in every intermediate state, and self-requirements hold for the
// version each step starts from.
func checkPlan(t *testing.T, c fuzzCase, p *task.Plan) {
	t.Helper()
	recOf := map[string]*inventory.Firmware{}
	dups := map[string]bool{}
	for _, f := range c.cat.Firmware {
		k := f.Component + "@" + f.Version
		if o := recOf[k]; o != nil && termSet(o) != termSet(f) {
			dups[k] = true
		}
		if recOf[k] == nil || len(f.Requires) > len(recOf[k].Requires) {
			recOf[k] = f // the duplicate with more requirements: the checker holds the plan to both
		}
	}
	opaque := map[string]bool{}
	for _, f := range c.cat.Firmware {
		opaque[f.Component] = f.Scheme == "opaque"
	}
	cur := map[string]string{} // serial → version
	slugOf := map[string]string{}
	for _, comp := range c.srv.Components {
		cur[comp.Serial], slugOf[comp.Serial] = comp.Version, comp.Slug
	}
	changed := map[string]bool{}
	for k, st := range p.Steps {
		if changed[st.Serial] {
			t.Fatalf("step %d: %s changes twice", k, st.Serial)
		}
		if st.FromVersion != cur[st.Serial] {
			t.Fatalf("step %d: from %s, installed %s", k, st.FromVersion, cur[st.Serial])
		}
		a, _ := strconv.Atoi(st.FromVersion)
		b, _ := strconv.Atoi(st.ToVersion)
		if (b < a || opaque[st.Component] && a != b) && !st.Force {
			t.Fatalf("step %d: unforced change %d→%d of %s", k, a, b, st.Component)
		}
		if a == b && !st.Reinstall {
			t.Fatalf("step %d: reinstall nobody asked for", k)
		}
		// B2: never a silent choice between records that disagree.
		if dups[st.Component+"@"+st.ToVersion] {
			t.Fatalf("step %d: %s %s has two records with different requirements", k, st.Component, st.ToVersion)
		}
		// B1: a version without a record is flashed only when forced, and says so.
		if recOf[st.Component+"@"+st.ToVersion] == nil && (!st.Uncatalogued || !st.Force) {
			t.Fatalf("step %d: uncatalogued %s %s planned: %+v", k, st.Component, st.ToVersion, st)
		}
		// B3: every step has an image it can download and verify.
		if st.URL == "" || !verifiable.MatchString(st.Checksum) {
			t.Fatalf("step %d: image %q %q cannot be downloaded and verified", k, st.URL, st.Checksum)
		}
		if rec := recOf[st.Component+"@"+st.ToVersion]; rec != nil {
			for _, q := range rec.Requires {
				if q.Component == st.Component {
					if ok, _ := holds(q.Constraint, st.FromVersion, opaque[st.Component]); !ok {
						t.Fatalf("step %d: self-requirement %s not met by %s", k, q.Constraint, st.FromVersion)
					}
				}
			}
		}
		cur[st.Serial] = st.ToVersion
		changed[st.Serial] = true
		for i, vi := range cur {
			rec := recOf[slugOf[i]+"@"+vi]
			if rec == nil {
				continue
			}
			for _, q := range rec.Requires {
				if q.Component == slugOf[i] {
					continue
				}
				for j, vj := range cur {
					if slugOf[j] != q.Component || !changed[i] && !changed[j] {
						continue
					}
					if ok, _ := holds(q.Constraint, vj, opaque[q.Component]); !ok {
						t.Fatalf("after step %d: %s@%s requires %s %s, %s is at %s\nplan: %+v", k, slugOf[i], vi, q.Component, q.Constraint, j, vj, p.Steps)
					}
				}
			}
		}
	}
}

// termSet is a record's requirements and hints as a sorted set, so duplicates that say the same
// in another order or twice agree.
func termSet(f *inventory.Firmware) string {
	var ts []string
	for _, q := range f.Requires {
		ts = append(ts, q.Component+q.Constraint)
	}
	for _, a := range f.After {
		ts = append(ts, "after"+a)
	}
	slices.Sort(ts)
	return fmt.Sprint(slices.Compact(ts))
}

// verifiable is the checksum grammar written out independently of firmware.ParseChecksum.
var verifiable = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|md5:[0-9a-f]{32})$`)

func FuzzPlan(f *testing.F) {
	f.Add([]byte{3, 0, 1, 1, 2, 2, 0, 1, 1, 5, 0, 2, 1, 0, 0, 1, 2})
	f.Add([]byte{7, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19})
	f.Add([]byte{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := genCase(data)
		type result struct {
			p   *task.Plan
			err error
		}
		done := make(chan result, 1)
		go func() {
			_ = Lint(c.cat)
			p, err := New().Plan(c.srv, c.cat, c.req)
			done <- result{p, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("planner did not return within 10s")
		}
		if r.err != nil {
			var e *Error
			if !errors.As(r.err, &e) || e.Code == "" {
				t.Fatalf("unstructured error %v", r.err)
			}
			return
		}
		checkPlan(t, c, r.p)
	})
}
