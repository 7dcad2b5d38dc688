// Package rollout owns the rules of a rollout: one install spec applied to many servers, a few at
// a time (a canary, then batches), at most N at once per group, only inside maintenance windows,
// pausing itself when failures exceed a budget or until an operator approves the canary.
//
// This package is the pure core: it decides, from a rollout's recorded state and the time, which
// servers may start now and what state the rollout is in. It does no I/O and keeps no clock:
// a runner creates the tasks it names (idempotently, one request id per rollout and server),
// feeds their outcomes back, and persists the result, so a restarted or another replica carries
// on from the record without starting a batch or a server twice.
package rollout

import (
	"fmt"
	"sort"
	"strings"
)

// State is where a rollout is in its life:
// PENDING → RUNNING ⇄ PAUSED → SUCCEEDED | FAILED | CANCELLED.
type State string

// Rollout states.
const (
	StatePending   State = "PENDING"
	StateRunning   State = "RUNNING"
	StatePaused    State = "PAUSED"
	StateSucceeded State = "SUCCEEDED"
	StateFailed    State = "FAILED"
	StateCancelled State = "CANCELLED"
)

// Terminal reports whether the rollout has ended.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

// PauseReason says why a rollout is PAUSED. A window pause ends by itself when a window opens;
// the others wait for the operator (ResumeRollout, or ApproveRollout for the canary).
type PauseReason string

// Pause reasons, from the strongest: when several hold, the first is shown.
const (
	PauseBudget   PauseReason = "BUDGET"
	PauseOperator PauseReason = "OPERATOR"
	PauseApproval PauseReason = "APPROVAL"
	PauseWindow   PauseReason = "WINDOW"
)

// ServerState is where one selected server is in the rollout.
type ServerState string

// Server states. SKIPPED, REFUSED and HELD are decided at creation and never start a task.
const (
	ServerSkipped   ServerState = "SKIPPED"   // already compliant with what the rollout installs
	ServerRefused   ServerState = "REFUSED"   // the planner refused it (Code says why)
	ServerHeld      ServerState = "HELD"      // another rollout holds it (Reason names it)
	ServerWaiting   ServerState = "WAITING"   // selected, its batch has not reached it yet
	ServerQueued    ServerState = "QUEUED"    // its task is queued
	ServerActive    ServerState = "ACTIVE"    // its task is running
	ServerSucceeded ServerState = "SUCCEEDED" // its task succeeded
	ServerFailed    ServerState = "FAILED"    // its task failed (Code says why)
	ServerCancelled ServerState = "CANCELLED" // its task was cancelled, or it never started (Reason)
)

// InFlight reports whether the server's task is queued or running.
func (s ServerState) InFlight() bool { return s == ServerQueued || s == ServerActive }

// Ended reports whether nothing more will happen to the server in this rollout.
func (s ServerState) Ended() bool {
	switch s {
	case ServerSkipped, ServerRefused, ServerHeld, ServerSucceeded, ServerFailed, ServerCancelled:
		return true
	}
	return false
}

// Row is one selected server.
type Row struct {
	ServerID string
	// Group is the server's value of Strategy.GroupBy (its rack, say); "" without grouping.
	Group string
	// Batch is the index of the batch the server belongs to (0 is the canary); -1 for servers
	// that never start (skipped, refused, held).
	Batch  int
	State  ServerState
	TaskID string
	// Code is the planner's refusal or the task's failure code.
	Code string
	// Reason explains SKIPPED, REFUSED, HELD and a CANCELLED server that never started.
	Reason string
}

// Budget is how many failures a rollout tolerates before it pauses: more than Count failed
// servers, or more than Percent % of the servers that take part. A Percent alone (Count 0)
// limits by percent only; the zero Budget pauses at the first failure.
type Budget struct {
	Count   int
	Percent int
}

// Strategy is how a rollout paces its tasks.
type Strategy struct {
	// Canary is the size of the first batch; 0 means 1.
	Canary int
	// BatchSize is the size of every later batch; or BatchPercent of the servers taking part
	// (rounded up). Exactly one is set.
	BatchSize    int
	BatchPercent int
	// MaxInFlight bounds the rollout's queued and running tasks; 0: the batch size.
	MaxInFlight int
	// GroupBy names a label (rack, site…); MaxPerGroup bounds the tasks in flight per value.
	GroupBy     string
	MaxPerGroup int
	Budget      Budget
	// ApproveAfterCanary pauses the rollout after the canary batch until an operator approves.
	ApproveAfterCanary bool
}

// Violation is a field of a rollout spec that cannot be accepted, and why.
type Violation struct {
	Field  string
	Reason string
}

func (v Violation) String() string { return v.Field + ": " + v.Reason }

// Validate refuses a strategy that could never run as written.
func (s Strategy) Validate() []Violation {
	var out []Violation
	add := func(field, reason string) { out = append(out, Violation{Field: "strategy." + field, Reason: reason}) }
	if s.Canary < 0 {
		add("canary", "must not be negative")
	}
	switch {
	case s.BatchSize < 0 || s.BatchPercent < 0:
		add("batch_size", "must not be negative")
	case s.BatchSize == 0 && s.BatchPercent == 0:
		add("batch_size", "a batch size (count or percent) greater than zero is required")
	case s.BatchSize > 0 && s.BatchPercent > 0:
		add("batch_size", "give a count or a percent, not both")
	case s.BatchPercent > 100:
		add("batch_percent", "must be at most 100")
	}
	if s.MaxInFlight < 0 {
		add("max_in_flight", "must not be negative")
	}
	if s.MaxPerGroup < 0 {
		add("max_per_group", "must not be negative")
	}
	if s.MaxPerGroup > 0 && s.GroupBy == "" {
		add("group_by", "max_per_group needs a label to group by")
	}
	if s.Budget.Count < 0 {
		add("failure_budget.count", "must not be negative")
	}
	if s.Budget.Percent < 0 || s.Budget.Percent > 100 {
		add("failure_budget.percent", "must be between 0 and 100")
	}
	return out
}

// Batches orders the servers that take part into the canary batch and the batches after it.
// Servers are spread across groups (round-robin over groups in name order, servers in id order
// within a group), so that one batch does not fill from a single rack and stall on its
// MaxPerGroup. The result is deterministic: a dry run and the real rollout agree.
func Batches(rows []Row, s Strategy) [][]string {
	byGroup := map[string][]string{}
	var groups []string
	for _, r := range rows {
		if !r.takesPart() {
			continue
		}
		if _, ok := byGroup[r.Group]; !ok {
			groups = append(groups, r.Group)
		}
		byGroup[r.Group] = append(byGroup[r.Group], r.ServerID)
	}
	sort.Strings(groups)
	var order []string
	for _, g := range groups {
		sort.Strings(byGroup[g])
	}
	for i := 0; len(order) < len(rows); i++ {
		added := false
		for _, g := range groups {
			if i < len(byGroup[g]) {
				order, added = append(order, byGroup[g][i]), true
			}
		}
		if !added {
			break
		}
	}
	if len(order) == 0 {
		return nil
	}
	canary := max(s.Canary, 1)
	size := s.BatchSize
	if s.BatchPercent > 0 {
		size = (len(order)*s.BatchPercent + 99) / 100
	}
	size = max(size, 1)
	canary = min(canary, len(order))
	batches := [][]string{order[:canary]}
	for rest := order[canary:]; len(rest) > 0; {
		n := min(size, len(rest))
		batches = append(batches, rest[:n])
		rest = rest[n:]
	}
	return batches
}

// Assign numbers every row that takes part with its batch (see Batches) and returns the number
// of batches. Rows that never start keep Batch -1.
func Assign(rows []Row, s Strategy) int {
	index := map[string]int{}
	batches := Batches(rows, s)
	for b, ids := range batches {
		for _, id := range ids {
			index[id] = b
		}
	}
	for i := range rows {
		if b, ok := index[rows[i].ServerID]; ok {
			rows[i].Batch = b
		} else {
			rows[i].Batch = -1
		}
	}
	return len(batches)
}

// Counts is how many servers are in each state.
type Counts map[ServerState]int

// takesPart reports whether the server is to get a task: not skipped, refused or held.
func (r Row) takesPart() bool {
	return r.State != ServerSkipped && r.State != ServerRefused && r.State != ServerHeld
}

// Count tallies rows by state.
func Count(rows []Row) Counts {
	c := Counts{}
	for _, r := range rows {
		c[r.State]++
	}
	return c
}

// Participants is the number of servers that take part: every row but skipped, refused, held.
func (c Counts) Participants() int {
	n := 0
	for s, k := range c {
		if (Row{State: s}).takesPart() {
			n += k
		}
	}
	return n
}

// InFlight is the number of queued and running tasks.
func (c Counts) InFlight() int { return c[ServerQueued] + c[ServerActive] }

func (c Counts) String() string {
	var parts []string
	for _, s := range []ServerState{ServerSucceeded, ServerFailed, ServerActive, ServerQueued, ServerWaiting, ServerSkipped, ServerRefused, ServerHeld, ServerCancelled} {
		if c[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[s], strings.ToLower(string(s))))
		}
	}
	return strings.Join(parts, ", ")
}

// Exceeded reports whether failed servers, out of participants, exceed the budget.
func (b Budget) Exceeded(failed, participants int) bool {
	byCount := b.Count > 0 || b.Percent == 0
	return (byCount && failed > b.Count) || (b.Percent > 0 && failed*100 > b.Percent*participants)
}
