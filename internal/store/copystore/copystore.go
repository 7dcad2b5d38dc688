// Package copystore moves a single server's SQLite store, and its audit trail, into an empty
// PostgreSQL database, for `flasher-server migrate-store`. It copies rows, not API objects: tasks
// keep their ids, revisions, events and change log, so watchers and clients that remember
// revisions carry on; observations, rollouts, join tokens, agent certificates and revocations
// come along, and the PostgreSQL revision counter continues from the SQLite one. Everything is
// copied in one PostgreSQL transaction from one SQLite read snapshot: the target ends up with all
// of it or nothing.
package copystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the database/sql driver the SQLite store uses

	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
)

// ErrNotEmpty is returned when the PostgreSQL database already holds tasks, observations,
// rollouts, enrollments or audit events: a copy never merges into live data.
var ErrNotEmpty = errors.New("target PostgreSQL database is not empty")

// Source names the SQLite files to copy.
type Source struct {
	// Store is the SQLite task store (-database). It is migrated to this binary's schema
	// first, as starting flasher-server on it would.
	Store string
	// Audit is the SQLite audit trail (-audit-db); a missing file is skipped.
	Audit string
}

// Counts says how many rows of each kind were copied.
type Counts struct {
	Tasks, Events, Changes, Observations, History, Rollouts, Audit int64
	JoinTokens, JoinTokenUses, AgentCertificates, AgentRevocations int64
	// Revision is the store revision the PostgreSQL counter continues from.
	Revision int64
}

// table is one copy: a SQLite query and the PostgreSQL table and columns its rows go to, with
// an optional conversion of each row.
type table struct {
	query   string
	into    string
	columns []string
	convert func([]any) ([]any, error)
	count   *int64
}

func (c *Counts) tables() []table {
	return []table{
		{query: "SELECT id, request_id, server_id, method, state, requester, priority, revision, body FROM tasks ORDER BY seq",
			into: "tasks", columns: []string{"id", "request_id", "server_id", "method", "state", "requester", "priority", "revision", "body"},
			convert: jsonColumns(8), count: &c.Tasks},
		{query: "SELECT task_id, revision, time_ns, kind, from_state, to_state, message FROM task_events ORDER BY revision",
			into: "task_events", columns: []string{"task_id", "revision", "time_ns", "kind", "from_state", "to_state", "message"}, count: &c.Events},
		{query: "SELECT revision, task_id, task, event FROM changes ORDER BY revision",
			into: "changes", columns: []string{"revision", "task_id", "task", "event"}, convert: jsonColumns(2, 3), count: &c.Changes},
		{query: "SELECT server_id, instance, component, vendor, model, serial, version, source, observed_ns, task_id, collect_id FROM observations",
			into: "observations", columns: observationColumns, count: &c.Observations},
		{query: "SELECT server_id, instance, component, vendor, model, serial, version, source, observed_ns, task_id, collect_id FROM observation_history ORDER BY seq",
			into: "observation_history", columns: observationColumns, count: &c.History},
		{query: "SELECT id, request_id, state, version, revision, body FROM rollouts ORDER BY seq",
			into: "rollouts", columns: []string{"id", "request_id", "state", "version", "revision", "body"}, convert: jsonColumns(5), count: &c.Rollouts},
		{query: "SELECT id, sha256, server_id, max_uses, created_ns, expires_ns, revoked_ns, note FROM join_tokens",
			into: "join_tokens", columns: []string{"id", "sha256", "server_id", "max_uses", "created_at", "expires_at", "revoked_at", "note"},
			convert: times(4, 5, -6), count: &c.JoinTokens},
		{query: "SELECT token_id, server_id, at_ns FROM join_token_uses ORDER BY seq",
			into: "join_token_uses", columns: []string{"token_id", "server_id", "at"}, convert: times(2), count: &c.JoinTokenUses},
		{query: "SELECT serial, server_id, token_id, issued_ns, not_after_ns FROM agent_certificates",
			into: "agent_certificates", columns: []string{"serial", "server_id", "token_id", "issued_at", "not_after"}, convert: times(3, 4), count: &c.AgentCertificates},
		{query: "SELECT server_id, revoked_ns FROM agent_revocations",
			into: "agent_revocations", columns: []string{"server_id", "revoked_at"}, convert: times(1), count: &c.AgentRevocations},
	}
}

var observationColumns = []string{"server_id", "instance", "component", "vendor", "model", "serial", "version", "source", "observed_ns", "task_id", "collect_id"}

// jsonColumns passes the JSON text of the given columns to PostgreSQL as JSON (SQLite keeps it as
// TEXT, which pgx would not send as jsonb).
func jsonColumns(cols ...int) func([]any) ([]any, error) {
	return func(row []any) ([]any, error) {
		for _, i := range cols {
			switch v := row[i].(type) {
			case string:
				row[i] = []byte(v)
			case []byte:
			default:
				return nil, fmt.Errorf("column %d: JSON stored as %T", i, row[i])
			}
		}
		return row, nil
	}
}

// times turns Unix-nanosecond columns into times; a negative index marks a column where 0 means
// none (NULL).
func times(cols ...int) func([]any) ([]any, error) {
	return func(row []any) ([]any, error) {
		for _, i := range cols {
			nullable := i < 0
			if nullable {
				i = -i
			}
			ns, ok := row[i].(int64)
			if !ok {
				return nil, fmt.Errorf("column %d: time stored as %T", i, row[i])
			}
			if nullable && ns == 0 {
				row[i] = nil
			} else {
				row[i] = time.Unix(0, ns).UTC()
			}
		}
		return row, nil
	}
}

// Copy copies src into the PostgreSQL database dst, which it migrates first and which must be
// empty. Errors name the database without its password.
func Copy(ctx context.Context, src Source, dst postgres.Config) (Counts, error) {
	var c Counts
	// Bring the file to this binary's schema (and refuse one from a newer binary).
	st, err := sqlite.Open(ctx, sqlite.Config{Path: src.Store, PollInterval: -1})
	if err != nil {
		return c, fmt.Errorf("copy store: source %s: %w", src.Store, err)
	}
	st.Close()
	db, err := sql.Open("sqlite", src.Store+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return c, fmt.Errorf("copy store: source %s: %w", src.Store, err)
	}
	defer db.Close()
	// One read transaction: every table is read from the same snapshot.
	rtx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return c, fmt.Errorf("copy store: source %s: %w", src.Store, err)
	}
	defer rtx.Rollback() //nolint:errcheck // read-only

	pg, err := postgres.Open(ctx, dst)
	if err != nil {
		return c, fmt.Errorf("copy store: %w", err)
	}
	defer pg.Close()
	err = pgx.BeginFunc(ctx, pg.Pool(), func(tx pgx.Tx) error {
		// The counter's row lock keeps replicas started too early from writing meanwhile.
		var current int64
		if err := tx.QueryRow(ctx, "SELECT current FROM revision WHERE id = 1 FOR UPDATE").Scan(&current); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT $1::bigint > 0 OR EXISTS (SELECT 1 FROM tasks) OR EXISTS (SELECT 1 FROM observations)
			OR EXISTS (SELECT 1 FROM rollouts) OR EXISTS (SELECT 1 FROM join_tokens) OR EXISTS (SELECT 1 FROM agent_revocations)
			OR EXISTS (SELECT 1 FROM audit_events)`, current).Scan(&used); err != nil {
			return err
		}
		if used {
			return ErrNotEmpty
		}
		for _, t := range c.tables() {
			if err := copyTable(ctx, rtx, tx, t); err != nil {
				return err
			}
		}
		var compacted int64
		if err := rtx.QueryRowContext(ctx, "SELECT current, compacted FROM revision WHERE id = 1").Scan(&c.Revision, &compacted); err != nil {
			return fmt.Errorf("read revision: %w", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE revision SET current = $1 WHERE id = 1", c.Revision); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE compaction SET compacted = $1 WHERE id = 1", compacted); err != nil {
			return err
		}
		return copyAudit(ctx, tx, src.Audit, &c.Audit)
	})
	if err != nil {
		return Counts{}, fmt.Errorf("copy store %s to PostgreSQL %s: %w", src.Store, pg.Name(), err)
	}
	return c, nil
}

// copyTable streams one table's rows from SQLite into PostgreSQL with COPY.
func copyTable(ctx context.Context, from *sql.Tx, to pgx.Tx, t table) error {
	rows, err := from.QueryContext(ctx, t.query)
	if err != nil {
		return fmt.Errorf("read %s: %w", t.into, err)
	}
	defer rows.Close()
	return copyRows(ctx, rows, to, t)
}

func copyRows(ctx context.Context, rows *sql.Rows, to pgx.Tx, t table) error {
	var convErr error
	n, err := to.CopyFrom(ctx, pgx.Identifier{t.into}, t.columns, pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		row := make([]any, len(t.columns))
		ptrs := make([]any, len(row))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		if t.convert != nil {
			if row, convErr = t.convert(row); convErr != nil {
				return nil, convErr
			}
		}
		return row, nil
	}))
	if err != nil {
		return fmt.Errorf("copy %s: %w", t.into, err)
	}
	*t.count = n
	return nil
}

// copyAudit copies the SQLite audit trail at path, if it exists, into audit_events.
func copyAudit(ctx context.Context, to pgx.Tx, path string, count *int64) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT time_ns, identity, action, server_id, task_id, code, message, peer FROM audit_events ORDER BY id")
	if err != nil {
		return fmt.Errorf("audit trail %s: %w", path, err)
	}
	defer rows.Close()
	return copyRows(ctx, rows, to, table{into: "audit_events",
		columns: []string{"time_ns", "identity", "action", "server_id", "task_id", "code", "message", "peer"}, count: count})
}
