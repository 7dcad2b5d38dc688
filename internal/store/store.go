// Package store persists tasks, their events, the store-wide change log that watchers resume
// from, and the fleet's observed component versions. Store is the one large interface of the project; the conformance suite in
// internal/store/storetest pins its behaviour for every backend (SQLite, the embedded default,
// and PostgreSQL). It holds no business rules: state changes are made by internal/task and
// committed here.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

var (
	// ErrNotFound is returned for a task id that does not exist.
	ErrNotFound = errors.New("task not found")
	// ErrConflict is returned by UpdateTask when the stored revision is not the expected one:
	// someone else changed the task first.
	ErrConflict = errors.New("task changed concurrently")
	// ErrCompacted is returned by Changes when the requested revision is older than the
	// change log keeps.
	ErrCompacted = errors.New("revision compacted")
	// ErrInvalidPageToken is returned by ListTasks for a page token it did not issue.
	ErrInvalidPageToken = errors.New("invalid page token")
	// ErrInvalidObservation is returned by RecordObservations for an observation missing a
	// required field.
	ErrInvalidObservation = errors.New("invalid observation")
)

// Filter selects tasks in ListTasks. Zero fields match everything.
type Filter struct {
	ServerID  string
	States    []task.State
	Method    task.Method
	Requester string
	// RolloutID selects the tasks one rollout created.
	RolloutID string
}

// Match reports whether t passes the filter.
func (f Filter) Match(t *task.Task) bool {
	if f.ServerID != "" && t.ServerID != f.ServerID {
		return false
	}
	if f.Method != "" && t.Method != f.Method {
		return false
	}
	if f.Requester != "" && t.Requester != f.Requester {
		return false
	}
	if f.RolloutID != "" && t.RolloutID != f.RolloutID {
		return false
	}
	if len(f.States) == 0 {
		return true
	}
	for _, s := range f.States {
		if t.State == s {
			return true
		}
	}
	return false
}

// Change is one committed change: the task as it is after the change, and the event recorded.
type Change struct {
	Revision int64
	Task     *task.Task
	Event    task.Event
}

// Store persists tasks. Every method is safe for concurrent use. A call that returned nil has
// been made durable: it survives a crash of the process.
type Store interface {
	// CreateTask stores a new task with its creation event and assigns it the next revision.
	// When t.RequestID is not empty and a task with that request id exists, CreateTask stores
	// nothing and returns the existing task with created=false.
	CreateTask(ctx context.Context, t *task.Task, ev task.Event) (stored *task.Task, created bool, err error)
	// GetTask returns a task by id, or ErrNotFound.
	GetTask(ctx context.Context, id string) (*task.Task, error)
	// ListTasks returns tasks matching f in creation order, at most pageSize (0 means 100, capped
	// at 1000), and a token for the next page ("" when there is none).
	ListTasks(ctx context.Context, f Filter, pageSize int, pageToken string) ([]*task.Task, string, error)
	// UpdateTask commits a change made with internal/task's functions, with its event, if the
	// stored task's revision equals expected; otherwise it returns ErrConflict and changes
	// nothing. It returns the new revision, which it also sets on t and the event.
	UpdateTask(ctx context.Context, t *task.Task, expected int64, ev task.Event) (int64, error)
	// Events returns every event of a task in order.
	Events(ctx context.Context, taskID string) ([]task.Event, error)
	// Changes returns the committed changes with revision > after, in revision order, at most
	// limit. It returns ErrCompacted when changes after `after` have been dropped.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// Revision returns the latest committed revision (0 for an empty store).
	Revision(ctx context.Context) (int64, error)
	// Compact drops change-log entries with revision <= rev. Tasks and events are kept.
	Compact(ctx context.Context, rev int64) error
	// Subscribe returns a channel that receives a value (coalesced, never blocking the writer)
	// after changes are committed, including by other processes sharing the backend, and a
	// function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
	// Close releases the store.
	Close() error

	Observations
}

// Source says where an observed version was read.
type Source string

// Sources of observations.
const (
	// SourceBMC is a version the server's BMC reported (a verification pass or a collect).
	SourceBMC Source = "bmc"
	// SourceAgent is a version the host agent reported (ironlib, at hello or after an install).
	SourceAgent Source = "agent"
	// SourceDeclared is a version an inventory source (the file, fleetdb) states.
	SourceDeclared Source = "declared"
)

// Valid reports whether s is one of the sources above.
func (s Source) Valid() bool {
	return s == SourceBMC || s == SourceAgent || s == SourceDeclared
}

// HistoryLimit is how many observations the store keeps per component instance, newest first
// (the current one included).
const HistoryLimit = 16

// Observation is one installed version of one component instance as some source saw it.
type Observation struct {
	ServerID string
	// Instance tells the server's component instances apart; the caller derives it (see
	// internal/fleet) and the store only compares it.
	Instance string
	// Component, Vendor, Model and Serial describe the instance as observed.
	Component string
	Vendor    string
	Model     string
	Serial    string
	Version   string
	Source    Source
	// ObservedAt is when the source read the version (not when it was stored).
	ObservedAt time.Time
	// TaskID or CollectID names the operation that made the observation, when there was one.
	TaskID    string
	CollectID string
}

// Observations keeps the newest observed version of every component instance and a bounded
// history. Methods are safe for concurrent use; a call that returned nil is durable.
type Observations interface {
	// RecordObservations stores observations. For each (ServerID, Instance) the one with the
	// latest ObservedAt becomes current (a tie goes to the later write); every observation is
	// also added to the instance's history, which keeps the newest HistoryLimit. An observation
	// with an empty ServerID, Instance or Version, an invalid Source or a zero ObservedAt is
	// refused and nothing of the call is stored.
	RecordObservations(ctx context.Context, obs []Observation) error
	// CurrentObservations returns the current observation of every instance of the named
	// servers (every server when serverIDs is empty), ordered by server id then instance.
	CurrentObservations(ctx context.Context, serverIDs []string) ([]Observation, error)
	// ObservationHistory returns the history of one instance, newest first (the order of
	// ObservedAt, ties by write order).
	ObservationHistory(ctx context.Context, serverID, instance string) ([]Observation, error)
}

// CheckObservations returns an error naming the first observation RecordObservations must refuse.
func CheckObservations(obs []Observation) error {
	for i, o := range obs {
		switch {
		case o.ServerID == "":
			return fmt.Errorf("observation %d: %w: server id is empty", i, ErrInvalidObservation)
		case o.Instance == "":
			return fmt.Errorf("observation %d (server %s): %w: instance is empty", i, o.ServerID, ErrInvalidObservation)
		case o.Version == "":
			return fmt.Errorf("observation %d (server %s, %s): %w: version is empty", i, o.ServerID, o.Instance, ErrInvalidObservation)
		case !o.Source.Valid():
			return fmt.Errorf("observation %d (server %s, %s): %w: unknown source %q", i, o.ServerID, o.Instance, ErrInvalidObservation, o.Source)
		case o.ObservedAt.IsZero():
			return fmt.Errorf("observation %d (server %s, %s): %w: observed_at is zero", i, o.ServerID, o.Instance, ErrInvalidObservation)
		}
	}
	return nil
}
