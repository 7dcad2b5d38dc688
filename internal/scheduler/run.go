package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// run is the task.Reporter of one ACTIVE task.
type run struct {
	s      *Scheduler
	id     string
	cancel atomic.Bool

	// With leases (Config.Leases): the lease the run holds, whether it was lost, the watchdog
	// that stops the run when the lease runs out by this process's clock before a renewal
	// (a process stopped past its lease wakes up to find it gone), and the executor's cancel.
	mu       sync.Mutex
	lease    store.Lease
	leased   bool
	lost     bool
	deadline time.Time // when the lease runs out by this process's clock, unless renewed
	watchdog *time.Timer
	stop     context.CancelFunc
}

var _ task.Reporter = (*run)(nil)

func (r *run) Progress(ctx context.Context, p task.Progress) error {
	return r.mutate(ctx, func(t *task.Task) (task.Event, error) {
		return t.SetProgress(p, r.s.now())
	})
}

func (r *run) SetPlan(ctx context.Context, p *task.Plan) error {
	return r.mutate(ctx, func(t *task.Task) (task.Event, error) {
		return t.SetPlan(p, r.s.now())
	})
}

func (r *run) CancelRequested() bool { return r.cancel.Load() }

// mutate makes one of the run's writes, fenced by its lease: a write refused because the lease
// is gone stops the run.
func (r *run) mutate(ctx context.Context, change func(*task.Task) (task.Event, error)) error {
	if r.isLost() {
		return store.ErrLeaseLost
	}
	err := r.s.Mutate(r.fenced(ctx), r.id, change)
	if errors.Is(err, store.ErrLeaseLost) {
		r.loseLease("a write was refused")
	}
	return err
}

// hold records the lease the run holds, acquired or renewed by a request sent at from.
func (r *run) hold(l store.Lease, from time.Time, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lease, r.leased, r.deadline = l, true, from.Add(d)
	r.watchdog = time.AfterFunc(time.Until(r.deadline), func() { r.loseLease("lease ran out before it was renewed") })
}

// renewed moves the watchdog after a renewal sent at from.
func (r *run) renewed(from time.Time, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leased && !r.lost {
		r.deadline = from.Add(d)
		r.watchdog.Reset(time.Until(r.deadline))
	}
}

// leaseHeld returns the run's lease while it holds one.
func (r *run) leaseHeld() (store.Lease, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease, r.leased && !r.lost
}

// fenced returns ctx carrying the run's lease, so the store refuses its writes once the lease
// is gone.
func (r *run) fenced(ctx context.Context) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leased {
		return ctx
	}
	return store.WithFence(ctx, r.lease)
}

// held is the run's task.WithHold check: the lease must be neither lost nor past its deadline by
// this process's clock. The deadline is checked itself, not left to the watchdog: a process
// stopped past its lease wakes with every timer due at once, and the executor's may fire first.
// Finding the deadline passed loses the lease at once, as the watchdog would.
func (r *run) held() error {
	r.mu.Lock()
	leased, lost, expired, l := r.leased, r.lost, !time.Now().Before(r.deadline), r.lease
	r.mu.Unlock()
	switch {
	case !leased:
		return nil
	case !lost && expired:
		r.loseLease("lease ran out before it was renewed")
	case !lost:
		return nil
	}
	return fmt.Errorf("task %s: lease on server %s (epoch %d) no longer held by %s: %w", r.id, l.ServerID, l.Epoch, l.Owner, store.ErrLeaseLost)
}

func (r *run) isLost() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// loseLease stops the run for good: its executor's context is cancelled and no write of it
// commits again. Another replica takes the task over from what is recorded.
func (r *run) loseLease(why string) {
	r.mu.Lock()
	if !r.leased || r.lost {
		r.mu.Unlock()
		return
	}
	r.lost = true
	r.watchdog.Stop()
	stop, l := r.stop, r.lease
	r.mu.Unlock()
	r.s.log.Warn("lease lost: stopping the task here, another replica takes it over", "task", r.id, "server", l.ServerID,
		"epoch", l.Epoch, "reason", why)
	if stop != nil {
		stop()
	}
}

// setStop gives the run its executor's cancel, calling it at once if the lease is already lost.
func (r *run) setStop(cancel context.CancelFunc) {
	r.mu.Lock()
	r.stop = cancel
	lost := r.lost
	r.mu.Unlock()
	if lost {
		cancel()
	}
}

// drop ends the run's lease bookkeeping when the run ends or never started.
func (r *run) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watchdog != nil {
		r.watchdog.Stop()
	}
}
