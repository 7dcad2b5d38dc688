package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/store"
)

var _ store.Rollouts = (*Store)(nil)

const (
	sqlCreateRollout = `INSERT INTO rollouts (id, request_id, state, version, body, revision)
		VALUES (?, ?, ?, 1, ?, (SELECT COALESCE(MAX(revision), 0) + 1 FROM rollouts)) RETURNING revision`
	sqlUpdateRollout = `UPDATE rollouts SET state = ?, version = ?, body = ?, revision = (SELECT MAX(revision) + 1 FROM rollouts)
		WHERE id = ? AND version = ? RETURNING revision`
)

// hasRollout reports whether a batch writes a rollout: those run on the savepoint path only,
// being rare (one write per rollout step) and needing reads inside the transaction.
func hasRollout(batch []*op) bool {
	for _, o := range batch {
		if o.kind == opRollout {
			return true
		}
	}
	return false
}

// CreateRollout implements store.Rollouts.
func (s *Store) CreateRollout(ctx context.Context, r *store.RolloutRecord) (*store.RolloutRecord, bool, error) {
	rec := r.Clone()
	rec.Version = 1
	body, err := store.EncodeRollout(rec)
	if err != nil {
		return nil, false, fmt.Errorf("sqlite store: %w", err)
	}
	res := s.submit(&op{ctx: ctx, kind: opRollout, res: make(chan result, 1),
		rollout: func(ctx context.Context, conn *sql.Conn) result {
			var requestID any // NULL, so that only non-empty request ids are unique
			if rec.RequestID != "" {
				requestID = rec.RequestID
				var old []byte
				var version, revision int64
				err := conn.QueryRowContext(ctx, "SELECT body, version, revision FROM rollouts WHERE request_id = ?", rec.RequestID).Scan(&old, &version, &revision)
				switch {
				case err == nil:
					existing, err := store.DecodeRollout(old, version, revision)
					if err != nil {
						return result{err: fmt.Errorf("sqlite store: rollout for request %s: %w", rec.RequestID, err)}
					}
					return result{rollout: existing}
				case !errors.Is(err, sql.ErrNoRows):
					return result{err: fmt.Errorf("sqlite store: rollout for request %s: %w", rec.RequestID, err)}
				}
			}
			// One writer: the next revision cannot be taken by anybody else meanwhile.
			if err := conn.QueryRowContext(ctx, sqlCreateRollout, rec.ID, requestID, string(rec.Rollout.State), body).Scan(&rec.Revision); err != nil {
				return result{err: fmt.Errorf("sqlite store: create rollout %s: %w", rec.ID, err)}
			}
			return result{created: true, rollout: rec}
		}})
	if res.err != nil {
		return nil, false, res.err
	}
	return res.rollout.Clone(), res.created, nil
}

// UpdateRollout implements store.Rollouts.
func (s *Store) UpdateRollout(ctx context.Context, r *store.RolloutRecord, expected int64) (int64, error) {
	rec := r.Clone()
	rec.Version = expected + 1
	body, err := store.EncodeRollout(rec)
	if err != nil {
		return 0, fmt.Errorf("sqlite store: %w", err)
	}
	res := s.submit(&op{ctx: ctx, kind: opRollout, res: make(chan result, 1),
		rollout: func(ctx context.Context, conn *sql.Conn) result {
			err := conn.QueryRowContext(ctx, sqlUpdateRollout, string(rec.Rollout.State), rec.Version, body, rec.ID, expected).Scan(&rec.Revision)
			if err == nil {
				return result{rollout: rec}
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return result{err: fmt.Errorf("sqlite store: update rollout %s: %w", rec.ID, err)}
			}
			var version int64
			switch err := conn.QueryRowContext(ctx, "SELECT version FROM rollouts WHERE id = ?", rec.ID).Scan(&version); {
			case errors.Is(err, sql.ErrNoRows):
				return result{err: fmt.Errorf("sqlite store: update rollout %s: %w", rec.ID, store.ErrRolloutNotFound)}
			case err != nil:
				return result{err: fmt.Errorf("sqlite store: update rollout %s: %w", rec.ID, err)}
			}
			return result{err: fmt.Errorf("sqlite store: update rollout %s: version is %d, expected %d: %w",
				rec.ID, version, expected, store.ErrRolloutConflict)}
		}})
	if res.err != nil {
		return 0, res.err
	}
	r.Version, r.Revision = rec.Version, res.rollout.Revision
	return rec.Version, nil
}

// GetRollout implements store.Rollouts.
func (s *Store) GetRollout(ctx context.Context, id string) (*store.RolloutRecord, error) {
	out, err := s.queryRollouts(ctx, "SELECT body, version, revision FROM rollouts WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sqlite store: rollout %s: %w", id, store.ErrRolloutNotFound)
	}
	return out[0], nil
}

// ListRollouts implements store.Rollouts.
func (s *Store) ListRollouts(ctx context.Context, active bool) ([]*store.RolloutRecord, error) {
	if active {
		return s.queryRollouts(ctx, "SELECT body, version, revision FROM rollouts WHERE state NOT IN (?, ?, ?) ORDER BY seq",
			string(rollout.StateSucceeded), string(rollout.StateFailed), string(rollout.StateCancelled))
	}
	return s.queryRollouts(ctx, "SELECT body, version, revision FROM rollouts ORDER BY seq")
}

func (s *Store) queryRollouts(ctx context.Context, query string, args ...any) ([]*store.RolloutRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(uninterrupted(ctx), query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: read rollouts: %w", err)
	}
	defer rows.Close()
	var out []*store.RolloutRecord
	for rows.Next() {
		var body []byte
		var version, revision int64
		if err := rows.Scan(&body, &version, &revision); err != nil {
			return nil, fmt.Errorf("sqlite store: read rollouts: %w", err)
		}
		r, err := store.DecodeRollout(body, version, revision)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: read rollouts: %w", err)
	}
	return out, nil
}
