package audit

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQLite is a Store in its own SQLite file, apart from the task store, so the trail can be
// kept, rotated and shipped on its own schedule. Appends are group-committed: one writer
// goroutine writes every event waiting at that moment in one transaction, and each Append
// returns once its event is committed, so the trail stays synchronous with the calls it
// records while concurrent calls share a commit.
type SQLite struct {
	db   *sql.DB
	path string

	mu     sync.RWMutex // held for reading while sending to reqs; Close takes it to stop sends
	closed bool
	reqs   chan appendReq
	done   chan struct{}
}

type appendReq struct {
	e     Event
	reply chan appendRes
}

type appendRes struct {
	id  int64
	err error
}

// maxBatch bounds one group commit.
const maxBatch = 256

var _ Store = (*SQLite)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS audit_events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time_ns   INTEGER NOT NULL,
	identity  TEXT NOT NULL,
	action    TEXT NOT NULL,
	server_id TEXT NOT NULL DEFAULT '',
	task_id   TEXT NOT NULL DEFAULT '',
	code      TEXT NOT NULL,
	message   TEXT NOT NULL DEFAULT '',
	peer      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time_ns);
CREATE INDEX IF NOT EXISTS audit_events_identity ON audit_events(identity, id);
CREATE INDEX IF NOT EXISTS audit_events_server ON audit_events(server_id, id);
CREATE INDEX IF NOT EXISTS audit_events_task ON audit_events(task_id, id);
`

// OpenSQLite opens (creating if needed) the audit database at path.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("audit db %s: %w", path, err)
	}
	// One writer connection: SQLite serialises writes anyway, and one connection avoids
	// busy errors between our own goroutines.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit db %s: schema: %w", path, err)
	}
	s := &SQLite{db: db, path: path, reqs: make(chan appendReq, maxBatch), done: make(chan struct{})}
	go s.writer()
	return s, nil
}

// Append implements Store. It waits for the commit whatever ctx says: the event describes a
// call that already happened.
func (s *SQLite) Append(_ context.Context, e Event) (int64, error) {
	r := appendReq{e: e, reply: make(chan appendRes, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, fmt.Errorf("audit db %s: closed", s.path)
	}
	s.reqs <- r
	s.mu.RUnlock()
	res := <-r.reply
	return res.id, res.err
}

// writer commits waiting events in batches until reqs is closed and drained.
func (s *SQLite) writer() {
	defer close(s.done)
	for r := range s.reqs {
		batch := []appendReq{r}
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		ids, err := s.writeBatch(batch)
		for i, r := range batch {
			if err != nil {
				r.reply <- appendRes{err: err}
			} else {
				r.reply <- appendRes{id: ids[i]}
			}
		}
	}
}

// writeBatch inserts the batch with one multi-row statement in one transaction: per-row
// statements cost most of the trail's CPU in the pure-Go SQLite.
func (s *SQLite) writeBatch(batch []appendReq) ([]int64, error) {
	ctx := context.Background()
	var q strings.Builder
	q.WriteString(`INSERT INTO audit_events(time_ns, identity, action, server_id, task_id, code, message, peer) VALUES `)
	args := make([]any, 0, 8*len(batch))
	for i, r := range batch {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?)")
		e := r.e
		args = append(args, e.Time.UnixNano(), e.Identity, e.Action, e.ServerID, e.TaskID, e.Code, e.Message, e.Peer)
	}
	q.WriteString(" RETURNING id")
	rows, err := s.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: append: %w", s.path, err)
	}
	defer rows.Close()
	ids := make([]int64, 0, len(batch))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("audit db %s: append: %w", s.path, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit db %s: append: %w", s.path, err)
	}
	if len(ids) != len(batch) {
		return nil, fmt.Errorf("audit db %s: append: %d ids for %d events", s.path, len(ids), len(batch))
	}
	// RETURNING yields rows in no promised order; ids were assigned in VALUES order.
	slices.Sort(ids)
	return ids, nil
}

// Query implements Store.
func (s *SQLite) Query(ctx context.Context, f Filter) ([]Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.Identity != "" {
		add("identity = ?", f.Identity)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.ServerID != "" {
		add("server_id = ?", f.ServerID)
	}
	if f.TaskID != "" {
		add("task_id = ?", f.TaskID)
	}
	if !f.Since.IsZero() {
		add("time_ns >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("time_ns < ?", f.Until.UnixNano())
	}
	if f.BeforeID > 0 {
		add("id < ?", f.BeforeID)
	}
	q := `SELECT id, time_ns, identity, action, server_id, task_id, code, message, peer FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, f.limit())
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: query: %w", s.path, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var ns int64
		if err := rows.Scan(&e.ID, &ns, &e.Identity, &e.Action, &e.ServerID, &e.TaskID, &e.Code, &e.Message, &e.Peer); err != nil {
			return nil, fmt.Errorf("audit db %s: query: %w", s.path, err)
		}
		e.Time = time.Unix(0, ns)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit db %s: query: %w", s.path, err)
	}
	return out, nil
}

// Close implements Store: it stops accepting events, commits those already waiting, and closes
// the database.
func (s *SQLite) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.done
	return s.db.Close()
}
