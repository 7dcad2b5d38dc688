package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

type opKind int

const (
	opCreate opKind = iota
	opUpdate
)

// op is one write waiting for the writer.
type op struct {
	ctx  context.Context
	kind opKind

	t        *task.Task // a copy, safe from the caller's later changes
	body     []byte     // t as JSON
	ev       task.Event
	evBody   []byte       // ev as JSON
	expected int64        // opUpdate: the revision the caller read
	fence    *store.Lease // opUpdate: commit only while this lease is held (store.WithFence)

	res chan result // buffered: the writer never waits for a caller
}

type result struct {
	rev      int64
	created  bool
	existing *task.Task // opCreate with a request id already stored
	err      error
}

// commitTimeout bounds one write transaction, so a database that stops answering fails the
// waiting calls instead of holding them forever.
const commitTimeout = 30 * time.Second

// The statements of one operation. Each is a single statement whose CTEs write the task, its
// event and its change-log entry together, or nothing, and whose result says which.
const (
	// sqlCreate inserts unless the id or request id exists, and returns the task already
	// stored under the request id, if any. Its snapshot predates its own insert, so existing
	// is NULL when it inserted.
	sqlCreate = `WITH ins AS (
		INSERT INTO tasks (id, request_id, server_id, method, state, requester, priority, revision, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, (current_setting('flasher.revision')::bigint + $8::bigint), $9)
		ON CONFLICT DO NOTHING
		RETURNING id
	), ev AS (
		INSERT INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message)
		SELECT id, (current_setting('flasher.revision')::bigint + $8::bigint), $10, $11, $12, $13, $14 FROM ins
	), ch AS (
		INSERT INTO changes (revision, task_id, task, event) SELECT (current_setting('flasher.revision')::bigint + $8::bigint), id, $9, $15 FROM ins
	)
	SELECT EXISTS (SELECT 1 FROM ins), t.body, t.revision
	FROM (SELECT 1) AS one LEFT JOIN tasks t ON $2::text IS NOT NULL AND t.request_id = $2`

	// sqlUpdate changes the task if its revision is the expected one, and says whether the
	// task exists, to tell a conflict from an unknown id.
	sqlUpdate = `WITH up AS (
		UPDATE tasks SET server_id = $3, method = $4, state = $5, requester = $6, priority = $7, revision = (current_setting('flasher.revision')::bigint + $8::bigint), body = $9
		WHERE id = $1 AND revision = $2
		RETURNING id
	), ev AS (
		INSERT INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message)
		SELECT id, (current_setting('flasher.revision')::bigint + $8::bigint), $10, $11, $12, $13, $14 FROM up
	), ch AS (
		INSERT INTO changes (revision, task_id, task, event) SELECT (current_setting('flasher.revision')::bigint + $8::bigint), id, $9, $15 FROM up
	)
	SELECT EXISTS (SELECT 1 FROM up), EXISTS (SELECT 1 FROM tasks WHERE id = $1)`

	// sqlUpdateFenced is sqlUpdate made only while the writer's lease is held at its epoch and
	// unexpired. FOR SHARE keeps the lease row from changing hands until this transaction
	// ends, so a takeover either sees this write or prevents it.
	sqlUpdateFenced = `WITH fence AS (
		SELECT 1 FROM server_leases WHERE server_id = $16 AND task_id = $1 AND owner = $17 AND epoch = $18 AND expires_at > now()
		FOR SHARE
	), up AS (
		UPDATE tasks SET server_id = $3, method = $4, state = $5, requester = $6, priority = $7, revision = (current_setting('flasher.revision')::bigint + $8::bigint), body = $9
		WHERE id = $1 AND revision = $2 AND EXISTS (SELECT 1 FROM fence)
		RETURNING id
	), ev AS (
		INSERT INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message)
		SELECT id, (current_setting('flasher.revision')::bigint + $8::bigint), $10, $11, $12, $13, $14 FROM up
	), ch AS (
		INSERT INTO changes (revision, task_id, task, event) SELECT (current_setting('flasher.revision')::bigint + $8::bigint), id, $9, $15 FROM up
	)
	SELECT EXISTS (SELECT 1 FROM up), EXISTS (SELECT 1 FROM tasks WHERE id = $1), EXISTS (SELECT 1 FROM fence)`

	// sqlLock takes the revision counter for the transaction and keeps its value in a
	// transaction-local setting, from which each operation's statement computes its revision.
	sqlLock = "SELECT set_config('flasher.revision', current::text, true)::bigint FROM revision WHERE id = 1 FOR UPDATE"

	// sqlAdvance moves the counter to the highest revision this transaction wrote: the change
	// rows above the counter are exactly this transaction's, as it holds the counter.
	sqlAdvance = `UPDATE revision SET current = COALESCE(
		(SELECT max(revision) FROM changes WHERE revision > current_setting('flasher.revision')::bigint), current)
		WHERE id = 1 RETURNING current`

	// sqlNotify tells the other replicas when the counter moved.
	sqlNotify = "SELECT pg_notify($1, current::text) FROM revision WHERE id = 1 AND current > current_setting('flasher.revision')::bigint"
)

// write is the writer goroutine: it commits every operation waiting at that moment in one
// transaction, until Close.
func (s *Store) write() {
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.quit:
			return
		}
		batch := []*op{first}
	drain:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// commit commits batch and answers every operation in it. When the batch fails as a whole
// (one operation hit an error the statements do not absorb, or the database went away), each
// operation is retried in a transaction of its own, so one bad operation fails alone.
func (s *Store) commit(batch []*op) {
	live := batch[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.res <- result{err: err}
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	results, err := s.commitBatch(live)
	if err != nil && len(live) > 1 {
		for _, o := range live {
			one, err := s.commitBatch([]*op{o})
			if err != nil {
				o.res <- result{err: err}
			} else {
				o.res <- one[0]
			}
		}
		return
	}
	for i, o := range live {
		if err != nil {
			o.res <- result{err: err}
		} else {
			o.res <- results[i]
		}
	}
}

// commitBatch runs ops in one transaction holding the revision counter, and returns each one's
// outcome; an error means nothing was committed. The whole transaction is one pipeline ending in
// a single Sync, which PostgreSQL runs as one implicit transaction and commits at the Sync: the
// counter's lock is taken, the operations and the counter's update run and the commit is flushed
// without waiting for this process in between, so the lock is held for the server's work and the
// WAL flush only, not for round trips (which dominate on a busy host, and serialise replicas).
func (s *Store) commitBatch(ops []*op) ([]result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()

	b := &pgx.Batch{}
	b.Queue(sqlLock)
	for i, o := range ops {
		t, ev := o.t, o.ev
		var requestID *string
		if t.RequestID != "" {
			requestID = &t.RequestID
		}
		// $8 is the operation's place in the batch: its revision is the counter plus that.
		args := []any{t.ID, requestID, t.ServerID, string(t.Method), string(t.State), t.Requester, t.Priority, int64(i + 1), o.body,
			store.UnixNanos(ev.Time), string(ev.Kind), string(ev.From), string(ev.To), ev.Message, o.evBody}
		switch {
		case o.kind == opCreate:
			b.Queue(sqlCreate, args...)
		case o.fence != nil:
			args[1] = o.expected
			b.Queue(sqlUpdateFenced, append(args, o.fence.ServerID, o.fence.Owner, o.fence.Epoch)...)
		default:
			args[1] = o.expected
			b.Queue(sqlUpdate, args...)
		}
	}
	b.Queue(sqlAdvance)
	b.Queue(sqlNotify, notifyChannel)
	br := s.pool.SendBatch(ctx, b)
	var current, last int64
	if err := br.QueryRow().Scan(&current); err != nil {
		br.Close()
		return nil, fmt.Errorf("postgres store %s: lock revision: %w", s.name, err)
	}
	results := make([]result, len(ops))
	for i, o := range ops {
		r, err := readResult(br, o, current+1+int64(i))
		if err != nil {
			br.Close()
			return nil, fmt.Errorf("postgres store %s: task %s: %w", s.name, o.t.ID, err)
		}
		results[i] = r
	}
	if err := br.QueryRow().Scan(&last); err != nil {
		br.Close()
		return nil, fmt.Errorf("postgres store %s: advance revision: %w", s.name, err)
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("postgres store %s: notify: %w", s.name, err)
	}
	// Close reads the Sync's answer: an error there means the implicit transaction did not
	// commit.
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("postgres store %s: commit: %w", s.name, err)
	}
	s.commits.Add(1)
	s.committedOps.Add(int64(len(ops)))
	if last > current {
		s.Signal(last)
	}
	return results, nil
}

// readResult reads one operation's result row. A create that found its request id returns the
// stored task; a create that found only its id, and an update that did not match, return the
// error the caller gets (the batch still commits).
func readResult(br pgx.BatchResults, o *op, rev int64) (result, error) {
	switch o.kind {
	case opCreate:
		var inserted bool
		var body []byte
		var existingRev *int64
		if err := br.QueryRow().Scan(&inserted, &body, &existingRev); err != nil {
			return result{}, err
		}
		switch {
		case inserted:
			return result{rev: rev, created: true}, nil
		case existingRev != nil:
			t, err := store.DecodeTask(body, *existingRev)
			if err != nil {
				return result{}, err
			}
			return result{existing: t}, nil
		default:
			return result{err: fmt.Errorf("postgres store: create task %s: a task with this id exists", o.t.ID)}, nil
		}
	default:
		var updated, exists bool
		fenced := true
		dest := []any{&updated, &exists}
		if o.fence != nil {
			dest = append(dest, &fenced)
		}
		if err := br.QueryRow().Scan(dest...); err != nil {
			return result{}, err
		}
		switch {
		case updated:
			return result{rev: rev}, nil
		case exists && !fenced:
			return result{err: fmt.Errorf("postgres store: task %s (server %s): epoch %d of %s: %w",
				o.t.ID, o.fence.ServerID, o.fence.Epoch, o.fence.Owner, store.ErrLeaseLost)}, nil
		case exists:
			return result{err: fmt.Errorf("postgres store: task %s: expected revision %d: %w", o.t.ID, o.expected, store.ErrConflict)}, nil
		default:
			return result{err: fmt.Errorf("postgres store: task %s: %w", o.t.ID, store.ErrNotFound)}, nil
		}
	}
}

// Compact implements store.Store. A revision beyond the latest committed one compacts up to the
// latest, so changes committed later are never reported as dropped. It does not take the
// revision counter: writers carry on while old changes are deleted.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var upto int64
		if err := tx.QueryRow(ctx, `UPDATE compaction SET compacted = GREATEST(compacted, LEAST($1, (SELECT current FROM revision WHERE id = 1)))
			WHERE id = 1 RETURNING compacted`, rev).Scan(&upto); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM changes WHERE revision <= $1", upto)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres store %s: compact to %d: %w", s.name, rev, err)
	}
	return nil
}

// errNoRows tells a missing row apart from a failed query.
func errNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
