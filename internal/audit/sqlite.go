package audit

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQLite is a Store in its own SQLite file, apart from the task store, so the trail can be
// kept, rotated and shipped on its own schedule. Appends are group-committed: one writer
// goroutine writes every event waiting at that moment in one transaction.
type SQLite struct {
	db   *sql.DB
	path string
	gc   *groupCommit
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
	s := &SQLite{db: db, path: path}
	s.gc = newGroupCommit("audit db "+path, s.writeBatch)
	return s, nil
}

// Append implements Store. It waits for the commit whatever ctx says: the event describes a
// call that already happened.
func (s *SQLite) Append(_ context.Context, e Event) (int64, error) {
	return s.gc.append(e)
}

func sqliteParam(int) string { return "?" }

// writeBatch inserts the batch with one multi-row statement in one transaction: per-row
// statements cost most of the trail's CPU in the pure-Go SQLite.
func (s *SQLite) writeBatch(batch []Event) ([]int64, error) {
	args := make([]any, 0, 8*len(batch))
	for _, e := range batch {
		args = append(args, eventArgs(e)...)
	}
	rows, err := s.db.QueryContext(context.Background(), insertEvents(len(batch), sqliteParam), args...)
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
	// RETURNING yields rows in no promised order; ids were assigned in VALUES order.
	slices.Sort(ids)
	return ids, nil
}

// Query implements Store.
func (s *SQLite) Query(ctx context.Context, f Filter) ([]Event, error) {
	q, args := selectEvents(f, sqliteParam)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: query: %w", s.path, err)
	}
	defer rows.Close()
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: query: %w", s.path, err)
	}
	return out, nil
}

// Close implements Store: it stops accepting events, commits those already waiting, and closes
// the database.
func (s *SQLite) Close() error {
	s.gc.close()
	return s.db.Close()
}
