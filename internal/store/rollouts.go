package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/task"
)

var (
	// ErrRolloutNotFound is returned for a rollout id that does not exist.
	ErrRolloutNotFound = errors.New("rollout not found")
	// ErrRolloutConflict is returned by UpdateRollout when the stored version is not the
	// expected one: another writer (a replica, an operator's call) changed the rollout first.
	ErrRolloutConflict = errors.New("rollout changed concurrently")
	// ErrRolloutsUnsupported is returned by a backend that does not store rollouts.
	ErrRolloutsUnsupported = errors.New("this store backend does not keep rollouts")
)

// RolloutRecord is one rollout as stored: its identity, the task every selected server gets,
// and the state of the rules (internal/rollout), rows of servers included.
type RolloutRecord struct {
	ID string
	// RequestID makes CreateRollout idempotent; "" for none.
	RequestID string
	// Version is bumped by every UpdateRollout; it fences concurrent writers.
	Version   int64
	Requester string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Template is the task each server gets: its spec without id, server or request id.
	Template task.Task
	// WaitForAgent queues IN_BAND tasks whose agent is not connected instead of refusing them.
	WaitForAgent bool
	// Selector is how the servers were chosen, kept to show the spec back.
	Selector RolloutSelector
	Rollout  rollout.Rollout
	// Revision is a counter over every rollout of the store, set by each CreateRollout and
	// UpdateRollout: a rollout with a higher revision changed later. Watches resume from it.
	Revision int64 `json:"-"`
}

// RolloutSelector is a rollout's selector as it was asked for.
type RolloutSelector struct {
	ServerIDs        []string          `json:",omitempty"`
	Labels           map[string]string `json:",omitempty"`
	NoncompliantWith string            `json:",omitempty"`
	All              bool              `json:",omitempty"`
}

// Clone returns a deep copy, so a caller's later changes never reach a stored record.
func (r *RolloutRecord) Clone() *RolloutRecord {
	c := *r
	c.Template = *r.Template.Clone()
	c.Rollout.Rows = append([]rollout.Row(nil), r.Rollout.Rows...)
	c.Rollout.Windows.Intervals = append([]rollout.Interval(nil), r.Rollout.Windows.Intervals...)
	c.Rollout.Windows.Weekly = append([]rollout.Weekly(nil), r.Rollout.Windows.Weekly...)
	c.Selector.ServerIDs = append([]string(nil), r.Selector.ServerIDs...)
	if r.Selector.Labels != nil {
		c.Selector.Labels = make(map[string]string, len(r.Selector.Labels))
		for k, v := range r.Selector.Labels {
			c.Selector.Labels[k] = v
		}
	}
	return &c
}

// EncodeRollout is the stored form of a rollout's record (every backend keeps the same JSON).
func EncodeRollout(r *RolloutRecord) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("rollout %s: encode: %w", r.ID, err)
	}
	return b, nil
}

// DecodeRollout is the inverse of EncodeRollout; version and revision come from their own
// columns.
func DecodeRollout(body []byte, version, revision int64) (*RolloutRecord, error) {
	var r RolloutRecord
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode rollout: %w", err)
	}
	r.Version, r.Revision = version, revision
	return &r, nil
}

// Rollouts keeps rollouts. It is a separate interface from Store because not every backend has
// it yet: callers find it with a type assertion and refuse rollouts when it is missing. Methods
// are safe for concurrent use; a call that returned nil is durable.
type Rollouts interface {
	// CreateRollout stores a new rollout with Version 1. When r.RequestID is not empty and a
	// rollout with that request id exists, it stores nothing and returns the existing one with
	// created=false.
	CreateRollout(ctx context.Context, r *RolloutRecord) (stored *RolloutRecord, created bool, err error)
	// GetRollout returns a rollout by id, or ErrRolloutNotFound.
	GetRollout(ctx context.Context, id string) (*RolloutRecord, error)
	// ListRollouts returns rollouts in creation order; with active, only those not ended.
	ListRollouts(ctx context.Context, active bool) ([]*RolloutRecord, error)
	// UpdateRollout stores r if the stored version equals expected and returns the new version
	// (also set on r, with the new Revision); otherwise ErrRolloutConflict (or
	// ErrRolloutNotFound) and nothing changes.
	UpdateRollout(ctx context.Context, r *RolloutRecord, expected int64) (int64, error)
}
