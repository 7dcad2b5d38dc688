// Package authtest is an OIDC token issuer for tests: it makes RS256 and ES256 signing keys,
// publishes them as a JWKS and signs JWTs with chosen claims, so verification is tested with
// real signatures instead of a stubbed verifier. It must not be used outside tests.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

// Issuer holds one signing key.
type Issuer struct {
	Alg string // "RS256" or "ES256"
	Kid string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

// NewIssuer makes a key for alg ("RS256" or "ES256") with key id kid.
func NewIssuer(alg, kid string) (*Issuer, error) {
	i := &Issuer{Alg: alg, Kid: kid}
	var err error
	switch alg {
	case "RS256":
		i.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		i.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		err = fmt.Errorf("authtest: algorithm %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return i, nil
}

// Public returns the public key.
func (i *Issuer) Public() crypto.PublicKey {
	if i.rsa != nil {
		return &i.rsa.PublicKey
	}
	return &i.ec.PublicKey
}

// JWK returns the public key as a JWK object.
func (i *Issuer) JWK() map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	if i.rsa != nil {
		return map[string]string{
			"kty": "RSA", "kid": i.Kid, "use": "sig", "alg": "RS256",
			"n": b64(i.rsa.N.Bytes()), "e": b64(big.NewInt(int64(i.rsa.E)).Bytes()),
		}
	}
	x, y := make([]byte, 32), make([]byte, 32)
	i.ec.X.FillBytes(x)
	i.ec.Y.FillBytes(y)
	return map[string]string{"kty": "EC", "kid": i.Kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(x), "y": b64(y)}
}

// JWKS renders the issuers' public keys as a JWKS document.
func JWKS(issuers ...*Issuer) []byte {
	keys := make([]map[string]string, len(issuers))
	for n, i := range issuers {
		keys[n] = i.JWK()
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// Sign returns a compact JWS of claims with the issuer's alg and kid.
func (i *Issuer) Sign(claims map[string]any) string {
	return i.SignHeader(map[string]any{"alg": i.Alg, "kid": i.Kid, "typ": "JWT"}, claims)
}

// SignHeader signs with an explicit header (to test refused algorithms and key ids); the
// signature is made with the issuer's key whatever the header says.
func (i *Issuer) SignHeader(header, claims map[string]any) string {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	d := sha256.Sum256([]byte(input))
	var sig []byte
	if i.rsa != nil {
		sig, _ = rsa.SignPKCS1v15(rand.Reader, i.rsa, crypto.SHA256, d[:])
	} else {
		r, s, _ := ecdsa.Sign(rand.Reader, i.ec, d[:])
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
