package ca_test

import (
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
)

func initCA(t testing.TB, now func() time.Time) *ca.CA {
	t.Helper()
	c, err := ca.Init(filepath.Join(t.TempDir(), "ca"), "", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parse(t testing.TB, pemBytes []byte) *x509.Certificate {
	t.Helper()
	c, err := ca.ParseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInitLoad(t *testing.T) {
	c := initCA(t, nil)
	fi, err := os.Stat(filepath.Join(c.Dir, ca.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %o, want 600", fi.Mode().Perm())
	}
	if !c.Cert.IsCA || !c.Cert.MaxPathLenZero {
		t.Fatal("CA certificate is not a path-length-0 CA")
	}
	if _, err := ca.Init(c.Dir, "", 0, nil); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("second init: %v, want refusal", err)
	}
	l, err := ca.Load(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	is, err := l.IssueAgent("srv-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := parse(t, is.CertPEM).CheckSignatureFrom(c.Cert); err != nil {
		t.Fatalf("loaded CA signs with another key: %v", err)
	}
	os.Chmod(filepath.Join(c.Dir, ca.KeyFile), 0o644)
	if _, err := ca.Load(c.Dir); err == nil {
		t.Fatal("loaded a world-readable CA key")
	}
}

func TestIssue(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := initCA(t, func() time.Time { return now })
	is, err := c.IssueAgent("srv-a", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert := parse(t, is.CertPEM)
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "flasher://server/srv-a" {
		t.Fatalf("URIs = %v", cert.URIs)
	}
	if got := cert.NotAfter.Sub(now); got != ca.DefaultAgentValidity {
		t.Fatalf("agent validity %s, want %s", got, ca.DefaultAgentValidity)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("EKU = %v", cert.ExtKeyUsage)
	}
	for _, bad := range []string{"", "a/b", "../x", "-x", strings.Repeat("a", 129), "srv a"} {
		if _, err := c.IssueAgent(bad, 0); err == nil {
			t.Errorf("issued an agent certificate for %q", bad)
		}
	}
	srv, err := c.IssueServer([]string{"flasher.example.test"}, []net.IP{net.ParseIP("127.0.0.1")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := parse(t, srv.CertPEM)
	if sc.VerifyHostname("127.0.0.1") != nil || sc.VerifyHostname("flasher.example.test") != nil {
		t.Fatal("server certificate does not name its host")
	}
}

// TestVerifyChain covers the agent certificate rules of auth.AgentVerifier with real
// certificates from real CAs.
func TestVerifyChain(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	flasher := initCA(t, clock)
	other := initCA(t, clock)
	issue := func(c *ca.CA, id string) *x509.Certificate {
		is, err := c.IssueAgent(id, 0)
		if err != nil {
			t.Fatal(err)
		}
		return parse(t, is.CertPEM)
	}
	good := issue(flasher, "srv-a")
	revoked := issue(flasher, "srv-b")
	foreign := issue(other, "srv-a")
	srvIs, _ := flasher.IssueServer([]string{"flasher"}, nil, 0)
	serverCert := parse(t, srvIs.CertPEM)

	denyPath := filepath.Join(flasher.Dir, ca.DenyListFile)
	if err := ca.Revoke(denyPath, revoked.SerialNumber, "lost disk", now); err != nil {
		t.Fatal(err)
	}
	deny, err := ca.OpenDenyList(denyPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(flasher.Cert)
	at := now
	v, err := auth.NewAgentVerifier(auth.AgentVerifierConfig{Roots: roots, Revoked: deny, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		at      time.Time
		wantID  string
		wantErr string
	}{
		{name: "valid", chain: []*x509.Certificate{good}, at: now, wantID: "srv-a"},
		{name: "none", at: now, wantErr: "no client certificate"},
		{name: "other CA", chain: []*x509.Certificate{foreign}, at: now, wantErr: "unknown authority"},
		{name: "other CA with the Flasher CA appended", chain: []*x509.Certificate{foreign, flasher.Cert}, at: now, wantErr: "unknown authority"},
		{name: "revoked", chain: []*x509.Certificate{revoked}, at: now, wantErr: "revoked"},
		{name: "expired", chain: []*x509.Certificate{good}, at: now.Add(25 * time.Hour), wantErr: "expired"},
		{name: "server certificate", chain: []*x509.Certificate{serverCert}, at: now, wantErr: "usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at = tc.at
			id, err := v.VerifyChain(tc.chain)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || id != tc.wantID {
				t.Fatalf("id %q err %v, want %q", id, err, tc.wantID)
			}
		})
	}

	t.Run("revocation file reloaded on change", func(t *testing.T) {
		at = now
		if _, err := v.VerifyChain([]*x509.Certificate{good}); err != nil {
			t.Fatal(err)
		}
		if err := ca.Revoke(denyPath, good.SerialNumber, "", now); err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyChain([]*x509.Certificate{good}); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("after revoke: %v", err)
		}
	})
}

func TestServerIDFromCert(t *testing.T) {
	u := func(s string) *url.URL {
		x, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	tests := []struct {
		name   string
		uris   []*url.URL
		wantID string
	}{
		{name: "one", uris: []*url.URL{u("flasher://server/srv-1")}, wantID: "srv-1"},
		{name: "none"},
		{name: "two servers", uris: []*url.URL{u("flasher://server/a"), u("flasher://server/b")}},
		{name: "extra spiffe", uris: []*url.URL{u("flasher://server/a"), u("spiffe://x/y")}},
		{name: "wrong scheme", uris: []*url.URL{u("spiffe://server/a")}},
		{name: "wrong host", uris: []*url.URL{u("flasher://agent/a")}},
		{name: "nested path", uris: []*url.URL{u("flasher://server/a/b")}},
		{name: "escaped slash", uris: []*url.URL{u("flasher://server/a%2Fb")}},
		{name: "query", uris: []*url.URL{u("flasher://server/a?x=1")}},
		{name: "port", uris: []*url.URL{u("flasher://server:1/a")}},
		{name: "user", uris: []*url.URL{u("flasher://u@server/a")}},
		{name: "empty id", uris: []*url.URL{u("flasher://server/")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth.ServerIDFromCert(&x509.Certificate{URIs: tc.uris})
			if tc.wantID == "" {
				if err == nil {
					t.Fatalf("accepted, id %q", id)
				}
				return
			}
			if err != nil || id != tc.wantID {
				t.Fatalf("id %q err %v", id, err)
			}
		})
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]string{"0a:ff": "aff", "0xABC": "abc", " 1f ": "1f"} {
		n, err := ca.ParseSerial(in)
		if err != nil || auth.SerialString(n) != want {
			t.Errorf("ParseSerial(%q) = %v, %v; want %s", in, n, err, want)
		}
	}
	for _, bad := range []string{"", "xyz", "0", "-1"} {
		if _, err := ca.ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
	if _, err := ca.ParseDenyList([]byte("ab # ok\n\n# c\nzz\n")); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("deny list error = %v, want line 4", err)
	}
}
