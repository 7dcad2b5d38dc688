package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/store"
)

// The fast path commits a whole batch with a handful of statements instead of about six per
// operation. It matters because modernc.org/sqlite parses and compiles a statement on every
// execution (its prepared statements keep only the text), so per-statement cost dominates, and
// because per-operation savepoints copy every touched page into a statement journal.
//
// It decides every operation's outcome up front from one lookup of the ids and request ids the
// batch names (read inside the write transaction, so nobody can change them meanwhile), then
// writes all tasks, events and change-log entries with multi-row statements. The outcomes are
// those the savepoint path would reach running the operations one by one in batch order. If a
// statement fails anyway, the caller rolls back and replays the batch on the savepoint path,
// which isolates the failing operation.

// maxRowsPerStatement bounds multi-row statements: 256 rows of 9 columns stay far below
// SQLite's limit of 32766 bound variables, and it bounds the cached query texts.
const maxRowsPerStatement = 256

// taskRow is the final state of one task the batch writes. create is the operation that
// created it (nil for a task that existed before the batch); last is the latest operation
// on it, whose encoded task is stored.
type taskRow struct {
	create, last *op
	rev          int64
	expected     int64 // a task that existed: its revision before the batch
}

// logRow is one operation's event and change-log entry.
type logRow struct {
	o   *op
	rev int64
}

// storedTask is a task's latest body and revision as the batch sees it.
type storedTask struct {
	body []byte
	rev  int64
}

// applyFast runs the batch inside a new transaction with batched statements. It returns the
// revision reached and whether anything was written; an error means the transaction must be
// rolled back and the batch replayed on the savepoint path (results are then overwritten).
func (s *Store) applyFast(ctx context.Context, w *writer, batch []*op, results []result) (cur int64, applied bool, err error) {
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, false, err
	}
	var compacted int64
	if err := w.getRev.QueryRowContext(ctx).Scan(&cur, &compacted); err != nil {
		return 0, false, err
	}
	start, startCompacted := cur, compacted

	known, owners, err := s.lookup(ctx, w, batch)
	if err != nil {
		return 0, false, err
	}

	// Decide every operation in batch order, as the savepoint path would.
	var (
		inserts []*taskRow
		updates []*taskRow
		rows    = make(map[string]*taskRow)
		logs    = make([]logRow, 0, len(batch))
	)
	for i, o := range batch {
		if err := o.ctx.Err(); err != nil {
			results[i] = result{err: err}
			continue
		}
		switch o.kind {
		case opCreate:
			t := o.t
			if t.RequestID != "" {
				if id, ok := owners[t.RequestID]; ok {
					st := known[id]
					existing, err := decodeTask(st.body, st.rev)
					if err != nil {
						return 0, false, fmt.Errorf("task for request %s: %w", t.RequestID, err)
					}
					results[i] = result{existing: existing}
					continue
				}
			}
			if _, ok := known[t.ID]; ok {
				results[i] = result{err: fmt.Errorf("sqlite store: create task %s (server %s): task id already exists", t.ID, t.ServerID)}
				continue
			}
			cur++
			r := &taskRow{create: o, last: o, rev: cur}
			rows[t.ID] = r
			inserts = append(inserts, r)
			known[t.ID] = storedTask{body: o.body, rev: cur}
			if t.RequestID != "" {
				owners[t.RequestID] = t.ID
			}
			logs = append(logs, logRow{o, cur})
			results[i] = result{rev: cur, created: true}
		case opUpdate:
			t := o.t
			st, ok := known[t.ID]
			if !ok {
				results[i] = result{err: fmt.Errorf("sqlite store: update task %s: %w", t.ID, store.ErrNotFound)}
				continue
			}
			if st.rev != o.expected {
				results[i] = result{err: fmt.Errorf("sqlite store: update task %s (server %s): revision is %d, expected %d: %w",
					t.ID, t.ServerID, st.rev, o.expected, store.ErrConflict)}
				continue
			}
			cur++
			if r, ok := rows[t.ID]; ok {
				r.last, r.rev = o, cur
			} else {
				r := &taskRow{last: o, rev: cur, expected: st.rev}
				rows[t.ID] = r
				updates = append(updates, r)
			}
			known[t.ID] = storedTask{body: o.body, rev: cur}
			logs = append(logs, logRow{o, cur})
			results[i] = result{rev: cur}
		case opCompact:
			// Never past the revision reached at this point of the batch: changes committed
			// later must stay readable.
			compacted = max(compacted, min(o.compact, cur))
			results[i] = result{}
		default:
			results[i] = result{err: fmt.Errorf("sqlite store: unknown operation %d", o.kind)}
		}
	}
	if cur == start && compacted == startCompacted {
		return cur, false, nil
	}

	if err := w.insertTasks(ctx, inserts); err != nil {
		return 0, false, err
	}
	if err := w.updateTasks(ctx, updates); err != nil {
		return 0, false, err
	}
	if err := w.insertLogs(ctx, logs); err != nil {
		return 0, false, err
	}
	// After the inserts: a Compact in the batch also drops entries of operations before it.
	if compacted > startCompacted {
		if _, err := w.compact.ExecContext(ctx, compacted); err != nil {
			return 0, false, fmt.Errorf("compact to %d: %w", compacted, err)
		}
	}
	if _, err := w.setRev.ExecContext(ctx, cur, compacted); err != nil {
		return 0, false, err
	}
	return cur, true, nil
}

// lookup reads the stored revision of every task id the batch names (known) and the task
// owning each request id its creates carry (owners, request id to task id). Bodies are read
// only for request-id owners, the only ones an operation may return.
func (s *Store) lookup(ctx context.Context, w *writer, batch []*op) (map[string]storedTask, map[string]string, error) {
	known := make(map[string]storedTask, len(batch))
	owners := make(map[string]string)
	var ids, reqs []any
	seenID := make(map[string]bool, len(batch))
	seenReq := make(map[string]bool, len(batch))
	for _, o := range batch {
		if o.kind != opCreate && o.kind != opUpdate {
			continue
		}
		if !seenID[o.t.ID] {
			seenID[o.t.ID] = true
			ids = append(ids, o.t.ID)
		}
		if r := o.t.RequestID; o.kind == opCreate && r != "" && !seenReq[r] {
			seenReq[r] = true
			reqs = append(reqs, r)
		}
	}
	for len(ids) > 0 || len(reqs) > 0 {
		ni, nr := min(len(ids), maxRowsPerStatement), min(len(reqs), maxRowsPerStatement)
		args := make([]any, 0, ni+nr)
		args = append(append(args, ids[:ni]...), reqs[:nr]...)
		ids, reqs = ids[ni:], reqs[nr:]
		rows, err := w.conn.QueryContext(ctx, w.queries.lookup(ni, nr), args...)
		if err != nil {
			return nil, nil, fmt.Errorf("look up batch: %w", err)
		}
		for rows.Next() {
			var id string
			var reqID *string
			var st storedTask
			if err := rows.Scan(&id, &reqID, &st.rev, &st.body); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("look up batch: %w", err)
			}
			if old, ok := known[id]; !ok || old.body == nil {
				known[id] = st
			}
			if reqID != nil && seenReq[*reqID] {
				owners[*reqID] = id
			}
		}
		if err := rows.Close(); err != nil {
			return nil, nil, fmt.Errorf("look up batch: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("look up batch: %w", err)
		}
	}
	return known, owners, nil
}

func (w *writer) insertTasks(ctx context.Context, rs []*taskRow) error {
	for len(rs) > 0 {
		chunk := rs[:min(len(rs), maxRowsPerStatement)]
		rs = rs[len(chunk):]
		args := make([]any, 0, 9*len(chunk))
		for _, r := range chunk {
			t := r.last.t
			var requestID any // NULL, so that only non-empty request ids are unique
			if id := r.create.t.RequestID; id != "" {
				requestID = id
			}
			args = append(args, r.create.t.ID, requestID, t.ServerID, string(t.Method), string(t.State),
				t.Requester, t.Priority, r.rev, r.last.body)
		}
		if _, err := w.conn.ExecContext(ctx, w.queries.insertTasks(len(chunk)), args...); err != nil {
			return fmt.Errorf("create %d tasks: %w", len(chunk), err)
		}
	}
	return nil
}

func (w *writer) updateTasks(ctx context.Context, rs []*taskRow) error {
	for len(rs) > 0 {
		chunk := rs[:min(len(rs), maxRowsPerStatement)]
		rs = rs[len(chunk):]
		args := make([]any, 0, 9*len(chunk))
		for _, r := range chunk {
			t := r.last.t
			args = append(args, t.ID, r.expected, t.ServerID, string(t.Method), string(t.State),
				t.Requester, t.Priority, r.rev, r.last.body)
		}
		res, err := w.conn.ExecContext(ctx, w.queries.updateTasks(len(chunk)), args...)
		if err != nil {
			return fmt.Errorf("update %d tasks: %w", len(chunk), err)
		}
		// The lookup saw every expected revision inside this transaction; a miss means the
		// plan is wrong, and the savepoint path must decide instead.
		if n, err := res.RowsAffected(); err != nil || n != int64(len(chunk)) {
			return errors.Join(fmt.Errorf("update %d tasks: %d rows changed", len(chunk), n), err)
		}
	}
	return nil
}

func (w *writer) insertLogs(ctx context.Context, ls []logRow) error {
	for len(ls) > 0 {
		chunk := ls[:min(len(ls), maxRowsPerStatement)]
		ls = ls[len(chunk):]
		evArgs := make([]any, 0, 7*len(chunk))
		chArgs := make([]any, 0, 4*len(chunk))
		for _, l := range chunk {
			ev := l.o.ev
			evArgs = append(evArgs, l.o.t.ID, l.rev, timeToNanos(ev.Time), string(ev.Kind),
				string(ev.From), string(ev.To), ev.Message)
			chArgs = append(chArgs, l.rev, l.o.t.ID, l.o.body, l.o.evBody)
		}
		if _, err := w.conn.ExecContext(ctx, w.queries.insertEvents(len(chunk)), evArgs...); err != nil {
			return fmt.Errorf("record %d events: %w", len(chunk), err)
		}
		if _, err := w.conn.ExecContext(ctx, w.queries.insertChanges(len(chunk)), chArgs...); err != nil {
			return fmt.Errorf("record %d changes: %w", len(chunk), err)
		}
	}
	return nil
}

// queryTexts caches the writer's multi-row statement texts by row count; only the writer
// goroutine uses it.
type queryTexts struct {
	tasks, updates, events, changes map[int]string
	lookups                         map[[2]int]string
}

func newQueryTexts() *queryTexts {
	return &queryTexts{
		tasks: map[int]string{}, updates: map[int]string{}, events: map[int]string{},
		changes: map[int]string{}, lookups: map[[2]int]string{},
	}
}

// values returns "(?, ?), (?, ?)" for rows rows of cols columns.
func values(rows, cols int) string {
	tuple := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return tuple + strings.Repeat(", "+tuple, rows-1)
}

func cached(m map[int]string, n int, build func() string) string {
	q, ok := m[n]
	if !ok {
		q = build()
		m[n] = q
	}
	return q
}

// Inserts use OR FAIL rather than the default ABORT: FAIL needs no statement journal (no
// per-statement undo), and any failure rolls the whole transaction back anyway.

func (q *queryTexts) insertTasks(n int) string {
	return cached(q.tasks, n, func() string {
		return `INSERT OR FAIL INTO tasks (id, request_id, server_id, method, state, requester, priority, revision, body) VALUES ` +
			values(n, 9)
	})
}

// updateTasks sets the final state of n tasks, each only if its revision is still the one
// the lookup saw.
func (q *queryTexts) updateTasks(n int) string {
	return cached(q.updates, n, func() string {
		return `UPDATE OR FAIL tasks SET server_id = v.column3, method = v.column4, state = v.column5, requester = v.column6,
			priority = v.column7, revision = v.column8, body = v.column9
			FROM (VALUES ` + values(n, 9) + `) AS v WHERE tasks.id = v.column1 AND tasks.revision = v.column2`
	})
}

func (q *queryTexts) insertEvents(n int) string {
	return cached(q.events, n, func() string {
		return `INSERT OR FAIL INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message) VALUES ` +
			values(n, 7)
	})
}

func (q *queryTexts) insertChanges(n int) string {
	return cached(q.changes, n, func() string {
		return `INSERT OR FAIL INTO changes (revision, task_id, task, event) VALUES ` + values(n, 4)
	})
}

// lookup finds tasks by ni ids and by nr request ids in one statement; the body is read only
// for request-id matches.
func (q *queryTexts) lookup(ni, nr int) string {
	key := [2]int{ni, nr}
	if s, ok := q.lookups[key]; ok {
		return s
	}
	var parts []string
	if ni > 0 {
		parts = append(parts, "SELECT id, request_id, revision, NULL FROM tasks WHERE id IN ("+in(ni)+")")
	}
	if nr > 0 {
		parts = append(parts, "SELECT id, request_id, revision, body FROM tasks WHERE request_id IN ("+in(nr)+")")
	}
	s := strings.Join(parts, " UNION ALL ")
	q.lookups[key] = s
	return s
}

func in(n int) string { return "?" + strings.Repeat(", ?", n-1) }
