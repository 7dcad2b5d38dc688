package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxJWKSBytes bounds a JWKS document.
const MaxJWKSBytes = 1 << 20

// KeySet is a parsed JWKS: the RSA and P-256 signing keys by key id.
type KeySet struct {
	keys []jwk
}

type jwk struct {
	kid string
	alg string // "RS256" or "ES256", from the key type
	key crypto.PublicKey
}

// jwkHead is the part of a JWK read before go-jose parses it, to skip keys Flasher does not
// verify with.
type jwkHead struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
}

// ParseJWKS parses a JSON Web Key Set with go-jose. Keys of types Flasher does not verify with
// (oct, OKP, other curves) and encryption keys are skipped; a malformed RSA or P-256 key fails
// the whole set, so a broken provider configuration is noticed instead of half-used. go-jose
// checks that EC points are on the curve; RSA moduli must be 2048 to 8192 bits.
func ParseJWKS(data []byte) (*KeySet, error) {
	if len(data) > MaxJWKSBytes {
		return nil, fmt.Errorf("jwks: larger than %d bytes", MaxJWKSBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	ks := &KeySet{}
	for i, raw := range doc.Keys {
		var h jwkHead
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("jwks: key %d: %w", i, err)
		}
		alg := ""
		switch {
		case h.Kty == "RSA":
			alg = "RS256"
		case h.Kty == "EC" && h.Crv == "P-256":
			alg = "ES256"
		}
		if alg == "" || (h.Use != "" && h.Use != "sig") {
			continue
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("jwks: key %d (kid %q): %w", i, truncate(h.Kid), err)
		}
		if err := checkKey(k.Key); err != nil {
			return nil, fmt.Errorf("jwks: key %d (kid %q): %w", i, truncate(h.Kid), err)
		}
		if h.Alg != "" && h.Alg != alg {
			continue // the key is declared for another algorithm
		}
		ks.keys = append(ks.keys, jwk{kid: h.Kid, alg: alg, key: k.Key})
	}
	return ks, nil
}

// checkKey refuses what go-jose accepts but Flasher does not verify with.
func checkKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("RSA modulus of %d bits (want 2048–8192)", n)
		}
		if k.E < 3 || k.E%2 == 0 {
			return errors.New("bad RSA exponent")
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return errors.New("not a P-256 key")
		}
		return nil
	}
	return fmt.Errorf("unexpected public key type %T", key)
}

// Len is the number of usable keys.
func (ks *KeySet) Len() int { return len(ks.keys) }

// lookup finds the key for kid and alg. Without a kid the set must hold exactly one key for
// alg, so a token can never choose among keys.
func (ks *KeySet) lookup(kid, alg string) (crypto.PublicKey, bool) {
	var found []crypto.PublicKey
	for _, k := range ks.keys {
		if k.alg == alg && (kid == "" || k.kid == kid) {
			found = append(found, k.key)
		}
	}
	if len(found) != 1 {
		return nil, false
	}
	return found[0], true
}

// Key implements KeySource for a fixed set.
func (ks *KeySet) Key(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	if k, ok := ks.lookup(kid, alg); ok {
		return k, nil
	}
	return nil, fmt.Errorf("no %s key with kid %q", alg, truncate(kid))
}

// JWKSConfig says where the signing keys come from: a URL (the provider's jwks_uri) or a file.
type JWKSConfig struct {
	// URL of the JWKS; only this or File.
	URL    string
	Client *http.Client
	// File holding the JWKS, re-read when it changes.
	File string
	// TTL is how long a fetched set is used before it is fetched again (0: 10 minutes).
	TTL time.Duration
	// MinRefresh bounds how often an unknown kid can trigger a fetch (0: 30s), so tokens with
	// made-up key ids cannot make the server hammer the provider.
	MinRefresh time.Duration
	Now        func() time.Time
}

// JWKS is a KeySource that caches a key set from a URL or file and refreshes it: after TTL, or
// when a token names a key id the cached set lacks (key rotation), at most once per MinRefresh.
// A failed refresh keeps serving the last good set.
type JWKS struct {
	cfg JWKSConfig

	mu        sync.Mutex
	set       *KeySet
	fetched   time.Time // when set was loaded
	attempted time.Time // last fetch attempt
	modTime   time.Time // file sources
}

// NewJWKS returns a JWKS source; it fetches on first use (or now, for files, to fail fast).
func NewJWKS(cfg JWKSConfig) (*JWKS, error) {
	if (cfg.URL == "") == (cfg.File == "") {
		return nil, errors.New("jwks: set exactly one of URL and File")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Minute
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	j := &JWKS{cfg: cfg}
	if cfg.File != "" {
		j.mu.Lock()
		err := j.refreshLocked(context.Background())
		j.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return j, nil
}

// Key implements KeySource. The lock is held across a fetch on purpose: concurrent
// verifications wait for one fetch instead of each starting their own.
func (j *JWKS) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.cfg.Now()
	var stale bool
	if j.cfg.File != "" {
		stale = j.fileChanged()
	} else {
		stale = j.set == nil || now.Sub(j.fetched) >= j.cfg.TTL
	}
	if !stale {
		if k, ok := j.set.lookup(kid, alg); ok {
			return k, nil
		}
	}
	var ferr error
	if (j.cfg.File != "" && stale) || j.attempted.IsZero() || now.Sub(j.attempted) >= j.cfg.MinRefresh {
		ferr = j.refreshLocked(ctx)
	}
	if j.set == nil {
		if ferr == nil {
			ferr = errors.New("jwks: no key set fetched yet")
		}
		return nil, ferr
	}
	if k, ok := j.set.lookup(kid, alg); ok {
		return k, nil
	}
	if ferr != nil {
		return nil, fmt.Errorf("no %s key with kid %q (refresh failed: %w)", alg, truncate(kid), ferr)
	}
	return nil, fmt.Errorf("no %s key with kid %q", alg, truncate(kid))
}

func (j *JWKS) fileChanged() bool {
	fi, err := os.Stat(j.cfg.File)
	return err == nil && !fi.ModTime().Equal(j.modTime)
}

func (j *JWKS) refreshLocked(ctx context.Context) error {
	j.attempted = j.cfg.Now()
	var data []byte
	var err error
	if j.cfg.File != "" {
		var fi os.FileInfo
		if fi, err = os.Stat(j.cfg.File); err == nil {
			j.modTime = fi.ModTime()
			data, err = os.ReadFile(j.cfg.File)
		}
		if err != nil {
			return fmt.Errorf("jwks file %s: %w", j.cfg.File, err)
		}
	} else if data, err = j.fetch(ctx); err != nil {
		return err
	}
	set, err := ParseJWKS(data)
	if err != nil {
		return fmt.Errorf("jwks from %s%s: %w", j.cfg.URL, j.cfg.File, err)
	}
	j.set, j.fetched = set, j.cfg.Now()
	return nil
}

func (j *JWKS) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", j.cfg.URL, err)
	}
	resp, err := j.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", j.cfg.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: HTTP %d", j.cfg.URL, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", j.cfg.URL, err)
	}
	return data, nil
}
