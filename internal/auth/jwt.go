package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// MaxJWTBytes bounds the tokens the verifier looks at; anything longer is refused before
// decoding, so a hostile header cannot make the server allocate much.
const MaxJWTBytes = 16 << 10

// KeySource finds the public key that verifies a JWT signed with alg under key id kid.
type KeySource interface {
	Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error)
}

// JWTConfig configures OIDC/JWT bearer-token verification.
type JWTConfig struct {
	// Issuer is the exact "iss" every token must carry.
	Issuer string
	// Audience must appear in the token's "aud" (a string or an array).
	Audience string
	// Keys verifies signatures (JWKS from a URL or a file).
	Keys KeySource
	// Leeway tolerates clock skew on exp and nbf (0: 30s; at most 5 minutes).
	Leeway time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// CacheTTL is how long a verified token is remembered (by its SHA-256) so repeated calls
	// skip the signature check (0: 1 minute; negative: no cache). A key removed from the JWKS
	// stops verifying new tokens at once, cached ones within CacheTTL; exp always applies.
	CacheTTL time.Duration
}

// JWTVerifier checks RS256 and ES256 JWTs from an OIDC provider with go-oidc and go-jose.
type JWTVerifier struct {
	cfg  JWTConfig
	oidc *oidc.IDTokenVerifier

	mu    sync.Mutex
	cache map[[32]byte]verified
}

type verified struct {
	id    Identity
	until time.Time
}

// maxCachedJWTs bounds the cache; when full it is emptied (cheap, and only costs re-checks).
const maxCachedJWTs = 4096

// NewJWTVerifier checks cfg and returns a verifier.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.Keys == nil {
		return nil, errors.New("jwt verifier: issuer, audience and keys are required")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Leeway < 0 || cfg.Leeway > 5*time.Minute {
		return nil, fmt.Errorf("jwt verifier: leeway %s out of range [0, 5m]", cfg.Leeway)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	v := &JWTVerifier{cfg: cfg, cache: map[[32]byte]verified{}}
	v.oidc = oidc.NewVerifier(cfg.Issuer, keySet{src: cfg.Keys}, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256},
		// go-oidc refuses when exp is before its now: shifting now back by the leeway
		// accepts a token until exp+leeway.
		Now: func() time.Time { return cfg.Now().Add(-cfg.Leeway) },
	})
	return v, nil
}

// JWTClaims are the claims Flasher reads beyond what the OIDC verifier checks.
type JWTClaims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	ExpiresAt *json.Number    `json:"exp"`
	NotBefore *json.Number    `json:"nbf"`
	// Scope is the OAuth 2.0 space-separated form; Scp the array form some providers use.
	Scope string          `json:"scope"`
	Scp   json.RawMessage `json:"scp"`
}

// signingAlgs are the only algorithms accepted: "none", HMAC and everything else are refused
// by go-jose before any key is looked up.
var signingAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// truncate keeps attacker-chosen strings short in error messages.
func truncate(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// refusal wraps a library's error text into ErrInvalidToken, bounded in length because parts
// of it (an algorithm name) come from the token.
func refusal(what string, err error) error {
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalidToken, what, msg)
}

// Verify checks the token's signature, issuer, audience and validity window, and returns the
// identity it names: the subject, with the known scopes it carries.
func (v *JWTVerifier) Verify(ctx context.Context, raw string) (Identity, error) {
	if v.cfg.CacheTTL < 0 {
		id, _, err := v.verify(ctx, raw)
		return id, err
	}
	key := sha256.Sum256([]byte(raw))
	now := v.cfg.Now()
	v.mu.Lock()
	hit, ok := v.cache[key]
	v.mu.Unlock()
	if ok && now.Before(hit.until) {
		return hit.id, nil
	}
	id, exp, err := v.verify(ctx, raw)
	if err != nil {
		return Identity{}, err
	}
	until := now.Add(v.cfg.CacheTTL)
	if e := exp.Add(v.cfg.Leeway); e.Before(until) {
		until = e
	}
	v.mu.Lock()
	if len(v.cache) >= maxCachedJWTs {
		clear(v.cache)
	}
	v.cache[key] = verified{id: id, until: until}
	v.mu.Unlock()
	return id, nil
}

// verify checks the token fully and returns its identity and expiry. go-oidc checks the
// signature (through keySet), the issuer, the audience and exp; nbf is checked here with the
// configured leeway (go-oidc allows a fixed 5 minutes), and so are the subject and scopes.
// When go-oidc refuses, the unverified claims only choose the words of the refusal.
func (v *JWTVerifier) verify(ctx context.Context, raw string) (Identity, time.Time, error) {
	if len(raw) > MaxJWTBytes {
		return Identity{}, time.Time{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxJWTBytes)
	}
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return Identity{}, time.Time{}, refusal("header or encoding not accepted", err)
	}
	tok, err := v.oidc.Verify(ctx, raw)
	if err != nil {
		return Identity{}, time.Time{}, v.explain(jws, err)
	}
	var c JWTClaims
	if err := tok.Claims(&c); err != nil {
		return Identity{}, time.Time{}, refusal("claims", err)
	}
	if c.NotBefore != nil {
		nbf, err := numericDate(*c.NotBefore)
		if err != nil {
			return Identity{}, time.Time{}, fmt.Errorf("%w: nbf: %v", ErrInvalidToken, err)
		}
		if v.cfg.Now().Add(v.cfg.Leeway).Before(nbf) {
			return Identity{}, time.Time{}, fmt.Errorf("%w: not yet valid", ErrInvalidToken)
		}
	}
	if c.Subject == "" || len(c.Subject) > 256 {
		return Identity{}, time.Time{}, fmt.Errorf("%w: missing or oversized sub", ErrInvalidToken)
	}
	scopes := parseScopes(c.Scope)
	if len(c.Scp) > 0 {
		scp, err := stringOrArray(c.Scp)
		if err != nil {
			return Identity{}, time.Time{}, fmt.Errorf("%w: scp: %v", ErrInvalidToken, err)
		}
		for _, s := range scp {
			scopes = append(scopes, parseScopes(s)...)
		}
	}
	// Only scopes Flasher knows are kept: in particular no token can claim ScopeAgent.
	var known []string
	for _, s := range scopes {
		if ValidScope(s) && !contains(known, s) {
			known = append(known, s)
		}
	}
	return Identity{Name: c.Subject, Scopes: known}, tok.Expiry, nil
}

// explain words a refusal by go-oidc. The token is already refused; its unverified claims
// only say which check it failed.
func (v *JWTVerifier) explain(jws *jose.JSONWebSignature, err error) error {
	var c JWTClaims
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) != nil {
		return refusal("claims", err)
	}
	var expired *oidc.TokenExpiredError
	switch {
	case c.Issuer != v.cfg.Issuer:
		return fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	case errors.As(err, &expired) && c.ExpiresAt == nil:
		return fmt.Errorf("%w: no exp", ErrInvalidToken)
	case errors.As(err, &expired):
		return fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	if auds, aerr := stringOrArray(c.Audience); aerr != nil || !contains(auds, v.cfg.Audience) {
		return fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	}
	return refusal("not accepted", err)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func stringOrArray(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("neither a string nor an array of strings")
	}
	return many, nil
}

// numericDate converts a JWT NumericDate (seconds, possibly fractional) to a time.
func numericDate(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, errors.New("not a valid NumericDate")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// keySet verifies signatures for go-oidc with a KeySource: the key is chosen by the token's
// kid and alg (see KeySet.lookup), and go-jose checks that the key's type fits the algorithm.
type keySet struct {
	src KeySource
}

// VerifySignature implements oidc.KeySet.
func (k keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return nil, err
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	h := jws.Signatures[0].Header
	key, err := k.src.Key(ctx, h.KeyID, h.Algorithm)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		if _, crit := h.ExtraHeaders["crit"]; crit {
			return nil, errors.New("critical header extensions not supported")
		}
		return nil, errors.New("bad signature")
	}
	return payload, nil
}
