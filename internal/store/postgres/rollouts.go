package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/store"
)

var _ store.Rollouts = (*Store)(nil)

const (
	// rolloutPayload is the notification payload of a rollout write: other replicas wake their
	// subscribers (runners, watches) without a task revision to compare.
	rolloutPayload = "rollout"

	// Rollout writes lock the table against each other (not against readers), so revisions are
	// assigned and committed in one order: a watcher that saw revision N has seen every lower
	// one. They are rare (one per rollout step), so the lock costs nothing that matters.
	sqlLockRollouts  = "LOCK TABLE rollouts IN SHARE ROW EXCLUSIVE MODE"
	sqlCreateRollout = `INSERT INTO rollouts (id, request_id, state, version, revision, body)
		VALUES ($1, $2, $3, 1, (SELECT COALESCE(MAX(revision), 0) + 1 FROM rollouts), $4) RETURNING revision`
	sqlUpdateRollout = `UPDATE rollouts SET state = $1, version = $2, body = $3, revision = (SELECT MAX(revision) + 1 FROM rollouts)
		WHERE id = $4 AND version = $5 RETURNING revision`
	rolloutColumns = "body, version, revision"
)

// CreateRollout implements store.Rollouts.
func (s *Store) CreateRollout(ctx context.Context, r *store.RolloutRecord) (*store.RolloutRecord, bool, error) {
	rec := r.Clone()
	rec.Version = 1
	body, err := store.EncodeRollout(rec)
	if err != nil {
		return nil, false, fmt.Errorf("postgres store %s: %w", s.name, err)
	}
	var existing *store.RolloutRecord
	err = s.rolloutTx(ctx, func(tx pgx.Tx) error {
		var requestID any // NULL, so that only non-empty request ids are unique
		if rec.RequestID != "" {
			requestID = rec.RequestID
			found, err := scanRollouts(tx.Query(ctx, "SELECT "+rolloutColumns+" FROM rollouts WHERE request_id = $1", rec.RequestID))
			if err != nil {
				return err
			}
			if len(found) > 0 {
				existing = found[0]
				return nil
			}
		}
		return tx.QueryRow(ctx, sqlCreateRollout, rec.ID, requestID, string(rec.Rollout.State), body).Scan(&rec.Revision)
	})
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("postgres store %s: create rollout %s: %w", s.name, rec.ID, err)
	case existing != nil:
		return existing, false, nil
	}
	return rec.Clone(), true, nil
}

// UpdateRollout implements store.Rollouts.
func (s *Store) UpdateRollout(ctx context.Context, r *store.RolloutRecord, expected int64) (int64, error) {
	rec := r.Clone()
	rec.Version = expected + 1
	body, err := store.EncodeRollout(rec)
	if err != nil {
		return 0, fmt.Errorf("postgres store %s: %w", s.name, err)
	}
	err = s.rolloutTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, sqlUpdateRollout, string(rec.Rollout.State), rec.Version, body, rec.ID, expected).Scan(&rec.Revision)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var version int64
		switch err := tx.QueryRow(ctx, "SELECT version FROM rollouts WHERE id = $1", rec.ID).Scan(&version); {
		case errors.Is(err, pgx.ErrNoRows):
			return store.ErrRolloutNotFound
		case err != nil:
			return err
		}
		return fmt.Errorf("version is %d, expected %d: %w", version, expected, store.ErrRolloutConflict)
	})
	if err != nil {
		return 0, fmt.Errorf("postgres store %s: update rollout %s: %w", s.name, rec.ID, err)
	}
	r.Version, r.Revision = rec.Version, rec.Revision
	return rec.Version, nil
}

// rolloutTx runs fn in a transaction holding the rollout write lock, notifies the other
// replicas when it commits and wakes this one's subscribers.
func (s *Store) rolloutTx(ctx context.Context, fn func(pgx.Tx) error) error {
	wrote := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlLockRollouts); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", notifyChannel, rolloutPayload)
		wrote = err == nil
		return err
	})
	if err == nil && wrote {
		s.Wake()
	}
	return err
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(ctx context.Context, id string) (*store.RolloutRecord, error) {
	out, err := s.queryRollouts(ctx, "SELECT "+rolloutColumns+" FROM rollouts WHERE id = $1", id)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("postgres store %s: rollout %s: %w", s.name, id, store.ErrRolloutNotFound)
	}
	return out[0], nil
}

// ListRollouts implements store.Rollouts.
func (s *Store) ListRollouts(ctx context.Context, active bool) ([]*store.RolloutRecord, error) {
	if active {
		return s.queryRollouts(ctx, "SELECT "+rolloutColumns+" FROM rollouts WHERE state <> ALL($1) ORDER BY seq",
			[]string{string(rollout.StateSucceeded), string(rollout.StateFailed), string(rollout.StateCancelled)})
	}
	return s.queryRollouts(ctx, "SELECT "+rolloutColumns+" FROM rollouts ORDER BY seq")
}

func (s *Store) queryRollouts(ctx context.Context, query string, args ...any) ([]*store.RolloutRecord, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out, err := scanRollouts(s.pool.Query(ctx, query, args...))
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: read rollouts: %w", s.name, err)
	}
	return out, nil
}

func scanRollouts(rows pgx.Rows, err error) ([]*store.RolloutRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.RolloutRecord
	for rows.Next() {
		var body []byte
		var version, revision int64
		if err := rows.Scan(&body, &version, &revision); err != nil {
			return nil, err
		}
		r, err := store.DecodeRollout(body, version, revision)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
