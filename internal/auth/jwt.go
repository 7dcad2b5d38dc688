package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"sync"
	"time"
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

// JWTVerifier checks RS256 and ES256 JWTs from an OIDC provider.
type JWTVerifier struct {
	cfg JWTConfig

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
	return &JWTVerifier{cfg: cfg, cache: map[[32]byte]verified{}}, nil
}

// jwtHeader is the part of the JOSE header Flasher reads.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
}

// JWTClaims are the registered and scope claims Flasher reads.
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

// ParsedJWT is a JWT split into its parts; the signature is not yet verified.
type ParsedJWT struct {
	Header       jwtHeader
	Claims       JWTClaims
	SigningInput string
	Signature    []byte
}

// ParseJWT splits and decodes a compact JWS without verifying it. It refuses anything but
// RS256/ES256 ("none" and HMAC included), unknown critical headers and oversized tokens.
func ParseJWT(raw string) (*ParsedJWT, error) {
	if len(raw) > MaxJWTBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxJWTBytes)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}
	var p ParsedJWT
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header encoding", ErrInvalidToken)
	}
	if err := strictJSON(hb, &p.Header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrInvalidToken, err)
	}
	if p.Header.Alg != "RS256" && p.Header.Alg != "ES256" {
		return nil, fmt.Errorf("%w: algorithm %q not accepted", ErrInvalidToken, truncate(p.Header.Alg))
	}
	if len(p.Header.Crit) > 0 {
		return nil, fmt.Errorf("%w: critical header extensions not supported", ErrInvalidToken)
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: claims encoding", ErrInvalidToken)
	}
	if err := strictJSON(cb, &p.Claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if p.Signature, err = base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return nil, fmt.Errorf("%w: signature encoding", ErrInvalidToken)
	}
	p.SigningInput = parts[0] + "." + parts[1]
	return &p, nil
}

// strictJSON decodes one JSON object with numbers kept exact and nothing after it.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return errors.New("malformed JSON")
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// truncate keeps attacker-chosen strings short in error messages.
func truncate(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
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

// verify checks the token fully and returns its identity and expiry.
func (v *JWTVerifier) verify(ctx context.Context, raw string) (Identity, time.Time, error) {
	p, err := ParseJWT(raw)
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	key, err := v.cfg.Keys.Key(ctx, p.Header.Kid, p.Header.Alg)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if err := verifySignature(p.Header.Alg, key, p.SigningInput, p.Signature); err != nil {
		return Identity{}, time.Time{}, err
	}
	c := p.Claims
	if c.Issuer != v.cfg.Issuer {
		return Identity{}, time.Time{}, fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	}
	auds, err := stringOrArray(c.Audience)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: aud: %v", ErrInvalidToken, err)
	}
	if !contains(auds, v.cfg.Audience) {
		return Identity{}, time.Time{}, fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	}
	now := v.cfg.Now()
	if c.ExpiresAt == nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: no exp", ErrInvalidToken)
	}
	exp, err := numericDate(*c.ExpiresAt)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: exp: %v", ErrInvalidToken, err)
	}
	if !now.Before(exp.Add(v.cfg.Leeway)) {
		return Identity{}, time.Time{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	if c.NotBefore != nil {
		nbf, err := numericDate(*c.NotBefore)
		if err != nil {
			return Identity{}, time.Time{}, fmt.Errorf("%w: nbf: %v", ErrInvalidToken, err)
		}
		if now.Add(v.cfg.Leeway).Before(nbf) {
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
	return Identity{Name: c.Subject, Scopes: known}, exp, nil
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

// verifySignature checks sig over input. The key type must match the algorithm, so a token
// cannot pick an algorithm the key was not made for.
func verifySignature(alg string, key crypto.PublicKey, input string, sig []byte) error {
	digest := sha256.Sum256([]byte(input))
	switch alg {
	case "RS256":
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: key is not RSA", ErrInvalidToken)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig); err != nil {
			return fmt.Errorf("%w: bad signature", ErrInvalidToken)
		}
		return nil
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok || k.Curve.Params().Name != "P-256" {
			return fmt.Errorf("%w: key is not EC P-256", ErrInvalidToken)
		}
		// JWS ES256 signatures are r||s, 32 bytes each, not ASN.1.
		if len(sig) != 64 {
			return fmt.Errorf("%w: bad signature", ErrInvalidToken)
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(k, digest[:], r, s) {
			return fmt.Errorf("%w: bad signature", ErrInvalidToken)
		}
		return nil
	}
	return fmt.Errorf("%w: algorithm not accepted", ErrInvalidToken)
}
