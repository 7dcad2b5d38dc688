package task

import (
	"context"
	"fmt"
)

// Reporter is how an executor records what it does while it runs a task. Every call is durable
// when it returns.
type Reporter interface {
	// Progress records the progress of one component instance.
	Progress(ctx context.Context, p Progress) error
	// SetPlan records the plan the executor computed against fresh installed versions.
	SetPlan(ctx context.Context, p *Plan) error
	// CancelRequested reports whether a cancel arrived; executors check it at safe points.
	CancelRequested() bool
}

// FailureError is a failure an executor can explain; it becomes the task's Failure.
type FailureError struct {
	Failure
	Err error // the underlying cause, for logs; never shown to API callers
}

func (e *FailureError) Error() string {
	if e.Component != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Component, e.Message)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *FailureError) Unwrap() error { return e.Err }

// Fail returns a *FailureError.
func Fail(code Code, component, message string, err error) error {
	return &FailureError{Failure: Failure{Code: code, Component: component, Message: message}, Err: err}
}

// CancelledError says an executor stopped at a safe point because a cancel was requested.
type CancelledError struct {
	// Where names the safe point: "before BIOS upload", "after NIC verified", ...
	Where string
}

func (e *CancelledError) Error() string { return "cancelled " + e.Where }
