package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQLite is a Store in its own SQLite file, apart from the task store, so the trail can be
// kept, rotated and shipped on its own schedule.
type SQLite struct {
	db   *sql.DB
	path string
}

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
	return &SQLite{db: db, path: path}, nil
}

// Append implements Store.
func (s *SQLite) Append(ctx context.Context, e Event) (int64, error) {
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO audit_events(time_ns, identity, action, server_id, task_id, code, message, peer) VALUES (?,?,?,?,?,?,?,?)`,
		e.Time.UnixNano(), e.Identity, e.Action, e.ServerID, e.TaskID, e.Code, e.Message, e.Peer)
	if err != nil {
		return 0, fmt.Errorf("audit db %s: append: %w", s.path, err)
	}
	return res.LastInsertId()
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

// Close implements Store.
func (s *SQLite) Close() error { return s.db.Close() }
