package plan

import (
	"fmt"
	"slices"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/task"
)

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
