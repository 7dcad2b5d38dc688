package task

import "context"

// holdKey carries a task's hold check in a context.
type holdKey struct{}

// WithHold returns ctx carrying held, which reports whether this process still holds the right to
// act for the task: nil while it does, the reason once it does not (as when another replica's
// lease took the task over). The scheduler sets it on an executor's context; executors check it
// before every request to the hardware, since a process stopped past its lease may run again
// before anything has cancelled its context.
func WithHold(ctx context.Context, held func() error) context.Context {
	return context.WithValue(ctx, holdKey{}, held)
}

// HoldCheck returns the hold check in ctx, or nil when there is none (the task is not leased).
// Executors keep the function, not the context, to check it for calls made later under other
// contexts (a logout in the background).
func HoldCheck(ctx context.Context) func() error {
	held, _ := ctx.Value(holdKey{}).(func() error)
	return held
}
