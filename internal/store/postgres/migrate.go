package postgres

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flasher-dev/flasher/internal/store"
)

//go:embed migrations/*.sql
var embeddedMigrations embed.FS

// migrationLock is the advisory lock key migrations run under ("flasher" in ASCII), so
// replicas starting together apply each migration once.
const migrationLock int64 = 0x666c6173686572

func loadMigrations() ([]store.Migration, error) {
	ms, err := store.LoadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	return ms, nil
}

// migrate brings the schema up to the last of ms. It holds a session advisory lock for the
// whole run, and applies each migration in its own transaction with its schema_migrations row,
// so a failed migration leaves the schema at the previous version.
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []store.Migration) (err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock); uerr != nil && err == nil {
			err = fmt.Errorf("migrate: unlock: %w", uerr)
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    int         PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("schema version %d, this binary knows up to %d: %w", current, len(ms), store.ErrSchemaTooNew)
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}
