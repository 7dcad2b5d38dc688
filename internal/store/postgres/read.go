package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// GetTask implements store.Store.
func (s *Store) GetTask(ctx context.Context, id string) (*task.Task, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var body []byte
	var rev int64
	err = s.pool.QueryRow(ctx, "SELECT body, revision FROM tasks WHERE id = $1", id).Scan(&body, &rev)
	if errNoRows(err) {
		return nil, fmt.Errorf("postgres store: task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: get task %s: %w", s.name, id, err)
	}
	t, err := store.DecodeTask(body, rev)
	if err != nil {
		return nil, fmt.Errorf("postgres store: task %s: %w", id, err)
	}
	return t, nil
}

// ListTasks implements store.Store, with the page tokens of store.EncodePageToken: tasks created
// while a client pages get higher creation sequences, so paging never skips or repeats a task.
func (s *Store) ListTasks(ctx context.Context, f store.Filter, pageSize int, pageToken string) ([]*task.Task, string, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, "", err
	}
	defer cancel()
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	pageSize = min(pageSize, maxPageSize)
	var after int64
	if pageToken != "" {
		var ok bool
		if after, ok = store.DecodePageToken(pageToken, f); !ok {
			return nil, "", fmt.Errorf("postgres store: list tasks: %w", store.ErrInvalidPageToken)
		}
	}
	var q strings.Builder
	args := []any{after}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	q.WriteString("SELECT seq, body, revision FROM tasks WHERE seq > $1")
	if f.ServerID != "" {
		q.WriteString(" AND server_id = " + arg(f.ServerID))
	}
	if f.Method != "" {
		q.WriteString(" AND method = " + arg(string(f.Method)))
	}
	if f.Requester != "" {
		q.WriteString(" AND requester = " + arg(f.Requester))
	}
	if f.RolloutID != "" {
		q.WriteString(" AND rollout_id = " + arg(f.RolloutID))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		q.WriteString(" AND state = ANY(" + arg(states) + ")")
	}
	// One more than asked tells whether there is a next page without a second query.
	q.WriteString(" ORDER BY seq LIMIT " + arg(pageSize+1))

	rows, err := s.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, "", fmt.Errorf("postgres store %s: list tasks: %w", s.name, err)
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
			return nil, "", fmt.Errorf("postgres store %s: list tasks: %w", s.name, err)
		}
		t, err := store.DecodeTask(body, rev)
		if err != nil {
			return nil, "", fmt.Errorf("postgres store: list tasks: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("postgres store %s: list tasks: %w", s.name, err)
	}
	return out, "", nil
}

// Events implements store.Store. It returns store.ErrNotFound for an unknown task: every stored
// task has at least its creation event.
func (s *Store) Events(ctx context.Context, taskID string) ([]task.Event, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT revision, time_ns, kind, from_state, to_state, message
		FROM task_events WHERE task_id = $1 ORDER BY revision`, taskID)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: events of task %s: %w", s.name, taskID, err)
	}
	defer rows.Close()
	var out []task.Event
	for rows.Next() {
		ev := task.Event{TaskID: taskID}
		var ns int64
		var kind, from, to string
		if err := rows.Scan(&ev.Revision, &ns, &kind, &from, &to, &ev.Message); err != nil {
			return nil, fmt.Errorf("postgres store %s: events of task %s: %w", s.name, taskID, err)
		}
		ev.Time = store.FromUnixNanos(ns)
		ev.Kind, ev.From, ev.To = task.EventKind(kind), task.State(from), task.State(to)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store %s: events of task %s: %w", s.name, taskID, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("postgres store: events of task %s: %w", taskID, store.ErrNotFound)
	}
	return out, nil
}

// Changes implements store.Store. A limit of 0 or less means 100; it is capped at 1000. The
// compaction mark and the rows come from one statement, hence one snapshot, so a Compact
// committed meanwhile cannot make rows vanish unreported.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if limit <= 0 {
		limit = defaultChangeLimit
	}
	limit = min(limit, maxChangeLimit)
	rows, err := s.pool.Query(ctx, `SELECT k.compacted, c.revision, c.task, c.event
		FROM compaction k
		LEFT JOIN LATERAL (SELECT revision, task, event FROM changes WHERE revision > $1 ORDER BY revision LIMIT $2) c ON true
		WHERE k.id = 1 ORDER BY c.revision`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: changes after %d: %w", s.name, after, err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var compacted int64
		var rev *int64
		var body, evBody []byte
		if err := rows.Scan(&compacted, &rev, &body, &evBody); err != nil {
			return nil, fmt.Errorf("postgres store %s: changes after %d: %w", s.name, after, err)
		}
		if after < compacted {
			return nil, fmt.Errorf("postgres store: changes after %d, kept from %d: %w", after, compacted+1, store.ErrCompacted)
		}
		if rev == nil {
			break // no change after `after`: the one row is the compaction mark alone
		}
		c := store.Change{Revision: *rev}
		if c.Task, err = store.DecodeTask(body, c.Revision); err != nil {
			return nil, fmt.Errorf("postgres store: change %d: %w", c.Revision, err)
		}
		if err := json.Unmarshal(evBody, &c.Event); err != nil {
			return nil, fmt.Errorf("postgres store: change %d: decode event: %w", c.Revision, err)
		}
		c.Event.Revision = c.Revision
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store %s: changes after %d: %w", s.name, after, err)
	}
	return out, nil
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var rev int64
	if err := s.pool.QueryRow(ctx, "SELECT current FROM revision WHERE id = 1").Scan(&rev); err != nil {
		return 0, fmt.Errorf("postgres store %s: revision: %w", s.name, err)
	}
	return rev, nil
}

// readTimeout bounds one read, which a caller's cancellation does not interrupt.
const readTimeout = 10 * time.Second

// readContext returns the context one read runs under. pgx closes a connection whose query is
// interrupted by its context, so a burst of cancelled calls (clients going away) would make the
// pool reconnect again and again; reads take milliseconds, so a caller that has given up gets
// its answer slightly later and discards it. A caller already cancelled does not reach the
// database, and a database that stops answering fails the read after readTimeout.
func readContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	return ctx, cancel, nil
}
