package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// Status is how a component, or a whole server, stands against its firmware set.
type Status string

// Compliance statuses. A server takes the first of these that any of its components has, in
// the order Refused, Outdated, Ahead, Unknown, Stale, Compliant.
const (
	// StatusCompliant: the observed version is the wanted one.
	StatusCompliant Status = "compliant"
	// StatusOutdated: the observed version differs from the wanted one and is not ahead of it.
	StatusOutdated Status = "outdated"
	// StatusAhead: the observed version is newer than the wanted one.
	StatusAhead Status = "ahead"
	// StatusUnknown: Flasher never observed the component; only a declared version exists.
	StatusUnknown Status = "unknown"
	// StatusStale: the observation is older than the configured max age.
	StatusStale Status = "stale"
	// StatusRefused: the planner refuses the server's set (Code says why).
	StatusRefused Status = "refused"
)

// Statuses lists every status in the order a server takes the first one found.
var Statuses = []Status{StatusRefused, StatusOutdated, StatusAhead, StatusUnknown, StatusStale, StatusCompliant}

func rank(s Status) int {
	for i, x := range Statuses {
		if x == s {
			return i
		}
	}
	return len(Statuses)
}

// ComponentCompliance is one component instance against its set.
type ComponentCompliance struct {
	Component, Serial, Vendor, Model string
	Wanted                           string
	FirmwareID                       string
	// Installed is the freshest version known, from Source at ObservedAt (zero for a
	// declaration without a time).
	Installed  string
	Source     string
	ObservedAt time.Time
	Status     Status
}

// ServerCompliance is one server against its set.
type ServerCompliance struct {
	ServerID string
	// Set is the firmware set's id; Resolved says it was found by the server's labels rather
	// than named by the request.
	Set      string
	Resolved bool
	Status   Status
	// Code and Reason say why the planner refused (StatusRefused).
	Code       string
	Reason     string
	Components []ComponentCompliance
	// ObservedAt is the oldest observation among the components (zero if one is unobserved).
	ObservedAt time.Time
}

// ComplianceRequest asks how servers stand.
type ComplianceRequest struct {
	Selector Selector
	// FirmwareSet names the set to compare with (id or name); empty resolves each server's set
	// by its vendor and model, as a resolve task would.
	FirmwareSet string
}

// Summary counts servers by set and status.
type Summary struct {
	Servers int
	// Counts[set][status] is the number of servers; set "" holds servers refused before a set
	// was found.
	Counts map[string]map[Status]int
}

// Compliance answers for the servers req selects, in id order.
func (f *Fleet) Compliance(ctx context.Context, req ComplianceRequest) ([]ServerCompliance, error) {
	servers, cat, err := f.selectServers(ctx, req.Selector)
	if err != nil {
		return nil, err
	}
	planner := plan.New()
	now := f.cfg.Now()
	out := make([]ServerCompliance, 0, len(servers))
	for _, srv := range servers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out = append(out, f.serverCompliance(planner, srv, cat, req.FirmwareSet, now))
	}
	return out, nil
}

// Summarize counts the statuses of a compliance answer.
func Summarize(res []ServerCompliance) Summary {
	s := Summary{Servers: len(res), Counts: map[string]map[Status]int{}}
	for _, r := range res {
		m := s.Counts[r.Set]
		if m == nil {
			m = map[Status]int{}
			s.Counts[r.Set] = m
		}
		m[r.Status]++
	}
	return s
}

// selectServers returns the selected servers with their observations overlaid, and the catalog.
func (f *Fleet) selectServers(ctx context.Context, sel Selector) ([]*inventory.Server, *inventory.Catalog, error) {
	if err := sel.Validate(); err != nil {
		return nil, nil, err
	}
	all, err := f.cfg.Inventory.Servers(ctx)
	if err != nil {
		return nil, nil, err
	}
	servers, err := sel.Select(all)
	if err != nil {
		return nil, nil, err
	}
	servers, err = f.overlayAll(ctx, servers, len(servers) == len(all))
	if err != nil {
		return nil, nil, err
	}
	cat, err := f.cfg.Inventory.Catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	return servers, cat, nil
}

// serverCompliance plans the set with force and reinstall for both methods: such a plan lists every member
// that applies, marking the ones already installed as reinstalls and the ones ahead as
// downgrades, so each component's standing comes from the planner's own matching and version
// order.
func (f *Fleet) serverCompliance(planner *plan.Planner, srv *inventory.Server, cat *inventory.Catalog, set string, now time.Time) ServerCompliance {
	out := ServerCompliance{ServerID: srv.ID, Status: StatusCompliant, Set: set, Resolved: set == ""}
	// Force lets members behind an installed version appear (as downgrades), Reinstall members
	// already at their version (as reinstalls): without either, they would drop out of the list.
	req := plan.Request{Mode: task.ModeResolve, Force: true, Reinstall: true}
	if set != "" {
		req.Mode, req.FirmwareSet = task.ModeFirmwareSet, set
	}
	steps := map[string][]task.Step{}
	for i, m := range []task.Method{task.MethodOutOfBand, task.MethodInBand} {
		req.Method = m
		p, err := planner.Plan(srv, cat, req)
		if err != nil {
			out.Status, out.Components = StatusRefused, nil
			var pe *plan.Error
			if errors.As(err, &pe) {
				out.Code = string(pe.Code)
			}
			out.Reason = err.Error()
			return out
		}
		out.Set = p.FirmwareSet
		for _, st := range p.Steps {
			k := stepKey(st.Component, st.Serial)
			steps[k] = append(steps[k], st)
		}
		if i == 0 && !hasMethodMismatch(p) {
			break
		}
	}
	oldest, unobserved := time.Time{}, false
	for _, c := range srv.Components {
		k := stepKey(c.Slug, c.Serial)
		q := steps[k]
		if len(q) == 0 {
			continue // no member of the set applies to it
		}
		st := q[0]
		steps[k] = q[1:]
		cc := ComponentCompliance{
			Component: c.Slug, Serial: c.Serial, Vendor: c.Vendor, Model: c.Model,
			Wanted: st.ToVersion, FirmwareID: st.FirmwareID,
			Installed: c.Version, Source: c.VersionSource, ObservedAt: c.VersionAt,
		}
		switch {
		case c.VersionSource == string(store.SourceDeclared) || c.VersionSource == "":
			cc.Status, unobserved = StatusUnknown, true
		case f.cfg.MaxAge > 0 && now.Sub(c.VersionAt) > f.cfg.MaxAge:
			cc.Status = StatusStale
		case st.Reinstall:
			cc.Status = StatusCompliant
		case st.Downgrade:
			cc.Status = StatusAhead
		default:
			cc.Status = StatusOutdated
		}
		if cc.Source != string(store.SourceDeclared) && (oldest.IsZero() || c.VersionAt.Before(oldest)) {
			oldest = c.VersionAt
		}
		if rank(cc.Status) < rank(out.Status) {
			out.Status = cc.Status
		}
		out.Components = append(out.Components, cc)
	}
	if !unobserved {
		out.ObservedAt = oldest
	}
	return out
}

func stepKey(component, serial string) string {
	return strings.ToLower(firmware.NormalizeSlug(component)) + "/" + strings.ToLower(strings.TrimSpace(serial))
}

func hasMethodMismatch(p *task.Plan) bool {
	for _, s := range p.Skipped {
		if strings.HasPrefix(s.Reason, plan.ReasonMethodMismatch) {
			return true
		}
	}
	return false
}

// String names a summary for logs.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d servers", s.Servers)
	sets := make([]string, 0, len(s.Counts))
	for k := range s.Counts {
		sets = append(sets, k)
	}
	sort.Strings(sets)
	for _, set := range sets {
		fmt.Fprintf(&b, "; set %q:", set)
		for _, st := range Statuses {
			if n := s.Counts[set][st]; n > 0 {
				fmt.Fprintf(&b, " %s=%d", st, n)
			}
		}
	}
	return b.String()
}

// CompliancePage answers for the selected servers after the id `after`, at most size of them,
// planning only those; next is the id to continue after ("" at the end).
func (f *Fleet) CompliancePage(ctx context.Context, req ComplianceRequest, after string, size int) (_ []ServerCompliance, next string, _ error) {
	if err := req.Selector.Validate(); err != nil {
		return nil, "", err
	}
	all, err := f.cfg.Inventory.Servers(ctx)
	if err != nil {
		return nil, "", err
	}
	servers, err := req.Selector.Select(all)
	if err != nil {
		return nil, "", err
	}
	i := sort.Search(len(servers), func(i int) bool { return servers[i].ID > after })
	end := min(len(servers), i+size)
	if end < len(servers) {
		next = servers[end-1].ID
	}
	page, err := f.overlayAll(ctx, servers[i:end], false)
	if err != nil {
		return nil, "", err
	}
	cat, err := f.cfg.Inventory.Catalog(ctx)
	if err != nil {
		return nil, "", err
	}
	planner, now := plan.New(), f.cfg.Now()
	out := make([]ServerCompliance, 0, len(page))
	for _, srv := range page {
		out = append(out, f.serverCompliance(planner, srv, cat, req.FirmwareSet, now))
	}
	return out, next, nil
}
