package store

import (
	"context"
	"errors"
	"time"
)

// ErrJoinTokenNotFound is returned for a join token id that does not exist.
var ErrJoinTokenNotFound = errors.New("join token not found")

// JoinToken is one join token as stored: its public id and the SHA-256 of its secret, never the
// secret itself. internal/enroll makes them and decides what a use may do.
type JoinToken struct {
	ID string
	// SHA256 is the hash of the whole token string the agent presents.
	SHA256 []byte
	// ServerID binds the token to one server; "" for a batch token any server may use once.
	ServerID string
	// MaxUses is how many servers may enroll with the token.
	MaxUses   int
	CreatedAt time.Time
	ExpiresAt time.Time
	// RevokedAt is when the token was revoked; zero while it is not.
	RevokedAt time.Time
	// Note is the operator's description (who created it, for what).
	Note string
	// Uses are the enrollments made with the token, oldest first.
	Uses []TokenUse
}

// TokenUse is one enrollment made with a join token.
type TokenUse struct {
	ServerID string
	At       time.Time
}

// AgentCertificate is one certificate issued to an agent by enrollment or renewal.
type AgentCertificate struct {
	Serial   string
	ServerID string
	// TokenID is the join token of a first enrollment; "" for a renewal.
	TokenID  string
	IssuedAt time.Time
	NotAfter time.Time
}

// Enrollments keeps join tokens, the agent certificates issued for them and the revoked agents.
// It is a separate interface from Store because only the enrollment service and the CA tooling
// need it; callers find it with a type assertion. Methods are safe for concurrent use, also by
// several processes sharing the backend; a call that returned nil is durable.
type Enrollments interface {
	// CreateJoinTokens stores new tokens (Uses ignored), all or none.
	CreateJoinTokens(ctx context.Context, tokens []JoinToken) error
	// JoinTokens returns every token with its uses, oldest first.
	JoinTokens(ctx context.Context) ([]JoinToken, error)
	// RevokeJoinToken marks the token revoked at at (a token revoked before keeps its first
	// time), or returns ErrJoinTokenNotFound.
	RevokeJoinToken(ctx context.Context, id string, at time.Time) error
	// UseJoinToken reads the token id with its uses and the time serverID's agent was last
	// revoked (zero if never) and passes them to check, in one transaction; when check returns
	// nil it records that serverID enrolled with the token at at. Two concurrent uses of one
	// token are serialized, so check always sees the uses made before. It returns
	// ErrJoinTokenNotFound for an unknown id, or check's error, and then records nothing.
	UseJoinToken(ctx context.Context, id, serverID string, at time.Time, check func(tok JoinToken, agentRevokedAt time.Time) error) error
	// RecordAgentCertificate remembers an issued certificate, so revoking its agent can list it.
	RecordAgentCertificate(ctx context.Context, c AgentCertificate) error
	// RevokeAgent records that serverID's agent was revoked at at and returns its certificates
	// that had not expired by then.
	RevokeAgent(ctx context.Context, serverID string, at time.Time) ([]AgentCertificate, error)
	// AgentRevokedAt returns when serverID's agent was last revoked; zero if never.
	AgentRevokedAt(ctx context.Context, serverID string) (time.Time, error)
}
