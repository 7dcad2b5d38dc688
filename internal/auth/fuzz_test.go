package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
)

// FuzzVerifyJWT feeds arbitrary tokens to the verifier. Properties: it never panics, every
// refusal is ErrInvalidToken, and whatever it accepts carries exactly the signed claims: the
// only accepted inputs are the seed's signing input with a signature the key made, so the
// identity must be the seed's.
func FuzzVerifyJWT(f *testing.F) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rs := mustIssuer(f, "RS256", "rs")
	es := mustIssuer(f, "ES256", "es")
	v, err := auth.NewJWTVerifier(auth.JWTConfig{Issuer: testIssuer, Audience: testAudience, Keys: mustKeySet(f, rs, es), Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	claims := map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "fuzz", "exp": now.Add(time.Hour).Unix(), "scope": "tasks:read"}
	f.Add(rs.Sign(claims))
	f.Add(es.Sign(claims))
	f.Add(rs.SignHeader(map[string]any{"alg": "none"}, claims))
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("refusal is not ErrInvalidToken: %v", err)
			}
			return
		}
		if id.Name != "fuzz" || len(id.Scopes) != 1 || id.Scopes[0] != "tasks:read" {
			t.Fatalf("accepted a token with identity %+v", id)
		}
	})
}

// FuzzParseJWKS: the key-set parser never panics, and every key it keeps can be looked up
// without panicking.
func FuzzParseJWKS(f *testing.F) {
	rs := mustIssuer(f, "RS256", "rs")
	es := mustIssuer(f, "ES256", "es")
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add(append([]byte(nil), []byte(`{"keys":[`+string(mustJSON(rs.JWK()))+`,`+string(mustJSON(es.JWK()))+`]}`)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := auth.ParseJWKS(data)
		if err != nil {
			return
		}
		for _, alg := range []string{"RS256", "ES256"} {
			for _, kid := range []string{"", "rs", "es"} {
				ks.Key(context.Background(), kid, alg)
			}
		}
	})
}
