package plan

import (
	"context"
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// Replan plans t again when it starts or resumes, against live: the components and versions the
// hardware reports now (the BMC's firmware inventory, or the agent's), on srv, with the source's
// catalog. Both executors use it, so both apply the same rules and share one catalog index:
//   - a planner refusal fails the task PLAN_REFUSED, naming the planner's code;
//   - a plan that departs from the one the operator was shown (t.Plan; see task.Plan.Divergence)
//     fails it PLAN_DIVERGED, with both plans in the message. A task never succeeds by doing
//     less than it showed, nor flashes what it did not show.
//
// from names where live came from, for messages ("the BMC's inventory"). Errors are
// *task.FailureError, or the context's error when ctx ended.
func (sp *SourcePlanner) Replan(ctx context.Context, t *task.Task, srv *inventory.Server, live []inventory.Component, from string) (*task.Plan, error) {
	cat, err := sp.Source.Catalog(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, task.Fail(task.CodeInventoryError, "", "firmware catalog: "+err.Error(), err)
	}
	s := *srv
	s.Components = live
	p, err := sp.Planner.Plan(&s, cat, RequestFor(t))
	if err != nil {
		return nil, task.Fail(task.CodePlanRefused, "", fmt.Sprintf("server %s, against %s: %v", t.ServerID, from, err), err)
	}
	if t.Plan == nil {
		return p, nil
	}
	if d := t.Plan.Divergence(p); len(d) > 0 {
		return nil, task.Fail(task.CodePlanDiverged, "", fmt.Sprintf(
			"server %s: the plan against %s departs from the plan shown (%s); shown: %s; now: %s; nothing of it was started: check the server and create a new task",
			t.ServerID, from, strings.Join(d, "; "), t.Plan.Summary(), p.Summary()), nil)
	}
	return p, nil
}
