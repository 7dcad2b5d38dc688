package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
)

// ErrSchemaTooNew is store.ErrSchemaTooNew, kept under this name for callers of this package.
var ErrSchemaTooNew = store.ErrSchemaTooNew

//go:embed migrations/*.sql
var embeddedMigrations embed.FS

// loadMigrations reads the migrations in dir of fsys.
func loadMigrations(fsys fs.FS, dir string) ([]store.Migration, error) {
	ms, err := store.LoadMigrations(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	return ms, nil
}

// migrate brings the schema up to the last of ms in one immediate transaction, so two processes
// starting on the same file cannot both apply a migration.
func migrate(ctx context.Context, conn *sql.Conn, ms []store.Migration, now time.Time) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("sqlite store: migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("sqlite store: migrate: %w", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("sqlite store: migrate: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("sqlite store: schema version %d, this binary knows up to %d: %w", current, len(ms), ErrSchemaTooNew)
	}
	for _, m := range ms[current:] {
		if _, err := conn.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("sqlite store: migration %s: %w", m.Name, err)
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
			m.Version, m.Name, now.UTC().Format(time.RFC3339Nano)); err != nil {
			return fmt.Errorf("sqlite store: migration %s: %w", m.Name, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("sqlite store: migrate: %w", err)
	}
	return nil
}
