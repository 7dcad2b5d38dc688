package task

import (
	"fmt"
	"time"
)

// The functions below are the only way a task changes state. Each checks the transition,
// updates the task's fields and timestamps for the given time, and returns the event to record.
// The store assigns the revision when it commits the change.

func (t *Task) transition(to State, kind EventKind, now time.Time, msg string) (Event, error) {
	if !CanTransition(t.State, to) {
		return Event{}, &TransitionError{TaskID: t.ID, From: t.State, To: to}
	}
	from := t.State
	t.State = to
	t.UpdatedAt = now
	return Event{TaskID: t.ID, Time: now, Kind: kind, From: from, To: to, Message: msg}, nil
}

// New returns a QUEUED task and its creation event.
func New(t Task, now time.Time) (*Task, Event) {
	t.State = StateQueued
	t.CreatedAt, t.UpdatedAt = now, now
	t.StartedAt, t.FinishedAt = time.Time{}, time.Time{}
	t.Failure = nil
	t.CancelRequested = false
	return &t, Event{TaskID: t.ID, Time: now, Kind: EventCreated, To: StateQueued}
}

// Start moves a QUEUED task to ACTIVE on behalf of worker.
func (t *Task) Start(worker string, now time.Time) (Event, error) {
	ev, err := t.transition(StateActive, EventStarted, now, "worker "+worker)
	if err != nil {
		return ev, err
	}
	t.Worker = worker
	t.StartedAt = now
	return ev, nil
}

// Requeue moves an ACTIVE task back to QUEUED, for a task whose worker stopped before it
// touched any hardware.
func (t *Task) Requeue(reason string, now time.Time) (Event, error) {
	ev, err := t.transition(StateQueued, EventRequeued, now, reason)
	if err != nil {
		return ev, err
	}
	t.Worker = ""
	t.StartedAt = time.Time{}
	return ev, nil
}

// Succeed moves an ACTIVE task to SUCCEEDED.
func (t *Task) Succeed(now time.Time) (Event, error) {
	ev, err := t.transition(StateSucceeded, EventSucceeded, now, t.cancelLost(StateSucceeded))
	if err == nil {
		t.end(now)
	}
	return ev, err
}

// cancelLost is the final event's note on a cancel that was requested but did not take effect
// because the task ended another way first.
func (t *Task) cancelLost(to State) string {
	if !t.CancelRequested {
		return ""
	}
	return fmt.Sprintf("the cancel requested did not take effect: the task ended %s before its next safe point", to)
}

// end stamps a task that reached a final state and closes every progress row still PENDING or
// RUNNING, so that no final task shows work in progress: in a SUCCEEDED task that work is done;
// otherwise a RUNNING row ends FAILED (its step was interrupted; the failure message says what
// was observed) and a PENDING one SKIPPED (never started).
func (t *Task) end(now time.Time) {
	t.FinishedAt = now
	for i := range t.Progress {
		p := &t.Progress[i]
		switch {
		case p.State != StepRunning && p.State != StepPending:
			continue
		case t.State == StateSucceeded:
			p.State = StepSucceeded
		case p.State == StepRunning:
			p.State = StepFailed
			p.Message = closed(p.Message, "interrupted: the task ended "+string(t.State))
		default:
			p.State = StepSkipped
			p.Message = closed(p.Message, "not started: the task ended "+string(t.State))
		}
		p.UpdatedAt = now
	}
}

func closed(msg, why string) string {
	if msg == "" {
		return why
	}
	return msg + " (" + why + ")"
}

// Fail moves an ACTIVE task to FAILED with the reason.
func (t *Task) Fail(f Failure, now time.Time) (Event, error) {
	if f.Code == "" {
		f.Code = CodeInternal
	}
	msg := string(f.Code) + ": " + f.Message
	if f.Component != "" {
		msg = fmt.Sprintf("%s (%s): %s", f.Code, f.Component, f.Message)
	}
	if note := t.cancelLost(StateFailed); note != "" {
		msg += "; " + note
	}
	ev, err := t.transition(StateFailed, EventFailed, now, msg)
	if err == nil {
		t.Failure = &f
		t.end(now)
	}
	return ev, err
}

// Cancel cancels a QUEUED task at once. An ACTIVE task is only marked: it is cancelled by its
// executor at the next safe point (CancelActive). done reports whether the task is now CANCELLED.
func (t *Task) Cancel(reason string, now time.Time) (ev Event, done bool, err error) {
	switch t.State {
	case StateQueued:
		ev, err = t.transition(StateCancelled, EventCancelled, now, reason)
		if err == nil {
			t.end(now)
		}
		return ev, err == nil, err
	case StateActive:
		if t.CancelRequested {
			return Event{}, false, nil
		}
		t.CancelRequested = true
		t.UpdatedAt = now
		return Event{TaskID: t.ID, Time: now, Kind: EventCancelRequested, From: t.State, To: t.State, Message: reason}, false, nil
	default:
		return Event{}, false, &TransitionError{TaskID: t.ID, From: t.State, To: StateCancelled}
	}
}

// CancelActive moves an ACTIVE task to CANCELLED; where says at which safe point it stopped.
func (t *Task) CancelActive(where string, now time.Time) (Event, error) {
	ev, err := t.transition(StateCancelled, EventCancelled, now, where)
	if err == nil {
		t.end(now)
	}
	return ev, err
}

// SetProgress records the progress of one component instance of an ACTIVE task, replacing any
// earlier entry for the same instance.
func (t *Task) SetProgress(p Progress, now time.Time) (Event, error) {
	if t.State != StateActive {
		return Event{}, &TransitionError{TaskID: t.ID, From: t.State, To: t.State}
	}
	if p.Percent < 0 {
		p.Percent = 0
	}
	if p.Percent > 100 {
		p.Percent = 100
	}
	p.UpdatedAt = now
	t.UpdatedAt = now
	replaced := false
	for i := range t.Progress {
		if t.Progress[i].Component == p.Component && t.Progress[i].Serial == p.Serial {
			t.Progress[i] = p
			replaced = true
			break
		}
	}
	if !replaced {
		t.Progress = append(t.Progress, p)
	}
	msg := fmt.Sprintf("%s %s %s %d%%", p.Component, p.State, p.Step, p.Percent)
	if p.Message != "" {
		msg += ": " + p.Message
	}
	return Event{TaskID: t.ID, Time: now, Kind: EventProgress, From: t.State, To: t.State, Message: msg}, nil
}

// SetPlan records a plan an executor computed against live installed versions when it started
// or resumed the task. It never rewrites history: the plan the operator was shown (Plan) stays,
// and the live plan is added to Replans, whose first entry holds the snapshot taken before the
// first step. A task created unplanned takes the first live plan as its Plan too. The resolved
// set follows the plan.
func (t *Task) SetPlan(p *Plan, now time.Time) (Event, error) {
	if t.State != StateActive || p == nil {
		return Event{}, &TransitionError{TaskID: t.ID, From: t.State, To: t.State}
	}
	if t.Plan == nil {
		t.Plan = p.clone()
	}
	t.Replans = append(t.Replans, *p.clone())
	if p.FirmwareSet != "" {
		t.FirmwareSet = p.FirmwareSet
	}
	t.UpdatedAt = now
	what := "re-planned"
	if len(t.Replans) == 1 {
		what = "planned"
	}
	return Event{TaskID: t.ID, Time: now, Kind: EventPlanned, From: t.State, To: t.State,
		Message: fmt.Sprintf("%s %d step(s) against installed versions", what, len(p.Steps))}, nil
}
