package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/copystore"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
)

// isPostgres reports whether a -store value names a PostgreSQL database.
func isPostgres(spec string) bool {
	return strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://")
}

// openStore opens the task store -store names: SQLite at -database (the default), or the
// PostgreSQL database several replicas share. With PostgreSQL the audit trail lives in the same
// database and is returned; with SQLite the audit store is nil and the trail keeps its own file.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, audit.Store, error) {
	switch {
	case cfg.Store == "" || cfg.Store == "sqlite":
		st, err := sqlite.Open(ctx, sqlite.Config{Path: cfg.Database})
		if err != nil {
			return nil, nil, fmt.Errorf("open store %s: %w", cfg.Database, err)
		}
		log.Info("store: SQLite", "path", cfg.Database)
		return st, nil, nil
	case isPostgres(cfg.Store):
		password, err := readSecret(cfg.StorePasswordFile)
		if err != nil {
			return nil, nil, fmt.Errorf("store password: %w", err)
		}
		st, err := postgres.Open(ctx, postgres.Config{DSN: cfg.Store, Password: password, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("open store: %w", err)
		}
		log.Info("store: PostgreSQL", "database", st.Name())
		return st, audit.NewPostgres(st.Pool(), st.Name()), nil
	default:
		return nil, nil, fmt.Errorf("-store %s: want empty (SQLite at -database) or a postgres:// DSN", postgres.Redact(cfg.Store))
	}
}

// leasesOf returns the store's leases when several replicas may share it, else nil: a SQLite
// file belongs to one process, which needs none.
func leasesOf(st store.Store) store.Leases {
	if l, ok := st.(*postgres.Store); ok {
		return l
	}
	return nil
}

// OpenEnrollments opens the store cfg names (-store, or SQLite at -database under -data-dir)
// for the join-token and agent-revocation tooling of `flasher-server ca`, which runs beside a
// live server on the same database. The returned function closes it.
func OpenEnrollments(ctx context.Context, cfg Config, log *slog.Logger) (store.Enrollments, func() error, error) {
	if cfg.Database == "" {
		cfg.Database = filepath.Join(cfg.DataDir, "flasher.db")
	}
	st, _, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	e, ok := st.(store.Enrollments)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("the %T store keeps no join tokens", st)
	}
	return e, st.Close, nil
}

// MigrateStore copies the SQLite store at -database and the audit trail at -audit-db (defaults
// under -data-dir) into the empty PostgreSQL database -store names (password from the DSN,
// FLASHER_STORE or -store-password-file), for `flasher-server migrate-store`. The returned name
// is the database without its password.
func MigrateStore(ctx context.Context, cfg Config) (copystore.Counts, string, error) {
	if !isPostgres(cfg.Store) {
		return copystore.Counts{}, "", errors.New("migrate-store: -store (or FLASHER_STORE) must name the PostgreSQL database to copy into (postgres://...)")
	}
	if cfg.Database == "" {
		cfg.Database = filepath.Join(cfg.DataDir, "flasher.db")
	}
	if cfg.AuditDB == "" {
		cfg.AuditDB = filepath.Join(cfg.DataDir, "audit.db")
	}
	// Opening a missing file would create an empty store and copy nothing.
	if _, err := os.Stat(cfg.Database); err != nil {
		return copystore.Counts{}, "", fmt.Errorf("migrate-store: SQLite store -database: %w", err)
	}
	password, err := readSecret(cfg.StorePasswordFile)
	if err != nil {
		return copystore.Counts{}, "", fmt.Errorf("migrate-store: store password: %w", err)
	}
	name := postgres.Redact(cfg.Store)
	c, err := copystore.Copy(ctx, copystore.Source{Store: cfg.Database, Audit: cfg.AuditDB},
		postgres.Config{DSN: cfg.Store, Password: password, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return copystore.Counts{}, name, fmt.Errorf("migrate-store: %w", err)
	}
	return c, name, nil
}
