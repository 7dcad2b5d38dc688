// Package enroll issues agent certificates without hand-made certificates per host, in the
// spirit of kubelet TLS bootstrap and SPIRE join tokens. An operator makes join tokens (one
// bound to a server, or a batch token several servers may use once each), short-lived and
// stored only as a SHA-256; an agent generates its own key and presents a token with a CSR;
// the Flasher CA signs a certificate naming the server the agent asked for. Before it expires
// the agent renews it with the certificate itself. Revoking an agent refuses its certificates
// (deny list), its renewals and any enrollment with a token made before the revocation.
//
// This package holds the rules; the store keeps the tokens (store.Enrollments), internal/api
// serves AgentService.Enroll, and `flasher-server ca join-token` makes tokens.
package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/store"
)

var (
	// ErrTokenRefused is returned for a join token that does not authenticate the enrollment;
	// the wrapped text says why without repeating the token.
	ErrTokenRefused = errors.New("join token refused")
	// ErrInvalidRequest is returned for a request that can never succeed (bad CSR, bad id).
	ErrInvalidRequest = errors.New("invalid enrollment request")
	// ErrAgentRevoked is returned for a renewal by a certificate issued before its agent was
	// revoked.
	ErrAgentRevoked = errors.New("agent revoked")
)

// Token limits: tokens are meant to be short-lived.
const (
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 7 * 24 * time.Hour
	MaxBatch        = 100000
)

// TokenSpec says what join token to make.
type TokenSpec struct {
	// ServerID binds the token to one server, for one enrollment. Empty makes a batch token.
	ServerID string
	// Count is how many servers may enroll with a batch token, once each (ignored with
	// ServerID).
	Count int
	// TTL is how long the token is valid (0: DefaultTokenTTL).
	TTL  time.Duration
	Note string
}

// NewToken makes a join token: it returns the token string, to be shown once, and its stored
// form. The token is "fjt_<id>.<secret>": the id finds the row, the secret (256 random bits)
// proves possession; only the SHA-256 of the whole string is kept.
func NewToken(spec TokenSpec, now time.Time) (string, store.JoinToken, error) {
	ttl := spec.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", store.JoinToken{}, fmt.Errorf("join token: ttl %s: want up to %s", ttl, MaxTokenTTL)
	}
	uses := 1
	if spec.ServerID != "" {
		if !auth.ValidServerID(spec.ServerID) {
			return "", store.JoinToken{}, fmt.Errorf("join token: server id %q: want 1-128 of [A-Za-z0-9._-]", spec.ServerID)
		}
	} else {
		if spec.Count < 1 || spec.Count > MaxBatch {
			return "", store.JoinToken{}, fmt.Errorf("join token: a batch token needs a count of 1-%d servers (or name one server)", MaxBatch)
		}
		uses = spec.Count
	}
	var idb [8]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", store.JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", store.JoinToken{}, fmt.Errorf("join token: %w", err)
	}
	id := hex.EncodeToString(idb[:])
	tok := auth.JoinTokenPrefix + id + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(tok))
	now = now.UTC()
	return tok, store.JoinToken{
		ID: id, SHA256: sum[:], ServerID: spec.ServerID, MaxUses: uses,
		CreatedAt: now, ExpiresAt: now.Add(ttl), Note: spec.Note,
	}, nil
}

// parseToken returns a token's id and hash, or an error that does not repeat it.
func parseToken(tok string) (string, []byte, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(tok), auth.JoinTokenPrefix)
	id, secret, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || len(id) != 16 || len(secret) != 43 {
		return "", nil, fmt.Errorf("%w: not a join token (fjt_<id>.<secret>)", ErrTokenRefused)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", nil, fmt.Errorf("%w: not a join token (fjt_<id>.<secret>)", ErrTokenRefused)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return id, sum[:], nil
}

// check is the rule a join token use must pass, inside the store's transaction.
func check(tok store.JoinToken, hash []byte, serverID string, agentRevokedAt, now time.Time) error {
	switch {
	case subtle.ConstantTimeCompare(tok.SHA256, hash) != 1:
		return fmt.Errorf("%w: unknown token", ErrTokenRefused)
	case !tok.RevokedAt.IsZero():
		return fmt.Errorf("%w: token %s was revoked", ErrTokenRefused, tok.ID)
	case !now.Before(tok.ExpiresAt):
		return fmt.Errorf("%w: token %s expired at %s", ErrTokenRefused, tok.ID, tok.ExpiresAt.Format(time.RFC3339))
	case tok.ServerID != "" && tok.ServerID != serverID:
		return fmt.Errorf("%w: token %s is for another server, not %s", ErrTokenRefused, tok.ID, serverID)
	case !agentRevokedAt.IsZero() && !tok.CreatedAt.After(agentRevokedAt):
		return fmt.Errorf("%w: the agent of server %s was revoked at %s, after token %s was made: enroll it with a newer token",
			ErrTokenRefused, serverID, agentRevokedAt.Format(time.RFC3339), tok.ID)
	}
	for _, u := range tok.Uses {
		if u.ServerID == serverID {
			return fmt.Errorf("%w: token %s was already used by server %s at %s (tokens are not replayable)",
				ErrTokenRefused, tok.ID, serverID, u.At.Format(time.RFC3339))
		}
	}
	if len(tok.Uses) >= tok.MaxUses {
		return fmt.Errorf("%w: token %s is used up (%d of %d)", ErrTokenRefused, tok.ID, len(tok.Uses), tok.MaxUses)
	}
	return nil
}

// Config configures a Service.
type Config struct {
	Store store.Enrollments
	// CA signs the certificates; its key must be loaded.
	CA *ca.CA
	// Validity of issued certificates (0: ca.DefaultAgentValidity).
	Validity time.Duration
	// Now is the clock (nil: time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service issues agent certificates for join tokens and renews them.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.CA == nil {
		return nil, errors.New("enroll: Store and CA are required")
	}
	if cfg.Validity <= 0 {
		cfg.Validity = ca.DefaultAgentValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("part", "enroll")}, nil
}

// Certificate is an issued agent certificate.
type Certificate struct {
	CertPEM  []byte
	CAPEM    []byte
	Serial   string
	NotAfter time.Time
	ServerID string
	// TokenID is the join token used; "" for a renewal.
	TokenID string
}

// TokenID returns the public id of a join token (for the audit trail), or "" when tok is not
// one. It never returns any of the secret.
func TokenID(tok string) string {
	id, _, err := parseToken(tok)
	if err != nil {
		return ""
	}
	return id
}

// Enroll issues a certificate for serverID to the holder of join token tok, for the key of
// csrPEM, and records the token's use.
func (s *Service) Enroll(ctx context.Context, tok, serverID string, csrPEM []byte) (*Certificate, error) {
	if !auth.ValidServerID(serverID) {
		return nil, fmt.Errorf("%w: server id %q: want 1-128 of [A-Za-z0-9._-]", ErrInvalidRequest, serverID)
	}
	csr, err := ca.ParseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	id, hash, err := parseToken(tok)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	err = s.cfg.Store.UseJoinToken(ctx, id, serverID, now, func(t store.JoinToken, revokedAt time.Time) error {
		return check(t, hash, serverID, revokedAt, now)
	})
	if errors.Is(err, store.ErrJoinTokenNotFound) {
		err = fmt.Errorf("%w: unknown token", ErrTokenRefused)
	}
	if err != nil {
		s.log.WarnContext(ctx, "enrollment refused", "server", serverID, "join_id", id, "error", err)
		return nil, err
	}
	c, err := s.issue(ctx, csr, serverID, id, now)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "agent enrolled", "server", serverID, "join_id", id, "serial", c.Serial, "not_after", c.NotAfter)
	return c, nil
}

// Renew issues a new certificate for the agent that presented leaf (verified by the caller as
// naming serverID), for the key of csrPEM. A certificate issued before its agent was revoked
// cannot renew.
func (s *Service) Renew(ctx context.Context, serverID string, leaf *x509.Certificate, csrPEM []byte) (*Certificate, error) {
	csr, err := ca.ParseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	revokedAt, err := s.cfg.Store.AgentRevokedAt(ctx, serverID)
	if err != nil {
		return nil, err
	}
	if issued := leaf.NotBefore.Add(ca.Backdate); !revokedAt.IsZero() && !issued.After(revokedAt) {
		s.log.WarnContext(ctx, "renewal refused: agent revoked", "server", serverID, "serial", auth.SerialString(leaf.SerialNumber))
		return nil, fmt.Errorf("%w: server %s's agent was revoked at %s; enroll it again with a new join token",
			ErrAgentRevoked, serverID, revokedAt.Format(time.RFC3339))
	}
	c, err := s.issue(ctx, csr, serverID, "", s.cfg.Now())
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "agent certificate renewed", "server", serverID, "old_serial", auth.SerialString(leaf.SerialNumber),
		"serial", c.Serial, "not_after", c.NotAfter)
	return c, nil
}

func (s *Service) issue(ctx context.Context, csr *x509.CertificateRequest, serverID, tokenID string, now time.Time) (*Certificate, error) {
	is, err := s.cfg.CA.SignAgentCSR(csr, serverID, s.cfg.Validity)
	if err != nil {
		return nil, fmt.Errorf("enroll server %s: %w", serverID, err)
	}
	c := &Certificate{CertPEM: is.CertPEM, CAPEM: s.cfg.CA.CertPEM, Serial: auth.SerialString(is.Serial),
		NotAfter: is.NotAfter, ServerID: serverID, TokenID: tokenID}
	if err := s.cfg.Store.RecordAgentCertificate(ctx, store.AgentCertificate{
		Serial: c.Serial, ServerID: serverID, TokenID: tokenID, IssuedAt: now, NotAfter: is.NotAfter,
	}); err != nil {
		return nil, fmt.Errorf("enroll server %s: %w", serverID, err)
	}
	return c, nil
}

// RevokeAgent revokes serverID's agent at now: its unexpired certificates go onto the deny list
// at denyListPath (which servers re-read), its renewals are refused, and so is any enrollment
// with a token made before now. It returns the serials it denied.
func RevokeAgent(ctx context.Context, st store.Enrollments, denyListPath, serverID, reason string, now time.Time) ([]string, error) {
	if !auth.ValidServerID(serverID) {
		return nil, fmt.Errorf("revoke agent: server id %q: want 1-128 of [A-Za-z0-9._-]", serverID)
	}
	certs, err := st.RevokeAgent(ctx, serverID, now)
	if err != nil {
		return nil, err
	}
	var serials []string
	for _, c := range certs {
		n, err := ca.ParseSerial(c.Serial)
		if err != nil {
			return serials, fmt.Errorf("revoke agent %s: %w", serverID, err)
		}
		note := "agent of server " + serverID
		if reason != "" {
			note += ": " + reason
		}
		if err := ca.Revoke(denyListPath, n, note, now); err != nil {
			return serials, fmt.Errorf("revoke agent %s: %w", serverID, err)
		}
		serials = append(serials, c.Serial)
	}
	return serials, nil
}
