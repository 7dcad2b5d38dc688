package auth_test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/authtest"
)

const (
	testIssuer   = "https://idp.example.test"
	testAudience = "flasher"
)

func mustIssuer(t testing.TB, alg, kid string) *authtest.Issuer {
	t.Helper()
	i, err := authtest.NewIssuer(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func mustKeySet(t testing.TB, issuers ...*authtest.Issuer) *auth.KeySet {
	t.Helper()
	ks, err := auth.ParseJWKS(authtest.JWKS(issuers...))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestJWTVerify(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rs := mustIssuer(t, "RS256", "rs1")
	es := mustIssuer(t, "ES256", "es1")
	forger := mustIssuer(t, "RS256", "rs1") // same kid, another key
	v, err := auth.NewJWTVerifier(auth.JWTConfig{
		Issuer: testIssuer, Audience: testAudience, Keys: mustKeySet(t, rs, es),
		Leeway: 30 * time.Second, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": testIssuer, "aud": testAudience, "sub": "alice@example.test",
			"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix(),
			"scope": "tasks:read tasks:write",
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	tests := []struct {
		name       string
		token      string
		wantErr    string
		wantName   string
		wantScopes []string
	}{
		{name: "RS256 valid", token: rs.Sign(claims(nil)), wantName: "alice@example.test", wantScopes: []string{"tasks:read", "tasks:write"}},
		{name: "ES256 valid", token: es.Sign(claims(nil)), wantName: "alice@example.test", wantScopes: []string{"tasks:read", "tasks:write"}},
		{name: "aud array", token: rs.Sign(claims(func(c map[string]any) { c["aud"] = []string{"other", testAudience} })), wantName: "alice@example.test", wantScopes: []string{"tasks:read", "tasks:write"}},
		{name: "scp array", token: rs.Sign(claims(func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{"inventory:read", "admin"} })), wantName: "alice@example.test", wantScopes: []string{"inventory:read", "admin"}},
		{name: "unknown and agent scopes dropped", token: rs.Sign(claims(func(c map[string]any) { c["scope"] = "agent tasks:read root" })), wantName: "alice@example.test", wantScopes: []string{"tasks:read"}},
		{name: "expired within leeway", token: rs.Sign(claims(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() })), wantName: "alice@example.test", wantScopes: []string{"tasks:read", "tasks:write"}},
		{name: "expired", token: rs.Sign(claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), wantErr: "expired"},
		{name: "no exp", token: rs.Sign(claims(func(c map[string]any) { delete(c, "exp") })), wantErr: "no exp"},
		{name: "not yet valid", token: rs.Sign(claims(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), wantErr: "not yet valid"},
		{name: "wrong audience", token: rs.Sign(claims(func(c map[string]any) { c["aud"] = "someone-else" })), wantErr: "wrong audience"},
		{name: "wrong issuer", token: rs.Sign(claims(func(c map[string]any) { c["iss"] = "https://evil.test" })), wantErr: "wrong issuer"},
		{name: "forged signature", token: forger.Sign(claims(nil)), wantErr: "bad signature"},
		{name: "claims swapped after signing", token: swapClaims(rs.Sign(claims(nil)), rs.Sign(claims(func(c map[string]any) { c["scope"] = "admin" }))), wantErr: "bad signature"},
		{name: "alg none", token: rs.SignHeader(map[string]any{"alg": "none", "kid": "rs1"}, claims(nil)), wantErr: "not accepted"},
		{name: "HS256", token: rs.SignHeader(map[string]any{"alg": "HS256", "kid": "rs1"}, claims(nil)), wantErr: "not accepted"},
		{name: "alg/key confusion ES256 header on RSA kid", token: es.SignHeader(map[string]any{"alg": "ES256", "kid": "rs1"}, claims(nil)), wantErr: "no ES256 key"},
		{name: "unknown kid", token: rs.SignHeader(map[string]any{"alg": "RS256", "kid": "nope"}, claims(nil)), wantErr: "no RS256 key"},
		{name: "crit header", token: rs.SignHeader(map[string]any{"alg": "RS256", "kid": "rs1", "crit": []string{"x"}}, claims(nil)), wantErr: "critical"},
		{name: "no sub", token: rs.Sign(claims(func(c map[string]any) { delete(c, "sub") })), wantErr: "sub"},
		{name: "garbage", token: "a.b.c", wantErr: "header"},
		{name: "two parts", token: "a.b", wantErr: "compact"},
		{name: "oversized", token: strings.Repeat("a", auth.MaxJWTBytes+1), wantErr: "longer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tc.token)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, auth.ErrInvalidToken) {
					t.Fatalf("err = %v, want ErrInvalidToken containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), tc.token) {
					t.Fatal("error echoes the token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != tc.wantName || !slices.Equal(id.Scopes, tc.wantScopes) {
				t.Fatalf("identity = %+v, want %s %v", id, tc.wantName, tc.wantScopes)
			}
		})
	}
}

// swapClaims puts b's claims under a's header and signature.
func swapClaims(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func TestJWKSParse(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantLen int
		wantErr bool
	}{
		{name: "skips oct and OKP and enc keys", doc: `{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"OKP","crv":"Ed25519","x":"AA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}`, wantLen: 0},
		{name: "short RSA modulus", doc: `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, wantErr: true},
		{name: "EC point off curve", doc: `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`, wantErr: true},
		{name: "not JSON", doc: `{`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := auth.ParseJWKS([]byte(tc.doc))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && ks.Len() != tc.wantLen {
				t.Fatalf("len = %d, want %d", ks.Len(), tc.wantLen)
			}
		})
	}
}

// TestJWKSURLRefresh: keys are cached for TTL, an unknown kid (rotation) refetches at most
// once per MinRefresh, and a failing provider keeps the last good set.
func TestJWKSURLRefresh(t *testing.T) {
	old := mustIssuer(t, "ES256", "k1")
	rotated := mustIssuer(t, "ES256", "k2")
	var fetches atomic.Int32
	var doc atomic.Value
	doc.Store(authtest.JWKS(old))
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(doc.Load().([]byte))
	}))
	defer srv.Close()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	src, err := auth.NewJWKS(auth.JWKSConfig{URL: srv.URL, TTL: 10 * time.Minute, MinRefresh: 30 * time.Second, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := src.Key(ctx, "k1", "ES256"); err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d after 3 lookups, want 1 (cached)", n)
	}
	doc.Store(authtest.JWKS(old, rotated))
	if _, err := src.Key(ctx, "k2", "ES256"); err == nil {
		t.Fatal("k2 found before MinRefresh passed since the first fetch")
	}
	now = now.Add(31 * time.Second)
	if _, err := src.Key(ctx, "k2", "ES256"); err != nil {
		t.Fatalf("rotated key after MinRefresh: %v", err)
	}
	if _, err := src.Key(ctx, "made-up", "ES256"); err == nil {
		t.Fatal("made-up kid accepted")
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (unknown kids within MinRefresh must not refetch)", n)
	}
	down.Store(true)
	now = now.Add(11 * time.Minute)
	if _, err := src.Key(ctx, "k1", "ES256"); err != nil {
		t.Fatalf("provider down after TTL: want the stale set kept, got %v", err)
	}
	if n := fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}
}

func TestJWKSFileReload(t *testing.T) {
	a := mustIssuer(t, "RS256", "a")
	b := mustIssuer(t, "RS256", "b")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, authtest.JWKS(a), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := auth.NewJWKS(auth.JWKSConfig{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Key(context.Background(), "b", "RS256"); err == nil {
		t.Fatal("key b found before the file held it")
	}
	if err := os.WriteFile(path, authtest.JWKS(b), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Key(context.Background(), "b", "RS256"); err != nil {
		t.Fatalf("key b after the file changed: %v", err)
	}
	if _, err := src.Key(context.Background(), "a", "RS256"); err == nil {
		t.Fatal("removed key a still accepted")
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestJWTCache: a verified token is remembered for CacheTTL but never past its exp.
func TestJWTCache(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rs := mustIssuer(t, "RS256", "k")
	keys := &countingKeys{ks: mustKeySet(t, rs)}
	v, err := auth.NewJWTVerifier(auth.JWTConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys,
		Leeway: time.Second, CacheTTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := rs.Sign(map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "s", "exp": now.Add(90 * time.Second).Unix()})
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if keys.n != 1 {
		t.Fatalf("key lookups = %d for 3 verifications, want 1 (cached)", keys.n)
	}
	now = now.Add(61 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil || keys.n != 2 {
		t.Fatalf("after CacheTTL: err %v, lookups %d, want a fresh check", err, keys.n)
	}
	now = now.Add(31 * time.Second) // past exp+leeway, within the second entry's CacheTTL
	if _, err := v.Verify(context.Background(), tok); err == nil {
		t.Fatal("cached token accepted after its exp")
	}
}

type countingKeys struct {
	ks *auth.KeySet
	n  int
}

func (c *countingKeys) Key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	c.n++
	return c.ks.Key(ctx, kid, alg)
}
