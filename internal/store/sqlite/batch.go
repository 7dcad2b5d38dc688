package sqlite

import (
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/store"
)

// The fast path commits a whole batch without a savepoint per operation, on a connection whose
// statements are compiled once (raw.go). Savepoints are costly here: each one copies every page
// it touches into a statement journal, and each takes two more statements.
//
// It decides every operation's outcome up front from one lookup of the ids and request ids the
// batch names (read inside the write transaction, so nobody can change them meanwhile), then
// writes only what succeeds. The outcomes are those the savepoint path would reach running the
// operations one by one in batch order. If a statement fails anyway, the caller rolls back and
// replays the batch on the savepoint path, which isolates the failing operation.

// maxLookup bounds the ids in one lookup statement, far below SQLite's limit of 32766 bound
// variables.
const maxLookup = 256

// notStarted is a failure to open the write transaction (another process holding the lock past
// the busy timeout, say): replaying the batch would only wait for the lock a second time.
type notStarted struct{ err error }

func (e notStarted) Error() string { return e.err.Error() }
func (e notStarted) Unwrap() error { return e.err }

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

// applyFast runs the batch inside a new transaction on c. It returns the revision reached and
// whether anything was written. An error means the transaction must be rolled back and, unless
// it is notStarted, the batch replayed on the savepoint path (which overwrites results).
func (s *Store) applyFast(c *rawConn, batch []*op, results []result) (cur int64, applied bool, err error) {
	if _, err := c.exec("BEGIN IMMEDIATE"); err != nil {
		return 0, false, notStarted{err}
	}
	var compacted int64
	if err := c.query(sqlGetRevision, nil, func(r rawRow) error {
		cur, compacted = r.int64(0), r.int64(1)
		return nil
	}); err != nil {
		return 0, false, err
	}
	start, startCompacted := cur, compacted

	known, owners, err := lookup(c, batch)
	if err != nil {
		return 0, false, err
	}

	// Decide every operation in batch order, as the savepoint path would.
	var (
		inserts []*taskRow
		updates []*taskRow
		rows    = make(map[string]*taskRow)
		logs    = make([]logRow, 0, len(batch))
		observe []*op
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
					existing, err := store.DecodeTask(st.body, st.rev)
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
		case opObserve:
			observe = append(observe, o)
			results[i] = result{}
		default:
			results[i] = result{err: fmt.Errorf("sqlite store: unknown operation %d", o.kind)}
		}
	}
	for _, o := range observe {
		if err := writeObservations(func(q string, args ...any) error { _, err := c.exec(q, args...); return err }, o.obs); err != nil {
			return 0, false, err
		}
	}
	if cur == start && compacted == startCompacted {
		return cur, len(observe) > 0, nil
	}

	if err := insertTasks(c, inserts); err != nil {
		return 0, false, err
	}
	if err := updateTasks(c, updates); err != nil {
		return 0, false, err
	}
	for _, l := range logs {
		if err := record(c, l.o, l.rev); err != nil {
			return 0, false, err
		}
	}
	// After the changes are recorded: a Compact in the batch also drops entries of operations
	// before it.
	if compacted > startCompacted {
		if _, err := c.exec(sqlCompact, compacted); err != nil {
			return 0, false, fmt.Errorf("compact to %d: %w", compacted, err)
		}
	}
	if _, err := c.exec(sqlSetRevision, cur, compacted); err != nil {
		return 0, false, err
	}
	return cur, true, nil
}

// lookup reads the stored revision of every task id the batch names (known) and the task
// owning each request id its creates carry (owners, request id to task id). Bodies are read
// only for request-id owners, the only ones an operation may return.
func lookup(c *rawConn, batch []*op) (map[string]storedTask, map[string]string, error) {
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
	for len(ids) > 0 {
		n := min(len(ids), maxLookup)
		if err := c.query(lookupByID(n), padded(ids[:n]), func(r rawRow) error {
			known[r.text(0)] = storedTask{rev: r.int64(1)}
			return nil
		}); err != nil {
			return nil, nil, fmt.Errorf("look up batch: %w", err)
		}
		ids = ids[n:]
	}
	for len(reqs) > 0 {
		n := min(len(reqs), maxLookup)
		if err := c.query(lookupByRequest(n), padded(reqs[:n]), func(r rawRow) error {
			id := r.text(1)
			owners[r.text(0)] = id
			known[id] = storedTask{rev: r.int64(2), body: r.bytes(3)}
			return nil
		}); err != nil {
			return nil, nil, fmt.Errorf("look up batch: %w", err)
		}
		reqs = reqs[n:]
	}
	return known, owners, nil
}

// padded fills args up to the next power of two with NULLs, which match nothing in IN (...), so
// lookups need only a few distinct statements.
func padded(args []any) []any {
	n := 1
	for n < len(args) {
		n *= 2
	}
	return append(args[:len(args):len(args)], make([]any, n-len(args))...)
}

func lookupByID(n int) string {
	return "SELECT id, revision FROM tasks WHERE id IN (" + in(pow2(n)) + ")"
}

// lookupByRequest reads bodies too: an operation may return the task owning a request id.
func lookupByRequest(n int) string {
	return "SELECT request_id, id, revision, body FROM tasks WHERE request_id IN (" + in(pow2(n)) + ")"
}

func pow2(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

func in(n int) string { return "?" + strings.Repeat(", ?", n-1) }

const (
	sqlGetRevision = "SELECT current, compacted FROM revision WHERE id = 1"
	sqlSetRevision = "UPDATE revision SET current = ?, compacted = ? WHERE id = 1"
	sqlInsertTask  = `INSERT INTO tasks (id, request_id, server_id, method, state, requester, priority, revision, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUpdateTask = `UPDATE tasks SET server_id = ?, method = ?, state = ?, requester = ?, priority = ?, revision = ?, body = ?
		WHERE id = ? AND revision = ?`
	sqlInsertEvent = `INSERT INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlInsertChange = "INSERT INTO changes (revision, task_id, task, event) VALUES (?, ?, ?, ?)"
	sqlCompact      = "DELETE FROM changes WHERE revision <= ?"
)

func insertTasks(c *rawConn, rs []*taskRow) error {
	for _, r := range rs {
		t := r.last.t
		var requestID any // NULL, so that only non-empty request ids are unique
		if id := r.create.t.RequestID; id != "" {
			requestID = id
		}
		if _, err := c.exec(sqlInsertTask, r.create.t.ID, requestID, t.ServerID, string(t.Method), string(t.State),
			t.Requester, t.Priority, r.rev, r.last.body); err != nil {
			return fmt.Errorf("create task %s (server %s): %w", t.ID, t.ServerID, err)
		}
	}
	return nil
}

func updateTasks(c *rawConn, rs []*taskRow) error {
	for _, r := range rs {
		t := r.last.t
		n, err := c.exec(sqlUpdateTask, t.ServerID, string(t.Method), string(t.State), t.Requester, t.Priority,
			r.rev, r.last.body, t.ID, r.expected)
		if err != nil {
			return fmt.Errorf("update task %s (server %s): %w", t.ID, t.ServerID, err)
		}
		// The lookup saw the expected revision inside this transaction; a miss means the plan
		// is wrong, and the savepoint path must decide instead.
		if n != 1 {
			return fmt.Errorf("update task %s (server %s): %d rows changed, want 1", t.ID, t.ServerID, n)
		}
	}
	return nil
}

// record appends an operation's event and change-log entry at rev.
func record(c *rawConn, o *op, rev int64) error {
	ev := o.ev
	if _, err := c.exec(sqlInsertEvent, o.t.ID, rev, store.UnixNanos(ev.Time), string(ev.Kind),
		string(ev.From), string(ev.To), ev.Message); err != nil {
		return fmt.Errorf("task %s (server %s): record event: %w", o.t.ID, o.t.ServerID, err)
	}
	if _, err := c.exec(sqlInsertChange, rev, o.t.ID, o.body, o.evBody); err != nil {
		return fmt.Errorf("task %s (server %s): record change: %w", o.t.ID, o.t.ServerID, err)
	}
	return nil
}
