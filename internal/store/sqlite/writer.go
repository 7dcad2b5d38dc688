package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

type opKind int

const (
	opCreate opKind = iota
	opUpdate
	opCompact
	opObserve
	opRollout
)

// op is one write waiting for the writer.
type op struct {
	ctx  context.Context
	kind opKind

	t        *task.Task // a copy, safe from the caller's later changes
	body     []byte     // t as JSON
	ev       task.Event
	evBody   []byte              // ev as JSON
	expected int64               // opUpdate: the revision the caller read
	compact  int64               // opCompact: drop changes up to this revision
	obs      []store.Observation // opObserve: a copy of the caller's observations
	// opRollout: the rollout write, run on the savepoint path's connection
	rollout func(ctx context.Context, conn *sql.Conn) result

	res chan result // buffered: the writer never waits for a caller
}

type result struct {
	rev      int64
	created  bool
	existing *task.Task // opCreate with a request id already stored
	rollout  *store.RolloutRecord
	err      error
}

// writer holds the writer's two connections: raw for the fast path (batch.go), and conn, with
// its prepared statements, for the savepoint path. Only one holds a transaction at a time.
type writer struct {
	raw   *rawConn
	conn  *sql.Conn
	stmts []*sql.Stmt

	getRev, setRev                          *sql.Stmt
	byRequest, insertTask, updateTask       *sql.Stmt
	taskRevision, insertEvent, insertChange *sql.Stmt
	compact                                 *sql.Stmt
}

func prepareWriter(ctx context.Context, conn *sql.Conn, raw *rawConn) (*writer, error) {
	w := &writer{conn: conn, raw: raw}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&w.getRev, "SELECT current, compacted FROM revision WHERE id = 1"},
		{&w.setRev, "UPDATE revision SET current = ?, compacted = ? WHERE id = 1"},
		{&w.byRequest, "SELECT body, revision FROM tasks WHERE request_id = ?"},
		{&w.insertTask, `INSERT INTO tasks (id, request_id, server_id, method, state, requester, priority, revision, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.updateTask, `UPDATE tasks SET server_id = ?, method = ?, state = ?, requester = ?, priority = ?, revision = ?, body = ?
			WHERE id = ? AND revision = ?`},
		{&w.taskRevision, "SELECT revision FROM tasks WHERE id = ?"},
		{&w.insertEvent, `INSERT INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&w.insertChange, "INSERT INTO changes (revision, task_id, task, event) VALUES (?, ?, ?, ?)"},
		{&w.compact, "DELETE FROM changes WHERE revision <= ?"},
	} {
		st, err := conn.PrepareContext(ctx, p.query)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.dst = st
		w.stmts = append(w.stmts, st)
	}
	return w, nil
}

func (w *writer) close() {
	for _, st := range w.stmts {
		st.Close()
	}
	w.raw.close()
}

// write is the writer goroutine: it takes one operation, gathers every other one already
// waiting (up to MaxBatch) and commits them together. While it commits, new callers queue up on
// the channel and form the next batch, so the batch grows with the load.
func (s *Store) write(w *writer) {
	batch := make([]*op, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-s.quit:
			return
		}
	gather:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break gather
			}
		}
		s.commit(w, batch)
	}
}

// commit applies batch in one transaction, then answers every caller. It tries the batched fast
// path first (batch.go); if that fails it replays the batch with each operation inside its own
// savepoint, so that one failing leaves the others in.
func (s *Store) commit(w *writer, batch []*op) {
	// The writer's own context: once an operation is in a transaction, its caller giving up
	// must not abort the others.
	ctx := context.Background()
	results := make([]result, len(batch))
	fail := func(err error) {
		err = fmt.Errorf("sqlite store %s: commit: %w", s.cfg.Path, err)
		for i := range results {
			results[i] = result{err: err}
		}
	}

	var (
		committed, applied bool
		cur                int64
		err                error
	)
	// end runs COMMIT or ROLLBACK on whichever connection holds the transaction.
	end := func(stmt string) error { _, err := w.raw.exec(stmt); return err }
	if s.savepointsOnly || hasRollout(batch) {
		end = func(stmt string) error { _, err := w.conn.ExecContext(ctx, stmt); return err }
		cur, applied, err = s.applyBatch(ctx, w, batch, results)
	} else if cur, applied, err = s.applyFast(w.raw, batch, results); err != nil && !errors.As(err, new(notStarted)) {
		// Replay on the savepoint path, which isolates whichever operation made a statement
		// fail (or fails the same way on a database error).
		_ = end("ROLLBACK")
		end = func(stmt string) error { _, err := w.conn.ExecContext(ctx, stmt); return err }
		clear(results)
		s.fallbacks.Add(1)
		cur, applied, err = s.applyBatch(ctx, w, batch, results)
	}
	switch {
	case err != nil:
		_ = end("ROLLBACK")
		fail(err)
	case !applied:
		// Nothing to make durable (conflicts, idempotent repeats): skip the fsync.
		_ = end("ROLLBACK")
	default:
		if err := end("COMMIT"); err != nil {
			_ = end("ROLLBACK")
			fail(err)
		} else {
			committed = true
			s.commits.Add(1)
			s.committedOps.Add(int64(len(batch)))
		}
	}
	for i, o := range batch {
		o.res <- results[i]
	}
	if committed {
		s.Signal(cur)
		if hasRollout(batch) {
			s.Wake() // rollout writes take no revision: Signal alone would not tell anybody
		}
	}
}

// applyBatch runs the batch inside an open transaction. It returns the revision reached and
// whether anything was written; an error means the transaction must be rolled back whole.
func (s *Store) applyBatch(ctx context.Context, w *writer, batch []*op, results []result) (cur int64, applied bool, err error) {
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, false, err
	}
	// Read the counter inside the transaction rather than caching it: another process sharing
	// the file may have committed since the last batch.
	var compacted int64
	if err := w.getRev.QueryRowContext(ctx).Scan(&cur, &compacted); err != nil {
		return 0, false, err
	}
	start, startCompacted := cur, compacted
	observed := false
	for i, o := range batch {
		if err := o.ctx.Err(); err != nil {
			results[i] = result{err: err}
			continue
		}
		if _, err := w.conn.ExecContext(ctx, "SAVEPOINT op"); err != nil {
			return 0, false, err
		}
		r, next, nextCompacted := s.apply(ctx, w, o, cur, compacted)
		if r.err != nil {
			if _, err := w.conn.ExecContext(ctx, "ROLLBACK TO op"); err != nil {
				return 0, false, err
			}
		} else {
			cur, compacted = next, nextCompacted
			observed = observed || o.kind == opObserve || o.kind == opRollout
		}
		if _, err := w.conn.ExecContext(ctx, "RELEASE op"); err != nil {
			return 0, false, err
		}
		results[i] = r
	}
	if cur == start && compacted == startCompacted {
		return cur, observed, nil
	}
	if _, err := w.setRev.ExecContext(ctx, cur, compacted); err != nil {
		return 0, false, err
	}
	return cur, true, nil
}

// apply runs one operation at revision cur and returns its result and the counters after it.
func (s *Store) apply(ctx context.Context, w *writer, o *op, cur, compacted int64) (result, int64, int64) {
	switch o.kind {
	case opCreate:
		r := s.create(ctx, w, o, cur+1)
		if r.err != nil || !r.created {
			return r, cur, compacted
		}
		return r, cur + 1, compacted
	case opUpdate:
		r := s.update(ctx, w, o, cur+1)
		if r.err != nil {
			return r, cur, compacted
		}
		return r, cur + 1, compacted
	case opCompact:
		// Never past the latest revision: changes committed later must stay readable.
		rev := min(o.compact, cur)
		if rev <= compacted {
			return result{}, cur, compacted
		}
		if _, err := w.compact.ExecContext(ctx, rev); err != nil {
			return result{err: fmt.Errorf("sqlite store %s: compact to %d: %w", s.cfg.Path, rev, err)}, cur, compacted
		}
		return result{}, cur, rev
	case opObserve:
		if err := writeObservations(execOn(ctx, w.conn), o.obs); err != nil {
			return result{err: err}, cur, compacted
		}
		return result{}, cur, compacted
	case opRollout:
		return o.rollout(ctx, w.conn), cur, compacted
	}
	return result{err: fmt.Errorf("sqlite store: unknown operation %d", o.kind)}, cur, compacted
}

func (s *Store) create(ctx context.Context, w *writer, o *op, rev int64) result {
	t := o.t
	var requestID any // NULL, so that only non-empty request ids are unique
	if t.RequestID != "" {
		requestID = t.RequestID
		// Looked up inside the transaction, so a duplicate earlier in the same batch is found.
		var body []byte
		var existingRev int64
		err := w.byRequest.QueryRowContext(ctx, t.RequestID).Scan(&body, &existingRev)
		switch {
		case err == nil:
			existing, err := store.DecodeTask(body, existingRev)
			if err != nil {
				return result{err: fmt.Errorf("sqlite store: task for request %s: %w", t.RequestID, err)}
			}
			return result{existing: existing}
		case !errors.Is(err, sql.ErrNoRows):
			return result{err: fmt.Errorf("sqlite store: task for request %s: %w", t.RequestID, err)}
		}
	}
	if _, err := w.insertTask.ExecContext(ctx, t.ID, requestID, t.ServerID, string(t.Method), string(t.State),
		t.Requester, t.Priority, rev, o.body); err != nil {
		return result{err: fmt.Errorf("sqlite store: create task %s (server %s): %w", t.ID, t.ServerID, err)}
	}
	if err := s.record(ctx, w, o, rev); err != nil {
		return result{err: err}
	}
	return result{rev: rev, created: true}
}

func (s *Store) update(ctx context.Context, w *writer, o *op, rev int64) result {
	t := o.t
	res, err := w.updateTask.ExecContext(ctx, t.ServerID, string(t.Method), string(t.State), t.Requester,
		t.Priority, rev, o.body, t.ID, o.expected)
	if err != nil {
		return result{err: fmt.Errorf("sqlite store: update task %s (server %s): %w", t.ID, t.ServerID, err)}
	}
	n, err := res.RowsAffected()
	if err != nil {
		return result{err: fmt.Errorf("sqlite store: update task %s (server %s): %w", t.ID, t.ServerID, err)}
	}
	if n == 0 {
		var stored int64
		err := w.taskRevision.QueryRowContext(ctx, t.ID).Scan(&stored)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return result{err: fmt.Errorf("sqlite store: update task %s: %w", t.ID, store.ErrNotFound)}
		case err != nil:
			return result{err: fmt.Errorf("sqlite store: update task %s (server %s): %w", t.ID, t.ServerID, err)}
		}
		return result{err: fmt.Errorf("sqlite store: update task %s (server %s): revision is %d, expected %d: %w",
			t.ID, t.ServerID, stored, o.expected, store.ErrConflict)}
	}
	if err := s.record(ctx, w, o, rev); err != nil {
		return result{err: err}
	}
	return result{rev: rev}
}

// record appends the operation's event and change-log entry at rev.
func (s *Store) record(ctx context.Context, w *writer, o *op, rev int64) error {
	ev := o.ev
	if _, err := w.insertEvent.ExecContext(ctx, o.t.ID, rev, store.UnixNanos(ev.Time), string(ev.Kind),
		string(ev.From), string(ev.To), ev.Message); err != nil {
		return fmt.Errorf("sqlite store: task %s (server %s): record event: %w", o.t.ID, o.t.ServerID, err)
	}
	if _, err := w.insertChange.ExecContext(ctx, rev, o.t.ID, o.body, o.evBody); err != nil {
		return fmt.Errorf("sqlite store: task %s (server %s): record change: %w", o.t.ID, o.t.ServerID, err)
	}
	return nil
}
