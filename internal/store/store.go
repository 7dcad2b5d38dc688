// Package store persists tasks, their events and the store-wide change log that watchers resume
// from. Store is the one large interface of the project; the conformance suite in
// internal/store/storetest pins its behaviour for every backend (SQLite, the embedded default,
// and PostgreSQL). It holds no business rules: state changes are made by internal/task and
// committed here.
package store

import (
	"context"
	"errors"

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
)

// Filter selects tasks in ListTasks. Zero fields match everything.
type Filter struct {
	ServerID  string
	States    []task.State
	Method    task.Method
	Requester string
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
}
