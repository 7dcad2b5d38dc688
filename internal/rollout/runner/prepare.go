package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// Spec is what a rollout is asked to do, before any server is chosen.
type Spec struct {
	Selector store.RolloutSelector
	// Template is the task every server gets (method, priority, install mode and firmware).
	Template task.Task
	Strategy rollout.Strategy
	Windows  rollout.Windows
	Deadline time.Time
}

// InvalidError is a spec that cannot be accepted, with every field at fault.
type InvalidError struct {
	Violations []rollout.Violation
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return "invalid rollout: " + strings.Join(parts, "; ")
}

// Planner plans one server's task from current inventory; a refusal is a *plan.Error.
type Planner interface {
	Plan(ctx context.Context, t *task.Task) (*task.Plan, error)
}

// Preparer turns a Spec into the rows of a rollout: it selects the servers, plans each one
// (compliant servers are skipped, refused ones are counted apart), marks those another rollout
// holds, and assigns the rest to batches. CreateRollout and PlanRollout both use it, so a dry
// run shows exactly the batches the rollout runs.
type Preparer struct {
	Fleet    *fleet.Fleet
	Planner  Planner
	Rollouts store.Rollouts
}

// Prepare validates spec at time now and returns its rows and the number of batches. A spec
// at fault returns an *InvalidError; a selector fleet refuses returns its *fleet.SelectorError.
func (p *Preparer) Prepare(ctx context.Context, spec Spec, now time.Time) ([]rollout.Row, int, error) {
	var bad []rollout.Violation
	bad = append(bad, spec.Strategy.Validate()...)
	bad = append(bad, spec.Windows.Validate(now)...)
	if !spec.Deadline.IsZero() && !spec.Deadline.After(now) {
		bad = append(bad, rollout.Violation{Field: "deadline", Reason: "is in the past"})
	}
	for i := range bad {
		bad[i].Field = "spec." + bad[i].Field
	}
	servers, err := p.selectServers(ctx, spec.Selector)
	var se *fleet.SelectorError
	switch {
	case errors.As(err, &se):
		bad = append(bad, rollout.Violation{Field: "spec.selector." + se.Field, Reason: se.Reason})
	case err != nil:
		return nil, 0, err
	case len(servers) == 0:
		bad = append(bad, rollout.Violation{Field: "spec.selector", Reason: "matches no server"})
	}
	if len(bad) > 0 {
		return nil, 0, &InvalidError{Violations: bad}
	}
	rows := make([]rollout.Row, 0, len(servers))
	for _, srv := range servers {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		row := rollout.Row{ServerID: srv.ID, Group: labelOf(srv, spec.Strategy.GroupBy), State: rollout.ServerWaiting}
		t := spec.Template.Clone()
		t.ServerID = srv.ID
		pl, err := p.Planner.Plan(ctx, t)
		var refusal *plan.Error
		switch {
		case errors.As(err, &refusal):
			row.State, row.Code, row.Reason = rollout.ServerRefused, string(refusal.Code), refusal.Message
		case err != nil:
			return nil, 0, fmt.Errorf("rollout: plan server %s: %w", srv.ID, err)
		case len(pl.Steps) == 0:
			row.State, row.Reason = rollout.ServerSkipped, "already compliant: nothing to install"
		}
		rows = append(rows, row)
	}
	if err := Hold(ctx, p.Rollouts, rows); err != nil {
		return nil, 0, err
	}
	return rows, rollout.Assign(rows, spec.Strategy), nil
}

// selectServers applies the selector to the fleet, then keeps only the servers not compliant
// with NoncompliantWith when it is set. A selector that selects the whole fleet without saying
// all: true is refused, so a mistyped filter never updates everything.
func (p *Preparer) selectServers(ctx context.Context, s store.RolloutSelector) ([]*inventory.Server, error) {
	sel := fleet.Selector{ServerIDs: s.ServerIDs, Labels: s.Labels, All: s.All}
	all, err := p.Fleet.Servers(ctx)
	if err != nil {
		return nil, fmt.Errorf("rollout: read servers: %w", err)
	}
	servers, err := sel.Select(all)
	if err != nil {
		return nil, err
	}
	if !s.All && len(all) > 1 && len(servers) == len(all) {
		return nil, &fleet.SelectorError{Field: "all", Reason: fmt.Sprintf("the selector matches every one of the %d servers: say all: true to update the whole fleet", len(all))}
	}
	if s.NoncompliantWith == "" || len(servers) == 0 {
		return servers, nil
	}
	res, err := p.Fleet.Compliance(ctx, fleet.ComplianceRequest{Selector: sel, FirmwareSet: s.NoncompliantWith})
	if err != nil {
		return nil, err
	}
	compliant := map[string]bool{}
	for _, r := range res {
		if r.Status == fleet.StatusCompliant {
			compliant[r.ServerID] = true
		}
	}
	out := servers[:0:0]
	for _, srv := range servers {
		if !compliant[srv.ID] {
			out = append(out, srv)
		}
	}
	return out, nil
}

// labelOf is a server's value of a label: one of its own labels, or the vendor, model or
// facility the inventory keeps.
func labelOf(srv *inventory.Server, label string) string {
	switch label {
	case "":
		return ""
	case "vendor":
		return srv.Vendor
	case "model":
		return srv.Model
	case "facility":
		return srv.Facility
	}
	return srv.Labels[label]
}

// PlannedBatch is one batch of a dry run and the window it could start in.
type PlannedBatch struct {
	Servers []string
	// WindowStart and WindowEnd are the earliest window the batch can start in (zero without
	// windows): for the canary the window open at now or next, for every later batch the first
	// window open at or after the previous one's start. How long a batch takes is not known in
	// advance, so this is the earliest possible, not a forecast.
	WindowStart, WindowEnd time.Time
}

// PlanBatches returns the batches rows run in, in order, with their earliest windows.
func PlanBatches(rows []rollout.Row, s rollout.Strategy, w rollout.Windows, now time.Time) []PlannedBatch {
	var out []PlannedBatch
	at := now
	for _, ids := range rollout.Batches(rows, s) {
		b := PlannedBatch{Servers: ids}
		if !w.Always() {
			if start, end, ok := w.Next(at); ok {
				b.WindowStart, b.WindowEnd = start, end
				at = start
			}
		}
		out = append(out, b)
	}
	return out
}
