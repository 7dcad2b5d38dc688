package rollout

import (
	"fmt"
	"time"
)

// Rollout is the recorded state of one rollout, as much as its rules need.
type Rollout struct {
	State   State
	Reason  PauseReason // when PAUSED
	Message string      // why it is paused or how it ended, in words

	Strategy Strategy
	Windows  Windows
	Deadline time.Time // zero: none

	Rows []Row
	// Batch is the index of the batch now running (0 is the canary); Batches is how many there
	// are. Batch == Batches once every batch has been started and has ended.
	Batch, Batches int

	// OperatorPaused is set by PauseRollout and cleared by ResumeRollout.
	OperatorPaused bool
	// CanaryApproved is set by ApproveRollout.
	CanaryApproved bool
	// Forgiven is the number of failures an operator accepted by resuming after a budget pause;
	// the budget counts only failures beyond it.
	Forgiven int
	// Cancelled is set by CancelRollout: nothing new starts, queued tasks are cancelled by the
	// runner, and the rollout ends CANCELLED when nothing is in flight.
	Cancelled bool
}

// Step applies the rules at time now: it moves the rollout through its batches, pauses or ends
// it, and returns the servers whose tasks should start now. Those rows are already marked
// QUEUED: the runner persists the rollout before creating their tasks, with a request id made
// of the rollout's and the server's ids, so a crash between the two never starts a server
// twice. Step is deterministic and idempotent: called again at the same time with no new
// outcomes, it starts nothing more.
func (r *Rollout) Step(now time.Time) []string {
	if r.State.Terminal() {
		return nil
	}
	c := Count(r.Rows)

	// A batch is over when none of its servers is waiting or in flight; move past every batch
	// that is over, stopping at the canary's approval.
	for r.Batch < r.Batches && r.batchOver(r.Batch) {
		if r.Batch == 0 && r.Strategy.ApproveAfterCanary && !r.CanaryApproved && r.Batches > 1 {
			break
		}
		r.Batch++
	}

	if r.Cancelled || (!r.Deadline.IsZero() && !now.Before(r.Deadline)) {
		why := "cancelled by an operator"
		if !r.Cancelled {
			why = "the deadline " + r.Deadline.UTC().Format(time.RFC3339) + " passed"
		}
		for i := range r.Rows {
			if r.Rows[i].State == ServerWaiting {
				r.Rows[i].State, r.Rows[i].Reason = ServerCancelled, "never started: "+why
			}
		}
		c = Count(r.Rows)
		if c.InFlight() > 0 {
			r.State, r.Reason, r.Message = StateRunning, "", why+"; waiting for "+plural(c.InFlight(), "task")+" in flight"
			return nil
		}
		r.Reason, r.Message = "", why+": "+c.String()
		r.State = StateCancelled
		if !r.Cancelled {
			r.State = StateFailed
		}
		return nil
	}

	if r.Batch >= r.Batches && c.InFlight() == 0 && c[ServerWaiting] == 0 {
		r.Reason, r.Message = "", c.String()
		if c[ServerFailed] > 0 || c[ServerRefused] > 0 || c[ServerCancelled] > 0 {
			r.State = StateFailed
		} else {
			r.State = StateSucceeded
		}
		return nil
	}

	failed := c[ServerFailed] - r.Forgiven
	switch {
	case r.Strategy.Budget.Exceeded(failed, c.Participants()):
		r.pause(PauseBudget, fmt.Sprintf("failure budget exceeded: %s of %d servers failed", plural(c[ServerFailed], "server"), c.Participants()), c)
		return nil
	case r.OperatorPaused:
		r.pause(PauseOperator, "paused by an operator", c)
		return nil
	case r.Batch == 0 && r.Batches > 1 && r.Strategy.ApproveAfterCanary && !r.CanaryApproved && r.batchOver(0):
		r.pause(PauseApproval, "the canary batch is done: approve to continue", c)
		return nil
	case !r.Windows.Open(now):
		msg := "outside every maintenance window"
		if start, _, ok := r.Windows.Next(now); ok {
			msg += "; the next opens at " + start.UTC().Format(time.RFC3339)
		}
		r.pause(PauseWindow, msg, c)
		return nil
	}
	r.State, r.Reason, r.Message = StateRunning, "", ""
	if r.Batch >= r.Batches {
		return nil
	}
	return r.start(c)
}

// start marks the current batch's waiting servers QUEUED, within MaxInFlight and MaxPerGroup.
func (r *Rollout) start(c Counts) []string {
	limit := r.Strategy.MaxInFlight
	if limit == 0 {
		limit = len(r.Rows)
	}
	room := limit - c.InFlight()
	perGroup := map[string]int{}
	for _, row := range r.Rows {
		if row.State.InFlight() {
			perGroup[row.Group]++
		}
	}
	var started []string
	for i := range r.Rows {
		row := &r.Rows[i]
		if room <= 0 {
			break
		}
		if row.Batch != r.Batch || row.State != ServerWaiting {
			continue
		}
		if r.Strategy.MaxPerGroup > 0 && perGroup[row.Group] >= r.Strategy.MaxPerGroup {
			continue
		}
		row.State = ServerQueued
		perGroup[row.Group]++
		room--
		started = append(started, row.ServerID)
	}
	return started
}

func (r *Rollout) batchOver(b int) bool {
	for _, row := range r.Rows {
		if row.Batch == b && !row.State.Ended() {
			return false
		}
	}
	return true
}

// pause records a pause; tasks already in flight go on and finish.
func (r *Rollout) pause(reason PauseReason, msg string, c Counts) {
	if n := c.InFlight(); n > 0 {
		msg += fmt.Sprintf(" (%s in flight will finish)", plural(n, "task"))
	}
	r.State, r.Reason, r.Message = StatePaused, reason, msg
}

// Resume clears an operator's pause and accepts the failures so far against the budget.
func (r *Rollout) Resume() {
	r.OperatorPaused = false
	r.Forgiven = Count(r.Rows)[ServerFailed]
}

// Observe records the outcome of a server's task: its state (QUEUED, ACTIVE, SUCCEEDED, FAILED,
// CANCELLED) and, for a failure, its code. It reports whether the row changed.
func (r *Rollout) Observe(serverID, taskID string, state ServerState, code string) bool {
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.ServerID != serverID {
			continue
		}
		if row.State == state && row.TaskID == taskID && row.Code == code {
			return false
		}
		if row.State.Ended() {
			return false // an ended row never moves again
		}
		row.State, row.TaskID, row.Code = state, taskID, code
		return true
	}
	return false
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
