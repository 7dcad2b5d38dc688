package scheduler

import (
	"context"
	"errors"

	"github.com/flasher-dev/flasher/internal/task"
)

// Executor runs ACTIVE tasks of one method. The out-of-band executor flashes through BMCs; the
// in-band executor hands tasks to host agents.
type Executor interface {
	// Execute runs t until it ends. It returns nil when every planned component is verified at
	// its new version, a *task.FailureError for a failure it can explain, a *task.CancelledError when it
	// stopped at a safe point after task.Reporter.CancelRequested, or the context's error when the
	// scheduler is shutting down (the task then stays ACTIVE and is resumed at the next start).
	// Execute is called again for a task that was ACTIVE when the process stopped: it must find
	// out what it already did instead of doing it twice.
	Execute(ctx context.Context, t *task.Task, r task.Reporter) error
}

// Outcome maps what Execute returned onto the task's end: its failure, the cancel it stopped
// for, or a shutdown that leaves it ACTIVE. Wrappers of executors (tracing) read it the same way.
func Outcome(err error) (f *task.Failure, cancelled *task.CancelledError, shutdown bool) {
	if err == nil {
		return nil, nil, false
	}
	var ce *task.CancelledError
	if errors.As(err, &ce) {
		return nil, ce, false
	}
	var fe *task.FailureError
	if errors.As(err, &fe) {
		f := fe.Failure
		return &f, nil, false
	}
	if errors.Is(err, context.Canceled) {
		return nil, nil, true
	}
	return &task.Failure{Code: task.CodeInternal, Message: err.Error()}, nil, false
}
