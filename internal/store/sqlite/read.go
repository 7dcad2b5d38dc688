package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// GetTask implements store.Store.
func (s *Store) GetTask(ctx context.Context, id string) (*task.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var body []byte
	var rev int64
	err := s.rdb.QueryRowContext(uninterrupted(ctx), "SELECT body, revision FROM tasks WHERE id = ?", id).Scan(&body, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite store: task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite store: get task %s: %w", id, err)
	}
	t, err := store.DecodeTask(body, rev)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: task %s: %w", id, err)
	}
	return t, nil
}

// ListTasks implements store.Store. Page tokens carry the creation sequence of the last task
// returned and a checksum over it and the filter, so a token used with another filter, or
// one this store did not issue, fails with store.ErrInvalidPageToken. Tasks created while a
// client pages get higher sequences, so paging never skips or repeats a task.
func (s *Store) ListTasks(ctx context.Context, f store.Filter, pageSize int, pageToken string) ([]*task.Task, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	pageSize = min(pageSize, maxPageSize)
	var after int64
	if pageToken != "" {
		var ok bool
		if after, ok = store.DecodePageToken(pageToken, f); !ok {
			return nil, "", fmt.Errorf("sqlite store: list tasks: %w", store.ErrInvalidPageToken)
		}
	}

	var q strings.Builder
	q.WriteString("SELECT seq, body, revision FROM tasks WHERE seq > ?")
	args := []any{after}
	if f.ServerID != "" {
		q.WriteString(" AND server_id = ?")
		args = append(args, f.ServerID)
	}
	if f.Method != "" {
		q.WriteString(" AND method = ?")
		args = append(args, string(f.Method))
	}
	if f.Requester != "" {
		q.WriteString(" AND requester = ?")
		args = append(args, f.Requester)
	}
	if f.RolloutID != "" {
		q.WriteString(" AND rollout_id = ?")
		args = append(args, f.RolloutID)
	}
	if len(f.States) > 0 {
		q.WriteString(" AND state IN (?" + strings.Repeat(", ?", len(f.States)-1) + ")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	// One more than asked tells whether there is a next page without a second query.
	q.WriteString(" ORDER BY seq LIMIT ?")
	args = append(args, pageSize+1)

	rows, err := s.rdb.QueryContext(uninterrupted(ctx), q.String(), args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite store: list tasks: %w", err)
	}
	defer rows.Close()
	var (
		out  []*task.Task
		last int64
	)
	for rows.Next() {
		if len(out) == pageSize {
			return out, store.EncodePageToken(last, f), nil
		}
		var body []byte
		var rev int64
		if err := rows.Scan(&last, &body, &rev); err != nil {
			return nil, "", fmt.Errorf("sqlite store: list tasks: %w", err)
		}
		t, err := store.DecodeTask(body, rev)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite store: list tasks: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite store: list tasks: %w", err)
	}
	return out, "", nil
}

// Events implements store.Store. It returns store.ErrNotFound for an unknown task: every stored
// task has at least its creation event.
func (s *Store) Events(ctx context.Context, taskID string) ([]task.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(uninterrupted(ctx), `SELECT revision, time_ns, kind, from_state, to_state, message
		FROM task_events WHERE task_id = ? ORDER BY revision`, taskID)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: events of task %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []task.Event
	for rows.Next() {
		ev := task.Event{TaskID: taskID}
		var ns int64
		var kind, from, to string
		if err := rows.Scan(&ev.Revision, &ns, &kind, &from, &to, &ev.Message); err != nil {
			return nil, fmt.Errorf("sqlite store: events of task %s: %w", taskID, err)
		}
		ev.Time = store.FromUnixNanos(ns)
		ev.Kind, ev.From, ev.To = task.EventKind(kind), task.State(from), task.State(to)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: events of task %s: %w", taskID, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sqlite store: events of task %s: %w", taskID, store.ErrNotFound)
	}
	return out, nil
}

// Changes implements store.Store. A limit of 0 or less means 100; it is capped at 1000.
func (s *Store) Changes(ctx context.Context, after int64, limit int) (_ []store.Change, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultChangeLimit
	}
	limit = min(limit, maxChangeLimit)
	// One read transaction: the compaction mark and the rows come from the same snapshot, so a
	// Compact committed in between cannot make rows vanish unreported.
	tx, err := s.rdb.BeginTx(uninterrupted(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: changes after %d: %w", after, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	var compacted int64
	if err := tx.QueryRowContext(ctx, "SELECT compacted FROM revision WHERE id = 1").Scan(&compacted); err != nil {
		return nil, fmt.Errorf("sqlite store: changes after %d: %w", after, err)
	}
	if after < compacted {
		return nil, fmt.Errorf("sqlite store: changes after %d, kept from %d: %w", after, compacted+1, store.ErrCompacted)
	}
	rows, err := tx.QueryContext(ctx, "SELECT revision, task, event FROM changes WHERE revision > ? ORDER BY revision LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: changes after %d: %w", after, err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var body, evBody []byte
		if err := rows.Scan(&c.Revision, &body, &evBody); err != nil {
			return nil, fmt.Errorf("sqlite store: changes after %d: %w", after, err)
		}
		if c.Task, err = store.DecodeTask(body, c.Revision); err != nil {
			return nil, fmt.Errorf("sqlite store: change %d: %w", c.Revision, err)
		}
		if err := json.Unmarshal(evBody, &c.Event); err != nil {
			return nil, fmt.Errorf("sqlite store: change %d: decode event: %w", c.Revision, err)
		}
		c.Event.Revision = c.Revision
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: changes after %d: %w", after, err)
	}
	return out, nil
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev int64
	if err := s.rdb.QueryRowContext(uninterrupted(ctx), "SELECT current FROM revision WHERE id = 1").Scan(&rev); err != nil {
		return 0, fmt.Errorf("sqlite store %s: revision: %w", s.cfg.Path, err)
	}
	return rev, nil
}

// uninterrupted returns a context for one read that a cancellation cannot interrupt half way.
// modernc's driver interrupts a statement when its context ends, and an interrupted read can
// leave the pooled connection inside its read transaction, so every later read on it would see
// the database as it was then (stale revisions, endless update conflicts). Reads take
// milliseconds; a caller that has given up gets its answer slightly later and discards it, and
// a caller already cancelled does not reach the database.
func uninterrupted(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
