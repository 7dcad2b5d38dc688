package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flasher-dev/flasher/internal/store"
)

var _ store.Enrollments = (*Store)(nil)

const joinTokenColumns = "id, sha256, server_id, max_uses, created_at, expires_at, revoked_at, note"

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// nullTime is the stored form of an optional time: NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// CreateJoinTokens implements store.Enrollments.
func (s *Store) CreateJoinTokens(ctx context.Context, tokens []store.JoinToken) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, t := range tokens {
			if _, err := tx.Exec(ctx, "INSERT INTO join_tokens ("+joinTokenColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
				t.ID, t.SHA256, t.ServerID, t.MaxUses, t.CreatedAt, t.ExpiresAt, nullTime(t.RevokedAt), t.Note); err != nil {
				return fmt.Errorf("join token %s: %w", t.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres store %s: create join tokens: %w", s.name, err)
	}
	return nil
}

// JoinTokens implements store.Enrollments.
func (s *Store) JoinTokens(ctx context.Context) ([]store.JoinToken, error) {
	return s.readJoinTokens(ctx, s.pool, "", false)
}

// readJoinTokens reads every token, or the one named id (locked for the transaction when
// forUpdate), with its uses.
func (s *Store) readJoinTokens(ctx context.Context, q querier, id string, forUpdate bool) ([]store.JoinToken, error) {
	query, args := "SELECT "+joinTokenColumns+" FROM join_tokens ORDER BY created_at, id", []any(nil)
	uses := "SELECT token_id, server_id, at FROM join_token_uses ORDER BY seq"
	if id != "" {
		query, args = "SELECT "+joinTokenColumns+" FROM join_tokens WHERE id = $1", []any{id}
		uses = "SELECT token_id, server_id, at FROM join_token_uses WHERE token_id = $1 ORDER BY seq"
		if forUpdate {
			query += " FOR UPDATE"
		}
	}
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: read join tokens: %w", s.name, err)
	}
	var out []store.JoinToken
	index := map[string]int{}
	for rows.Next() {
		var t store.JoinToken
		var revoked *time.Time
		if err := rows.Scan(&t.ID, &t.SHA256, &t.ServerID, &t.MaxUses, &t.CreatedAt, &t.ExpiresAt, &revoked, &t.Note); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres store %s: read join tokens: %w", s.name, err)
		}
		t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC()
		if revoked != nil {
			t.RevokedAt = revoked.UTC()
		}
		index[t.ID] = len(out)
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store %s: read join tokens: %w", s.name, err)
	}
	if rows, err = q.Query(ctx, uses, args...); err != nil {
		return nil, fmt.Errorf("postgres store %s: read join token uses: %w", s.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var tokenID string
		var u store.TokenUse
		if err := rows.Scan(&tokenID, &u.ServerID, &u.At); err != nil {
			return nil, fmt.Errorf("postgres store %s: read join token uses: %w", s.name, err)
		}
		u.At = u.At.UTC()
		if i, ok := index[tokenID]; ok {
			out[i].Uses = append(out[i].Uses, u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store %s: read join token uses: %w", s.name, err)
	}
	return out, nil
}

// RevokeJoinToken implements store.Enrollments.
func (s *Store) RevokeJoinToken(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, "UPDATE join_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2", at, id)
	if err != nil {
		return fmt.Errorf("postgres store %s: revoke join token %s: %w", s.name, id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres store %s: revoke join token %s: %w", s.name, id, store.ErrJoinTokenNotFound)
	}
	return nil
}

// UseJoinToken implements store.Enrollments. The token's row stays locked until the use is
// committed, so replicas enrolling with one token concurrently take turns.
func (s *Store) UseJoinToken(ctx context.Context, id, serverID string, at time.Time, check func(store.JoinToken, time.Time) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		toks, err := s.readJoinTokens(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if len(toks) == 0 {
			return fmt.Errorf("postgres store %s: join token %s: %w", s.name, id, store.ErrJoinTokenNotFound)
		}
		revoked, err := s.agentRevokedAt(ctx, tx, serverID)
		if err != nil {
			return err
		}
		if err := check(toks[0], revoked); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO join_token_uses (token_id, server_id, at) VALUES ($1, $2, $3)", id, serverID, at); err != nil {
			return fmt.Errorf("postgres store %s: use join token %s for server %s: %w", s.name, id, serverID, err)
		}
		return nil
	})
}

// RecordAgentCertificate implements store.Enrollments.
func (s *Store) RecordAgentCertificate(ctx context.Context, c store.AgentCertificate) error {
	if _, err := s.pool.Exec(ctx, "INSERT INTO agent_certificates (serial, server_id, token_id, issued_at, not_after) VALUES ($1, $2, $3, $4, $5)",
		c.Serial, c.ServerID, c.TokenID, c.IssuedAt, c.NotAfter); err != nil {
		return fmt.Errorf("postgres store %s: record certificate %s of server %s: %w", s.name, c.Serial, c.ServerID, err)
	}
	return nil
}

// RevokeAgent implements store.Enrollments.
func (s *Store) RevokeAgent(ctx context.Context, serverID string, at time.Time) ([]store.AgentCertificate, error) {
	var out []store.AgentCertificate
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = nil
		if _, err := tx.Exec(ctx, `INSERT INTO agent_revocations (server_id, revoked_at) VALUES ($1, $2)
			ON CONFLICT (server_id) DO UPDATE SET revoked_at = excluded.revoked_at`, serverID, at); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT serial, server_id, token_id, issued_at, not_after FROM agent_certificates
			WHERE server_id = $1 AND not_after > $2 ORDER BY issued_at, serial`, serverID, at)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c store.AgentCertificate
			if err := rows.Scan(&c.Serial, &c.ServerID, &c.TokenID, &c.IssuedAt, &c.NotAfter); err != nil {
				return err
			}
			c.IssuedAt, c.NotAfter = c.IssuedAt.UTC(), c.NotAfter.UTC()
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: revoke agent of server %s: %w", s.name, serverID, err)
	}
	return out, nil
}

// AgentRevokedAt implements store.Enrollments.
func (s *Store) AgentRevokedAt(ctx context.Context, serverID string) (time.Time, error) {
	return s.agentRevokedAt(ctx, s.pool, serverID)
}

func (s *Store) agentRevokedAt(ctx context.Context, q querier, serverID string) (time.Time, error) {
	rows, err := q.Query(ctx, "SELECT revoked_at FROM agent_revocations WHERE server_id = $1", serverID)
	if err != nil {
		return time.Time{}, fmt.Errorf("postgres store %s: revocation of server %s: %w", s.name, serverID, err)
	}
	defer rows.Close()
	var at time.Time
	if rows.Next() {
		if err := rows.Scan(&at); err != nil {
			return time.Time{}, fmt.Errorf("postgres store %s: revocation of server %s: %w", s.name, serverID, err)
		}
		at = at.UTC()
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, fmt.Errorf("postgres store %s: revocation of server %s: %w", s.name, serverID, err)
	}
	return at, nil
}
