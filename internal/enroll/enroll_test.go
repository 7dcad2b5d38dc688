package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
)

type fixture struct {
	st    *sqlite.Store
	svc   *Service
	ca    *ca.CA
	clock time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{clock: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)}
	authority, err := ca.Init(filepath.Join(dir, "ca"), "", 0, func() time.Time { return f.clock })
	if err != nil {
		t.Fatal(err)
	}
	f.ca = authority
	if f.st, err = sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "flasher.db")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	if f.svc, err = New(Config{Store: f.st, CA: authority, Validity: 6 * time.Hour, Now: func() time.Time { return f.clock }, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) token(t *testing.T, spec TokenSpec) string {
	t.Helper()
	tok, rec, err := NewToken(spec, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateJoinTokens(context.Background(), []store.JoinToken{rec}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func csr(t *testing.T) []byte {
	t.Helper()
	_, c, err := ca.NewAgentKey("x")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) enroll(tok, serverID string, t *testing.T) (*Certificate, error) {
	return f.svc.Enroll(context.Background(), tok, serverID, csr(t))
}

func wantRefused(t *testing.T, err error, why string) {
	t.Helper()
	if !errors.Is(err, ErrTokenRefused) || !strings.Contains(err.Error(), why) {
		t.Fatalf("got %v, want a refusal saying %q", err, why)
	}
}

func TestEnrollIssuesCertificateForTheServer(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, TokenSpec{ServerID: "srv-1"})
	c, err := f.enroll(tok, "srv-1", t)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ParseCertPEM(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Cert)
	v, _ := auth.NewAgentVerifier(auth.AgentVerifierConfig{Roots: roots, Now: func() time.Time { return f.clock }})
	if id, err := v.VerifyChain([]*x509.Certificate{cert}); err != nil || id != "srv-1" {
		t.Fatalf("issued certificate proves %q, %v; want srv-1", id, err)
	}
	if got := cert.NotAfter.Sub(f.clock); got != 6*time.Hour {
		t.Fatalf("certificate valid for %s after issue, want the configured 6h", got)
	}
	toks, _ := f.st.JoinTokens(context.Background())
	if len(toks) != 1 || len(toks[0].Uses) != 1 || toks[0].Uses[0].ServerID != "srv-1" {
		t.Fatalf("token uses = %+v, want one by srv-1", toks)
	}
	if strings.Contains(string(toks[0].SHA256), tok) || len(toks[0].SHA256) != 32 {
		t.Fatal("the token is not stored as its SHA-256")
	}
}

func TestEnrollRefusals(t *testing.T) {
	f := newFixture(t)
	bound := f.token(t, TokenSpec{ServerID: "srv-1"})
	if _, err := f.enroll(bound, "srv-1", t); err != nil {
		t.Fatal(err)
	}
	t.Run("replayed", func(t *testing.T) {
		_, err := f.enroll(bound, "srv-1", t)
		wantRefused(t, err, "already used by server srv-1")
	})
	t.Run("another server's", func(t *testing.T) {
		tok := f.token(t, TokenSpec{ServerID: "srv-2"})
		_, err := f.enroll(tok, "srv-1", t)
		wantRefused(t, err, "for another server")
		if _, err := f.enroll(tok, "srv-2", t); err != nil {
			t.Fatalf("the refusal used the token up: %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		tok := f.token(t, TokenSpec{ServerID: "srv-3", TTL: time.Minute})
		f.clock = f.clock.Add(time.Minute)
		_, err := f.enroll(tok, "srv-3", t)
		wantRefused(t, err, "expired")
	})
	t.Run("batch used up and replayed", func(t *testing.T) {
		tok := f.token(t, TokenSpec{Count: 2})
		for _, id := range []string{"b-1", "b-2"} {
			if _, err := f.enroll(tok, id, t); err != nil {
				t.Fatal(err)
			}
		}
		_, err := f.enroll(tok, "b-1", t)
		wantRefused(t, err, "already used")
		_, err = f.enroll(tok, "b-3", t)
		wantRefused(t, err, "used up")
	})
	t.Run("revoked token", func(t *testing.T) {
		tok := f.token(t, TokenSpec{Count: 5})
		if err := f.st.RevokeJoinToken(context.Background(), TokenID(tok), f.clock); err != nil {
			t.Fatal(err)
		}
		_, err := f.enroll(tok, "r-1", t)
		wantRefused(t, err, "revoked")
	})
	t.Run("wrong secret", func(t *testing.T) {
		tok := f.token(t, TokenSpec{Count: 5})
		forged := tok[:len(tok)-4] + "AAAA"
		if forged == tok {
			forged = tok[:len(tok)-4] + "BBBB"
		}
		_, err := f.enroll(forged, "w-1", t)
		wantRefused(t, err, "unknown token")
		_, err = f.enroll("fjt_0123456789abcdef."+strings.Repeat("A", 43), "w-1", t)
		wantRefused(t, err, "unknown token")
		_, err = f.enroll("flt_notajointoken", "w-1", t)
		wantRefused(t, err, "not a join token")
		if _, err := f.enroll(tok, "w-1", t); err != nil {
			t.Fatalf("failed attempts spent the token: %v", err)
		}
	})
	t.Run("bad csr", func(t *testing.T) {
		tok := f.token(t, TokenSpec{ServerID: "c-1"})
		_, err := f.svc.Enroll(context.Background(), tok, "c-1", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
		if !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("bad CSR: %v, want ErrInvalidRequest", err)
		}
		if _, err := f.enroll(tok, "c-1", t); err != nil {
			t.Fatalf("a bad CSR spent the token: %v", err)
		}
	})
	for _, err := range []error{
		func() error { _, _, err := NewToken(TokenSpec{}, f.clock); return err }(),
		func() error {
			_, _, err := NewToken(TokenSpec{Count: 2, TTL: 30 * 24 * time.Hour}, f.clock)
			return err
		}(),
		func() error { _, _, err := NewToken(TokenSpec{ServerID: "bad id"}, f.clock); return err }(),
	} {
		if err == nil {
			t.Error("NewToken accepted a token without count, with a month's TTL or a bad server id")
		}
	}
}

func TestRevokedAgent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old := f.token(t, TokenSpec{Count: 10, TTL: 3 * time.Hour})
	c, err := f.svc.Enroll(ctx, f.token(t, TokenSpec{ServerID: "srv-1"}), "srv-1", csr(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.ParseCertPEM(c.CertPEM)
	f.clock = f.clock.Add(time.Hour)
	renewed, err := f.svc.Renew(ctx, "srv-1", leaf, csr(t))
	if err != nil {
		t.Fatalf("renewal before revocation: %v", err)
	}
	if renewed.Serial == c.Serial || renewed.TokenID != "" {
		t.Fatalf("renewal returned serial %s (first %s), token %q", renewed.Serial, c.Serial, renewed.TokenID)
	}

	f.clock = f.clock.Add(time.Minute)
	deny := filepath.Join(t.TempDir(), "revoked.txt")
	serials, err := RevokeAgent(ctx, f.st, deny, "srv-1", "stolen", f.clock)
	if err != nil {
		t.Fatal(err)
	}
	if len(serials) != 2 {
		t.Fatalf("revoked %v, want both unexpired certificates", serials)
	}
	list, err := ca.OpenDenyList(deny)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range serials {
		n, _ := ca.ParseSerial(s)
		if !list.Revoked(n) {
			t.Fatalf("serial %s is not on the deny list", s)
		}
	}
	leaf2, _ := ca.ParseCertPEM(renewed.CertPEM)
	if _, err := f.svc.Renew(ctx, "srv-1", leaf2, csr(t)); !errors.Is(err, ErrAgentRevoked) {
		t.Fatalf("renewal after revocation: %v, want ErrAgentRevoked", err)
	}
	_, err = f.svc.Enroll(ctx, old, "srv-1", csr(t))
	wantRefused(t, err, "was revoked")
	if _, err := f.svc.Enroll(ctx, old, "srv-2", csr(t)); err != nil {
		t.Fatalf("the batch token no longer works for other servers: %v", err)
	}
	f.clock = f.clock.Add(time.Second)
	if _, err := f.svc.Enroll(ctx, f.token(t, TokenSpec{ServerID: "srv-1"}), "srv-1", csr(t)); err != nil {
		t.Fatalf("a token made after the revocation: %v", err)
	}
}
