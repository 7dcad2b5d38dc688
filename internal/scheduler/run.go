package scheduler

import (
	"context"
	"sync/atomic"

	"github.com/flasher-dev/flasher/internal/task"
)

// run is the task.Reporter of one ACTIVE task.
type run struct {
	s      *Scheduler
	id     string
	cancel atomic.Bool
}

var _ task.Reporter = (*run)(nil)

func (r *run) Progress(ctx context.Context, p task.Progress) error {
	return r.s.Mutate(ctx, r.id, func(t *task.Task) (task.Event, error) {
		return t.SetProgress(p, r.s.now())
	})
}

func (r *run) SetPlan(ctx context.Context, p *task.Plan) error {
	return r.s.Mutate(ctx, r.id, func(t *task.Task) (task.Event, error) {
		return t.SetPlan(p, r.s.now())
	})
}

func (r *run) CancelRequested() bool { return r.cancel.Load() }
