package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/flasher-dev/flasher/internal/task"
)

// Executor runs ACTIVE tasks of one method. The out-of-band executor flashes through BMCs; the
// in-band executor hands tasks to host agents.
type Executor interface {
	// Execute runs t until it ends. It returns nil when every planned component is verified at
	// its new version, a *FailureError for a failure it can explain, a *CancelledError when it
	// stopped at a safe point after Reporter.CancelRequested, or the context's error when the
	// scheduler is shutting down (the task then stays ACTIVE and is resumed at the next start).
	// Execute is called again for a task that was ACTIVE when the process stopped: it must find
	// out what it already did instead of doing it twice.
	Execute(ctx context.Context, t *task.Task, r Reporter) error
}

// Reporter is how an executor records what it does. Every call is durable when it returns.
type Reporter interface {
	// Progress records the progress of one component instance.
	Progress(ctx context.Context, p task.Progress) error
	// SetPlan records the plan the executor computed against fresh installed versions.
	SetPlan(ctx context.Context, p *task.Plan) error
	// CancelRequested reports whether a cancel arrived; executors check it at safe points.
	CancelRequested() bool
}

// FailureError is a failure an executor can explain; it becomes the task's Failure.
type FailureError struct {
	task.Failure
	Err error // the underlying cause, for logs; never shown to API callers
}

func (e *FailureError) Error() string {
	if e.Component != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Component, e.Message)
	}
	return e.Code + ": " + e.Message
}

func (e *FailureError) Unwrap() error { return e.Err }

// Fail returns a *FailureError.
func Fail(code, component, message string, err error) error {
	return &FailureError{Failure: task.Failure{Code: code, Component: component, Message: message}, Err: err}
}

// CancelledError says an executor stopped at a safe point because a cancel was requested.
type CancelledError struct {
	// Where names the safe point: "before BIOS upload", "after NIC verified", ...
	Where string
}

func (e *CancelledError) Error() string { return "cancelled " + e.Where }

// outcome maps what Execute returned onto the task's end.
func outcome(err error) (f *task.Failure, cancelled *CancelledError, shutdown bool) {
	if err == nil {
		return nil, nil, false
	}
	var ce *CancelledError
	if errors.As(err, &ce) {
		return nil, ce, false
	}
	var fe *FailureError
	if errors.As(err, &fe) {
		f := fe.Failure
		return &f, nil, false
	}
	if errors.Is(err, context.Canceled) {
		return nil, nil, true
	}
	return &task.Failure{Code: "INTERNAL", Message: err.Error()}, nil, false
}
