// Package enroll tests agent enrollment end to end: a control plane built by internal/server
// with TLS, the token file and -enroll-ca-dir, and agents (internal/agent's Enroller) that
// enroll with join tokens over AgentService.Enroll, renew over their own mTLS connection, and
// are refused when the token is replayed, bound to another server, expired, or when the agent
// was revoked. Nothing secret may reach a log line.
package enroll

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/enroll"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/testenv"
)

type fixture struct {
	dir, caDir, caFile, denyPath string
	env                          *testenv.Env
	serverLog, agentLog          *testenv.SyncBuffer
	// secrets must appear in no log line.
	secrets []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), serverLog: &testenv.SyncBuffer{}, agentLog: &testenv.SyncBuffer{}}
	f.caDir = filepath.Join(f.dir, "ca")
	authority, err := ca.Init(f.caDir, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.caFile, f.denyPath = filepath.Join(f.caDir, ca.CertFile), filepath.Join(f.caDir, ca.DenyListFile)
	srvCert, err := authority.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(f.dir, "server.crt"), filepath.Join(f.dir, "server.key")
	if err := srvCert.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	tok, entry, err := auth.GenerateToken("ops", []string{"admin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	y, _ := auth.MarshalEntry(entry)
	tokenPath := filepath.Join(f.dir, "tokens.yaml")
	if err := os.WriteFile(tokenPath, append([]byte("tokens:\n"), y...), 0o600); err != nil {
		t.Fatal(err)
	}
	f.secrets = append(f.secrets, tok)
	clientTLS, err := ca.ClientTLSConfig(f.caFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	f.env = testenv.Start(t, testenv.Config{
		// The server's own logger is a plain JSON handler: it must redact by itself.
		Logger: slog.New(slog.NewJSONHandler(f.serverLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Configure: func(c *server.Config) {
			c.Insecure = false
			c.TLSCert, c.TLSKey, c.TokenFile = certFile, keyFile, tokenPath
			c.EnrollCADir = f.caDir // sets -ca-file to its ca.crt
			c.EnrollCertValidity = time.Hour
		},
		Options:     []server.Option{server.WithAgentRecheck(20 * time.Millisecond)},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(clientTLS))},
	})
	return f
}

func (f *fixture) enrollments(t *testing.T) store.Enrollments {
	e, ok := f.env.Store.(store.Enrollments)
	if !ok {
		t.Fatalf("%T keeps no join tokens", f.env.Store)
	}
	return e
}

// token makes a join token as `flasher-server ca join-token` does, created at `at`.
func (f *fixture) token(t *testing.T, spec enroll.TokenSpec, at time.Time) string {
	t.Helper()
	tok, rec, err := enroll.NewToken(spec, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.enrollments(t).CreateJoinTokens(context.Background(), []store.JoinToken{rec}); err != nil {
		t.Fatal(err)
	}
	f.secrets = append(f.secrets, tok)
	return tok
}

// hostAgent is one host's agent files and enroller.
type hostAgent struct {
	serverID, certFile, keyFile, tokenFile string
	enroller                               *agent.Enroller
}

func (f *fixture) agent(t *testing.T, serverID, token string) *hostAgent {
	t.Helper()
	dir := filepath.Join(f.dir, "agent-"+serverID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &hostAgent{serverID: serverID, certFile: filepath.Join(dir, "agent.crt"), keyFile: filepath.Join(dir, "agent.key"),
		tokenFile: filepath.Join(dir, "join-token")}
	h.setToken(t, token)
	var err error
	h.enroller, err = agent.NewEnroller(agent.EnrollConfig{
		Server: f.env.Addr, CAFile: f.caFile, CertFile: h.certFile, KeyFile: h.keyFile,
		ServerID: serverID, JoinTokenFile: h.tokenFile,
		Logger: slog.New(slog.NewJSONHandler(f.agentLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *hostAgent) setToken(t *testing.T, token string) {
	if err := os.WriteFile(h.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h *hostAgent) serial(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(h.certFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.ParseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	id, err := auth.ServerIDFromCert(c)
	if err != nil || id != h.serverID {
		t.Fatalf("agent certificate names %q (%v), want %s", id, err, h.serverID)
	}
	return auth.SerialString(c.SerialNumber)
}

// conn dials with the agent's certificate files, as flasher-agent does.
func (f *fixture) conn(t *testing.T, h *hostAgent) *agent.SwapConn {
	t.Helper()
	tlsCfg, err := ca.AgentTLSConfig(ca.AgentTLS{CertFile: h.certFile, KeyFile: h.keyFile, CAFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewSwapConn(func() (*grpc.ClientConn, error) {
		return grpc.NewClient(f.env.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectCode opens the agent stream and returns the code it ends with. This server has no
// in-band executor, so a caller the interceptors accept gets Unimplemented from the handler.
func connectCode(t *testing.T, conn grpc.ClientConnInterface) codes.Code {
	t.Helper()
	stream, err := flasherv1.NewAgentServiceClient(conn).Connect(context.Background())
	if err == nil {
		_, err = stream.Recv()
	}
	return status.Code(err)
}

func wantCode(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want %s saying %q", err, code, text)
	}
}

func TestEnrollment(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()

	// A batch token for the DaemonSet, and one bound to srv-9.
	batch := f.token(t, enroll.TokenSpec{Count: 3, TTL: time.Hour, Note: "daemonset"}, now)
	bound := f.token(t, enroll.TokenSpec{ServerID: "srv-9"}, now)

	a := f.agent(t, "srv-1", batch)
	if err := a.enroller.Ensure(ctx); err != nil {
		t.Fatalf("first enrollment: %v", err)
	}
	first := a.serial(t)
	if err := a.enroller.Ensure(ctx); err != nil || a.serial(t) != first {
		t.Fatalf("Ensure with a valid certificate enrolled again (%v): the token would be spent", err)
	}
	conn := f.conn(t, a)
	if got := connectCode(t, conn); got != codes.Unimplemented {
		t.Fatalf("the enrolled certificate's stream ended %s, want it past authentication (Unimplemented)", got)
	}

	t.Run("replayed token", func(t *testing.T) {
		err := a.enroller.Enroll(ctx)
		wantCode(t, err, codes.Unauthenticated, "already used by server srv-1")
	})
	t.Run("token for another server", func(t *testing.T) {
		b := f.agent(t, "srv-2", bound)
		wantCode(t, b.enroller.Enroll(ctx), codes.Unauthenticated, "for another server")
	})
	t.Run("expired token", func(t *testing.T) {
		old := f.token(t, enroll.TokenSpec{ServerID: "srv-3", TTL: time.Minute}, now.Add(-2*time.Minute))
		c := f.agent(t, "srv-3", old)
		wantCode(t, c.enroller.Enroll(ctx), codes.Unauthenticated, "expired")
	})
	t.Run("no token, no certificate", func(t *testing.T) {
		clientTLS, _ := ca.ClientTLSConfig(f.caFile, "")
		cc, err := grpc.NewClient(f.env.Addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, csr, _ := ca.NewAgentKey("srv-4")
		_, err = flasherv1.NewAgentServiceClient(cc).Enroll(ctx, &flasherv1.EnrollRequest{ServerId: "srv-4", CsrPem: csr})
		wantCode(t, err, codes.Unauthenticated, "join token")
		// Enroll is the only agent call open without a certificate.
		if got := connectCode(t, cc); got != codes.Unauthenticated {
			t.Fatalf("Connect without a certificate: %s, want Unauthenticated", got)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		if err := a.enroller.Renew(ctx, conn); err != nil {
			t.Fatalf("renewal: %v", err)
		}
		renewed := a.serial(t)
		if renewed == first {
			t.Fatal("renewal kept the serial")
		}
		if err := conn.Redial(); err != nil {
			t.Fatal(err)
		}
		// Deny the first certificate: the redialled connection must present the new one.
		n, _ := ca.ParseSerial(first)
		if err := ca.Revoke(f.denyPath, n, "rotated", time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := connectCode(t, conn); got != codes.Unimplemented {
			t.Fatalf("stream after rotation: %s, want past authentication", got)
		}
		// A renewal for another server is refused even with a valid certificate.
		_, csr, _ := ca.NewAgentKey("srv-2")
		_, err := flasherv1.NewAgentServiceClient(conn).Enroll(ctx, &flasherv1.EnrollRequest{ServerId: "srv-2", CsrPem: csr})
		wantCode(t, err, codes.PermissionDenied, "cannot renew one for srv-2")
	})

	t.Run("revoked agent", func(t *testing.T) {
		serials, err := enroll.RevokeAgent(ctx, f.enrollments(t), f.denyPath, "srv-1", "host stolen", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(serials) != 2 {
			t.Fatalf("revoked %v, want the enrolled and the renewed certificate", serials)
		}
		if got := connectCode(t, conn); got != codes.Unauthenticated {
			t.Fatalf("revoked agent's stream: %s, want Unauthenticated", got)
		}
		wantCode(t, a.enroller.Renew(ctx, conn), codes.Unauthenticated, "revoked")
		// The batch token still has uses left, but it was made before the revocation.
		d := f.agent(t, "srv-1", batch)
		if err := d.enroller.Enroll(ctx); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("re-enrollment with an old token: %v, want Unauthenticated", err)
		}
		// Other servers keep enrolling with it; a token made after the revocation lets
		// srv-1 back in.
		if err := f.agent(t, "srv-5", batch).enroller.Enroll(ctx); err != nil {
			t.Fatalf("batch token for another server after a revocation: %v", err)
		}
		d.setToken(t, f.token(t, enroll.TokenSpec{ServerID: "srv-1"}, time.Now()))
		if err := d.enroller.Enroll(ctx); err != nil {
			t.Fatalf("enrollment with a token made after the revocation: %v", err)
		}
		if got := connectCode(t, f.conn(t, d)); got != codes.Unimplemented {
			t.Fatalf("re-enrolled agent's stream: %s, want past authentication", got)
		}
	})

	// The audit trail names enrollments by token id, never by token.
	events, err := f.env.Server.Audit().Query(ctx, audit.Filter{Action: auth.EnrollMethod})
	if err != nil {
		t.Fatal(err)
	}
	var enrolled, refused int
	for _, ev := range events {
		if ev.Code == "OK" {
			enrolled++
		} else {
			refused++
		}
	}
	if enrolled < 4 || refused < 3 {
		t.Fatalf("audit trail holds %d successful and %d refused enrollments, want at least 4 and 3: %+v", enrolled, refused, events)
	}

	// Nothing secret in any log line: tokens, the token file's contents, agent keys.
	for _, h := range []string{"srv-1", "srv-5"} {
		key, err := os.ReadFile(filepath.Join(f.dir, "agent-"+h, "agent.key"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(key), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") {
				f.secrets = append(f.secrets, line)
			}
		}
	}
	logs := f.serverLog.String() + f.agentLog.String()
	if !strings.Contains(f.serverLog.String(), "agent enrolled") || !strings.Contains(f.agentLog.String(), "certificate written") {
		t.Fatal("the logs hold no enrollment at all: the secret check below would prove nothing")
	}
	for _, s := range f.secrets {
		_, secret, _ := strings.Cut(s, ".")
		for _, needle := range []string{s, secret} {
			if needle != "" && strings.Contains(logs, needle) {
				t.Errorf("a secret (%d characters starting %.6s) appears in the logs", len(needle), needle)
			}
		}
	}
	if strings.Contains(logs, "fjt_") {
		t.Error("a join token prefix appears in the logs")
	}
}
