package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
)

var _ store.Enrollments = (*Store)(nil)

const joinTokenColumns = "id, sha256, server_id, max_uses, created_ns, expires_ns, revoked_ns, note"

// querier is what both the read pool and the writer's connection offer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// enrollWrite runs fn on the writer's connection inside its transaction. It rides on the
// savepoint path that rollout writes use (opRollout): a write that reads before it writes,
// rare enough that it needs no batched fast path.
func (s *Store) enrollWrite(ctx context.Context, fn func(ctx context.Context, conn *sql.Conn) error) error {
	return s.submit(&op{ctx: ctx, kind: opRollout, res: make(chan result, 1),
		rollout: func(ctx context.Context, conn *sql.Conn) result { return result{err: fn(ctx, conn)} }}).err
}

// CreateJoinTokens implements store.Enrollments.
func (s *Store) CreateJoinTokens(ctx context.Context, tokens []store.JoinToken) error {
	if len(tokens) == 0 {
		return nil
	}
	toks := append([]store.JoinToken(nil), tokens...)
	return s.enrollWrite(ctx, func(ctx context.Context, conn *sql.Conn) error {
		for _, t := range toks {
			if _, err := conn.ExecContext(ctx, "INSERT INTO join_tokens ("+joinTokenColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				t.ID, t.SHA256, t.ServerID, t.MaxUses, store.UnixNanos(t.CreatedAt), store.UnixNanos(t.ExpiresAt),
				store.UnixNanos(t.RevokedAt), t.Note); err != nil {
				return fmt.Errorf("sqlite store: create join token %s: %w", t.ID, err)
			}
		}
		return nil
	})
}

// JoinTokens implements store.Enrollments.
func (s *Store) JoinTokens(ctx context.Context) ([]store.JoinToken, error) {
	return readJoinTokens(uninterrupted(ctx), s.rdb, "")
}

// readJoinTokens reads every token, or the one named id, with its uses.
func readJoinTokens(ctx context.Context, q querier, id string) ([]store.JoinToken, error) {
	query, args := "SELECT "+joinTokenColumns+" FROM join_tokens ORDER BY created_ns, id", []any(nil)
	uses := "SELECT token_id, server_id, at_ns FROM join_token_uses ORDER BY seq"
	if id != "" {
		query, args = "SELECT "+joinTokenColumns+" FROM join_tokens WHERE id = ?", []any{id}
		uses = "SELECT token_id, server_id, at_ns FROM join_token_uses WHERE token_id = ? ORDER BY seq"
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: read join tokens: %w", err)
	}
	var out []store.JoinToken
	index := map[string]int{}
	for rows.Next() {
		var t store.JoinToken
		var created, expires, revoked int64
		if err := rows.Scan(&t.ID, &t.SHA256, &t.ServerID, &t.MaxUses, &created, &expires, &revoked, &t.Note); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite store: read join tokens: %w", err)
		}
		t.CreatedAt, t.ExpiresAt, t.RevokedAt = store.FromUnixNanos(created), store.FromUnixNanos(expires), store.FromUnixNanos(revoked)
		index[t.ID] = len(out)
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: read join tokens: %w", err)
	}
	if rows, err = q.QueryContext(ctx, uses, args...); err != nil {
		return nil, fmt.Errorf("sqlite store: read join token uses: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tokenID string
		var u store.TokenUse
		var at int64
		if err := rows.Scan(&tokenID, &u.ServerID, &at); err != nil {
			return nil, fmt.Errorf("sqlite store: read join token uses: %w", err)
		}
		u.At = store.FromUnixNanos(at)
		if i, ok := index[tokenID]; ok {
			out[i].Uses = append(out[i].Uses, u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: read join token uses: %w", err)
	}
	return out, nil
}

// RevokeJoinToken implements store.Enrollments.
func (s *Store) RevokeJoinToken(ctx context.Context, id string, at time.Time) error {
	return s.enrollWrite(ctx, func(ctx context.Context, conn *sql.Conn) error {
		res, err := conn.ExecContext(ctx, "UPDATE join_tokens SET revoked_ns = CASE WHEN revoked_ns = 0 THEN ? ELSE revoked_ns END WHERE id = ?",
			store.UnixNanos(at), id)
		if err != nil {
			return fmt.Errorf("sqlite store: revoke join token %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = store.ErrJoinTokenNotFound
			}
			return fmt.Errorf("sqlite store: revoke join token %s: %w", id, err)
		}
		return nil
	})
}

// UseJoinToken implements store.Enrollments.
func (s *Store) UseJoinToken(ctx context.Context, id, serverID string, at time.Time, check func(store.JoinToken, time.Time) error) error {
	return s.enrollWrite(ctx, func(ctx context.Context, conn *sql.Conn) error {
		toks, err := readJoinTokens(ctx, conn, id)
		if err != nil {
			return err
		}
		if len(toks) == 0 {
			return fmt.Errorf("sqlite store: join token %s: %w", id, store.ErrJoinTokenNotFound)
		}
		revoked, err := agentRevokedAt(ctx, conn, serverID)
		if err != nil {
			return err
		}
		if err := check(toks[0], revoked); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO join_token_uses (token_id, server_id, at_ns) VALUES (?, ?, ?)",
			id, serverID, store.UnixNanos(at)); err != nil {
			return fmt.Errorf("sqlite store: use join token %s for server %s: %w", id, serverID, err)
		}
		return nil
	})
}

// RecordAgentCertificate implements store.Enrollments.
func (s *Store) RecordAgentCertificate(ctx context.Context, c store.AgentCertificate) error {
	return s.enrollWrite(ctx, func(ctx context.Context, conn *sql.Conn) error {
		if _, err := conn.ExecContext(ctx, "INSERT INTO agent_certificates (serial, server_id, token_id, issued_ns, not_after_ns) VALUES (?, ?, ?, ?, ?)",
			c.Serial, c.ServerID, c.TokenID, store.UnixNanos(c.IssuedAt), store.UnixNanos(c.NotAfter)); err != nil {
			return fmt.Errorf("sqlite store: record certificate %s of server %s: %w", c.Serial, c.ServerID, err)
		}
		return nil
	})
}

// RevokeAgent implements store.Enrollments.
func (s *Store) RevokeAgent(ctx context.Context, serverID string, at time.Time) ([]store.AgentCertificate, error) {
	var out []store.AgentCertificate
	err := s.enrollWrite(ctx, func(ctx context.Context, conn *sql.Conn) error {
		out = nil // a replayed batch runs the closure again
		if _, err := conn.ExecContext(ctx, `INSERT INTO agent_revocations (server_id, revoked_ns) VALUES (?, ?)
			ON CONFLICT (server_id) DO UPDATE SET revoked_ns = excluded.revoked_ns`, serverID, store.UnixNanos(at)); err != nil {
			return fmt.Errorf("sqlite store: revoke agent of server %s: %w", serverID, err)
		}
		rows, err := conn.QueryContext(ctx, `SELECT serial, server_id, token_id, issued_ns, not_after_ns FROM agent_certificates
			WHERE server_id = ? AND not_after_ns > ? ORDER BY issued_ns, serial`, serverID, store.UnixNanos(at))
		if err != nil {
			return fmt.Errorf("sqlite store: certificates of server %s: %w", serverID, err)
		}
		defer rows.Close()
		for rows.Next() {
			var c store.AgentCertificate
			var issued, notAfter int64
			if err := rows.Scan(&c.Serial, &c.ServerID, &c.TokenID, &issued, &notAfter); err != nil {
				return fmt.Errorf("sqlite store: certificates of server %s: %w", serverID, err)
			}
			c.IssuedAt, c.NotAfter = store.FromUnixNanos(issued), store.FromUnixNanos(notAfter)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AgentRevokedAt implements store.Enrollments.
func (s *Store) AgentRevokedAt(ctx context.Context, serverID string) (time.Time, error) {
	return agentRevokedAt(uninterrupted(ctx), s.rdb, serverID)
}

func agentRevokedAt(ctx context.Context, q querier, serverID string) (time.Time, error) {
	rows, err := q.QueryContext(ctx, "SELECT revoked_ns FROM agent_revocations WHERE server_id = ?", serverID)
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite store: revocation of server %s: %w", serverID, err)
	}
	defer rows.Close()
	var ns int64
	if rows.Next() {
		if err := rows.Scan(&ns); err != nil {
			return time.Time{}, fmt.Errorf("sqlite store: revocation of server %s: %w", serverID, err)
		}
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("sqlite store: revocation of server %s: %w", serverID, err)
	}
	return store.FromUnixNanos(ns), nil
}
