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
	Rollout  rollout.Rollout
}

// Clone returns a deep copy, so a caller's later changes never reach a stored record.
func (r *RolloutRecord) Clone() *RolloutRecord {
	c := *r
	c.Template = *r.Template.Clone()
	c.Rollout.Rows = append([]rollout.Row(nil), r.Rollout.Rows...)
	c.Rollout.Windows.Intervals = append([]rollout.Interval(nil), r.Rollout.Windows.Intervals...)
	c.Rollout.Windows.Weekly = append([]rollout.Weekly(nil), r.Rollout.Windows.Weekly...)
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

// DecodeRollout is the inverse of EncodeRollout; version comes from its own column.
func DecodeRollout(body []byte, version int64) (*RolloutRecord, error) {
	var r RolloutRecord
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode rollout: %w", err)
	}
	r.Version = version
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
	// (also set on r); otherwise ErrRolloutConflict (or ErrRolloutNotFound) and nothing changes.
	UpdateRollout(ctx context.Context, r *RolloutRecord, expected int64) (int64, error)
}
