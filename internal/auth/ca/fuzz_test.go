package ca_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
)

// FuzzAgentCertificate feeds arbitrary DER to the agent certificate path (x509 parsing, chain
// verification against the Flasher CA, deny list, URI SAN extraction). Property: nothing
// panics, and a certificate is accepted only with the server id the CA signed: mutations can
// never change which server an accepted certificate names.
func FuzzAgentCertificate(f *testing.F) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := initCA(f, func() time.Time { return now })
	is, err := c.IssueAgent("srv-fuzz", 0)
	if err != nil {
		f.Fatal(err)
	}
	leaf := parse(f, is.CertPEM)
	roots := x509.NewCertPool()
	roots.AddCert(c.Cert)
	v, err := auth.NewAgentVerifier(auth.AgentVerifierConfig{Roots: roots, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf.Raw)
	f.Add(c.Cert.Raw)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		auth.ServerIDFromCert(cert) // must not panic on any parsed certificate
		id, err := v.VerifyChain([]*x509.Certificate{cert})
		if err == nil && id != "srv-fuzz" {
			t.Fatalf("accepted a certificate naming %q", id)
		}
	})
}

// FuzzDenyList: the deny-list parser never panics and every serial it accepts round-trips.
func FuzzDenyList(f *testing.F) {
	f.Add([]byte("0a:ff # note\n\nabc\n"))
	f.Add([]byte("zz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ca.ParseDenyList(data)
		if err != nil {
			return
		}
		for s := range m {
			n, err := ca.ParseSerial(s)
			if err != nil || auth.SerialString(n) != s {
				t.Fatalf("serial %q does not round-trip", s)
			}
		}
	})
}
