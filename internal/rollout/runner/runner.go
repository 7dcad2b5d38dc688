// Package runner drives stored rollouts: for each rollout that has not ended it feeds the
// outcomes of its tasks back into the rules (internal/rollout), persists the step, and only then
// creates the tasks the step named, each with the request id "<rollout id>/<server id>", so a
// crash between the two, or a second replica doing the same step, never gives a server two
// tasks.
package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// Tasks creates and cancels tasks the way the task API does (planning, queueing).
type Tasks interface {
	// Create plans and queues t, idempotently on t.RequestID, and returns the stored task. A
	// refusal is a *task.FailureError. waitForAgent queues an IN_BAND task whose agent is not
	// connected instead of refusing it.
	Create(ctx context.Context, t *task.Task, waitForAgent bool) (*task.Task, error)
	// Cancel cancels a queued task, or asks a running one to stop at its next safe point.
	Cancel(ctx context.Context, id, reason string) error
}

// Config configures a Runner. Store, Rollouts and Tasks are required.
type Config struct {
	Store    store.Store
	Rollouts store.Rollouts
	Tasks    Tasks
	// Now is the clock the rules see (windows, deadline); time.Now when nil.
	Now func() time.Time
	// Tick is how often every rollout is stepped without a store change (windows open and
	// close with no change); 0 means 10s.
	Tick   time.Duration
	Logger *slog.Logger
}

// Runner steps rollouts.
type Runner struct {
	cfg Config
	log *slog.Logger
}

// New returns a Runner.
func New(cfg Config) *Runner {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{cfg: cfg, log: cfg.Logger.With("part", "rollout")}
}

// RequestID is the request id of the task a rollout creates for a server.
func RequestID(rolloutID, serverID string) string { return rolloutID + "/" + serverID }

// Run steps every rollout that has not ended, at every committed store change and every tick,
// until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	changes, stop := r.cfg.Store.Subscribe()
	defer stop()
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	for {
		if err := r.StepAll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("rollout step failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-tick.C:
		}
	}
}

// StepAll steps every rollout that has not ended.
func (r *Runner) StepAll(ctx context.Context) error {
	active, err := r.cfg.Rollouts.ListRollouts(ctx, true)
	if err != nil {
		return fmt.Errorf("rollout runner: %w", err)
	}
	var errs []error
	for _, rec := range active {
		if err := r.Step(ctx, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Step brings one rollout up to date: outcomes of its tasks, then the rules at the current time,
// then the tasks they start. A concurrent writer (an operator's call, another replica) makes it
// stop without harm; the next signal steps again from the stored record.
func (r *Runner) Step(ctx context.Context, id string) error {
	rec, err := r.cfg.Rollouts.GetRollout(ctx, id)
	if err != nil {
		return fmt.Errorf("rollout %s: %w", id, err)
	}
	if rec.Rollout.State.Terminal() {
		return nil
	}
	ro := &rec.Rollout
	before, err := store.EncodeRollout(rec)
	if err != nil {
		return err
	}
	// Rows QUEUED with no task yet were persisted by a step whose task creation did not finish
	// (a crash, a refused create): create them now, under the same request id.
	var pending []string
	for _, row := range ro.Rows {
		switch {
		case row.State == rollout.ServerQueued && row.TaskID == "":
			pending = append(pending, row.ServerID)
		case row.State.InFlight():
			t, err := r.cfg.Store.GetTask(ctx, row.TaskID)
			if err != nil {
				return fmt.Errorf("rollout %s, server %s: task %s: %w", id, row.ServerID, row.TaskID, err)
			}
			state, code := outcome(t)
			ro.Observe(row.ServerID, t.ID, state, code)
		}
	}
	if ro.Cancelled {
		for _, row := range ro.Rows {
			if row.State.InFlight() && row.TaskID != "" {
				if err := r.cfg.Tasks.Cancel(ctx, row.TaskID, "rollout "+id+" cancelled"); err != nil {
					r.log.Warn("cancel of a rollout's task failed", "rollout", id, "server", row.ServerID, "task", row.TaskID, "err", err)
				}
			}
		}
		pending = nil // nothing new starts once cancelled
	}
	started := ro.Step(r.cfg.Now())
	pending = append(pending, started...)
	if len(pending) == 0 {
		// Nothing to start: write only a change, since every write wakes the runners and
		// watchers again.
		if after, err := store.EncodeRollout(rec); err != nil || bytes.Equal(before, after) {
			return err
		}
		return r.save(ctx, rec)
	}
	// Persist before creating: the rows are QUEUED in the store before any task exists.
	if err := r.save(ctx, rec); err != nil {
		return err
	}
	for _, server := range pending {
		t := rec.Template.Clone()
		t.ID, t.ServerID, t.RequestID, t.Requester, t.RolloutID = "", server, RequestID(id, server), rec.Requester, id
		created, err := r.cfg.Tasks.Create(ctx, t, rec.WaitForAgent)
		if err != nil {
			// The row stays QUEUED without a task; a refusal fails the row with its code.
			var fe *task.FailureError
			if errors.As(err, &fe) {
				ro.Observe(server, "", rollout.ServerFailed, string(fe.Code))
				continue
			}
			return errors.Join(fmt.Errorf("rollout %s, server %s: create task: %w", id, server, err), r.save(ctx, rec))
		}
		ro.Observe(server, created.ID, rollout.ServerQueued, "")
	}
	return r.save(ctx, rec)
}

func (r *Runner) save(ctx context.Context, rec *store.RolloutRecord) error {
	rec.UpdatedAt = r.cfg.Now()
	if _, err := r.cfg.Rollouts.UpdateRollout(ctx, rec, rec.Version); err != nil {
		return fmt.Errorf("rollout %s: %w", rec.ID, err)
	}
	return nil
}

// outcome maps a task to the state of its rollout row.
func outcome(t *task.Task) (rollout.ServerState, string) {
	switch t.State {
	case task.StateActive:
		return rollout.ServerActive, ""
	case task.StateSucceeded:
		return rollout.ServerSucceeded, ""
	case task.StateFailed:
		if t.Failure != nil {
			return rollout.ServerFailed, string(t.Failure.Code)
		}
		return rollout.ServerFailed, ""
	case task.StateCancelled:
		return rollout.ServerCancelled, ""
	}
	return rollout.ServerQueued, ""
}

// Hold marks HELD, "held by rollout X", each of rows whose server another rollout that has not
// ended still holds (a row not yet ended), so a server is in one rollout at a time. It is called
// when a rollout is created, before its batches are assigned.
func Hold(ctx context.Context, rs store.Rollouts, rows []rollout.Row) error {
	active, err := rs.ListRollouts(ctx, true)
	if err != nil {
		return fmt.Errorf("rollout hold: %w", err)
	}
	holder := map[string]string{}
	for _, rec := range active {
		for _, row := range rec.Rollout.Rows {
			if !row.State.Ended() {
				holder[row.ServerID] = rec.ID
			}
		}
	}
	for i := range rows {
		if id, ok := holder[rows[i].ServerID]; ok && !rows[i].State.Ended() {
			rows[i].State, rows[i].Reason = rollout.ServerHeld, "held by rollout "+id
		}
	}
	return nil
}
