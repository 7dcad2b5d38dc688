// Package security is Flasher's end-to-end security suite: a real control plane (SQLite store,
// scheduler, gRPC with its full interceptor chain) on a loopback TLS listener, with the static
// token file, an OIDC issuer whose JWKS is served over HTTP, the Flasher CA's agent
// certificates and the audit log wired as the server wires them. Every refused call must leave
// the store exactly as it was.
package security

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/authtest"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/testenv"
)

const (
	issuerURL = "https://idp.flasher.test"
	audience  = "flasher-api"
)

// agentService stands in for the in-band AgentService, holding only what this suite checks:
// that the identity handlers see is the one the certificate proves. Images belong to servers
// by checksum; an agent may fetch only its own server's.
type agentService struct {
	flasherv1.UnimplementedAgentServiceServer
	images  map[string]string // checksum → server id
	reached atomic.Int32      // calls that got past the interceptors
}

func (s *agentService) FetchArtifact(req *flasherv1.FetchArtifactRequest, stream grpc.ServerStreamingServer[flasherv1.FetchArtifactResponse]) error {
	s.reached.Add(1)
	id := auth.FromContext(stream.Context())
	if id.ServerID == "" || s.images[req.GetChecksum()] != id.ServerID {
		return status.Errorf(codes.PermissionDenied, "image %s is not assigned to server %q", req.GetChecksum(), id.ServerID)
	}
	return stream.Send(&flasherv1.FetchArtifactResponse{Data: []byte(id.ServerID), Size: int64(len(id.ServerID))})
}

func (s *agentService) Connect(stream grpc.BidiStreamingServer[flasherv1.ConnectRequest, flasherv1.ConnectResponse]) error {
	s.reached.Add(1)
	hello, err := stream.Recv()
	if err != nil && err != io.EOF {
		return err
	}
	if hello.GetHello().GetAgentVersion() == "hold" { // confirm, then stay until the stream ends
		if err := stream.Send(&flasherv1.ConnectResponse{}); err != nil {
			return err
		}
		<-stream.Context().Done()
		return status.FromContextError(stream.Context().Err()).Err()
	}
	return nil
}

type fixture struct {
	env      *testenv.Env
	agents   *agentService
	audit    *audit.Log
	dir      string
	caFile   string
	tokens   map[string]string // name → token
	idp      *authtest.Issuer
	flasher  *ca.CA
	other    *ca.CA
	denyPath string
	logs     *testenv.SyncBuffer
}

func newFixture(t *testing.T, clientAuth tls.ClientAuthType) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), tokens: map[string]string{}, logs: &testenv.SyncBuffer{}}
	var err error
	if f.flasher, err = ca.Init(filepath.Join(f.dir, "ca"), "", 0, nil); err != nil {
		t.Fatal(err)
	}
	if f.other, err = ca.Init(filepath.Join(f.dir, "other-ca"), "Not Flasher", 0, nil); err != nil {
		t.Fatal(err)
	}
	f.caFile = filepath.Join(f.flasher.Dir, ca.CertFile)
	f.denyPath = filepath.Join(f.flasher.Dir, ca.DenyListFile)
	srvCert, err := f.flasher.IssueServer([]string{"localhost"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(f.dir, "server.crt"), filepath.Join(f.dir, "server.key")
	if err := srvCert.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}

	// Static tokens.
	var file strings.Builder
	file.WriteString("tokens:\n")
	for name, scopes := range map[string][]string{
		"reader": {"tasks:read"}, "writer": {"tasks:read", "tasks:write"}, "ops": {"admin"},
	} {
		tok, e, err := auth.GenerateToken(name, scopes, nil)
		if err != nil {
			t.Fatal(err)
		}
		y, _ := auth.MarshalEntry(e)
		file.Write(y)
		f.tokens[name] = tok
	}
	tokenPath := filepath.Join(f.dir, "tokens.yaml")
	if err := os.WriteFile(tokenPath, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// OIDC issuer with its JWKS served over loopback HTTP.
	if f.idp, err = authtest.NewIssuer("ES256", "idp-1"); err != nil {
		t.Fatal(err)
	}
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(authtest.JWKS(f.idp)) }))
	t.Cleanup(jwksSrv.Close)

	// The server is built as flasher-server builds it, from its configuration: TLS, the
	// Flasher CA and its deny list for agents, the token file, the OIDC issuer, the rate
	// limit and the audit trail. Its logger is a plain JSON handler at debug level: the
	// server itself must redact.
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.agents = &agentService{images: map[string]string{"sha256:image-a": "srv-a", "sha256:image-b": "srv-b"}}
	clientTLS, err := ca.ClientTLSConfig(f.caFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	f.env = testenv.Start(t, testenv.Config{
		Logger: log,
		Configure: func(c *server.Config) {
			c.Insecure = false
			c.TLSCert, c.TLSKey, c.CAFile, c.DenyList = certFile, keyFile, f.caFile, f.denyPath
			c.TokenFile = tokenPath
			c.JWTIssuer, c.JWTAudience, c.JWKSURL = issuerURL, audience, jwksSrv.URL
			c.CreateRate, c.CreateBurst = 0.001, 20
		},
		Options: []server.Option{
			server.WithClientAuth(clientAuth),
			server.WithAgentRecheck(20 * time.Millisecond),
		},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(clientTLS))},
		Register: func(r grpc.ServiceRegistrar) {
			flasherv1.RegisterAgentServiceServer(r, f.agents)
		},
	})
	f.audit = f.env.Server.Audit()
	return f
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func spec(server string) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{
		ServerId: server, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: 1,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{{
			Component: "BIOS", Version: "2.19.1",
			Url:      "https://firmware.example.com/bios-2.19.1.bin",
			Checksum: "sha256:" + fmt.Sprintf("%064x", 1),
		}}}},
	}
}

func (f *fixture) jwt(mod func(map[string]any)) string {
	c := map[string]any{"iss": issuerURL, "aud": audience, "sub": "dana@example.test",
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "tasks:read tasks:write"}
	if mod != nil {
		mod(c)
	}
	return f.idp.Sign(c)
}

// agentConn dials with an agent certificate issued by c for serverID (or none when c is nil).
func (f *fixture) agentConn(t *testing.T, c *ca.CA, serverID string) flasherv1.AgentServiceClient {
	t.Helper()
	client, _ := f.agentConnSerial(t, c, serverID)
	return client
}

// agentConnSerial is agentConn that also returns the certificate's serial.
func (f *fixture) agentConnSerial(t *testing.T, c *ca.CA, serverID string) (flasherv1.AgentServiceClient, *big.Int) {
	t.Helper()
	var serial *big.Int
	tc, err := ca.ClientTLSConfig(f.caFile, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		is, err := c.IssueAgent(serverID, 0)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
		serial = is.Serial
	}
	conn, err := grpc.NewClient(f.env.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return flasherv1.NewAgentServiceClient(conn), serial
}

func fetch(c flasherv1.AgentServiceClient, checksum string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.FetchArtifact(ctx, &flasherv1.FetchArtifactRequest{Checksum: checksum})
	if err != nil {
		return "", err
	}
	r, err := s.Recv()
	if err != nil {
		return "", err
	}
	return string(r.GetData()), nil
}

type snapshot struct {
	rev   int64
	tasks int
}

func (f *fixture) snapshot(t *testing.T) snapshot {
	t.Helper()
	rev, err := f.env.Store.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.env.Tasks.ListTasks(bearer(f.tokens["ops"]), &flasherv1.ListTasksRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{rev: rev, tasks: len(resp.GetTasks())}
}

// TestClientAuth: every hostile or insufficient client call is refused with the right code
// and changes nothing; valid tokens act as their identity.
func TestClientAuth(t *testing.T) {
	f := newFixture(t, tls.VerifyClientCertIfGiven)
	before := f.snapshot(t)
	tc := f.env.Tasks
	create := func(ctx context.Context) error {
		_, err := tc.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec("srv-a")})
		return err
	}
	otherIdp, err := authtest.NewIssuer("ES256", "idp-1") // same kid, other key: a forgery
	if err != nil {
		t.Fatal(err)
	}
	forged := otherIdp.Sign(map[string]any{"iss": issuerURL, "aud": audience, "sub": "mallory", "exp": time.Now().Add(time.Hour).Unix(), "scope": "admin"})

	refusals := []struct {
		name string
		ctx  context.Context
		call func(context.Context) error
		want codes.Code
		msg  string
	}{
		{name: "no token", ctx: context.Background(), call: create, want: codes.Unauthenticated, msg: "missing bearer"},
		{name: "no token on a read", ctx: context.Background(), call: func(ctx context.Context) error {
			_, err := tc.ListTasks(ctx, &flasherv1.ListTasksRequest{})
			return err
		}, want: codes.Unauthenticated},
		{name: "no token on a watch stream", ctx: context.Background(), call: func(ctx context.Context) error {
			s, err := tc.WatchTasks(ctx, &flasherv1.WatchTasksRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, want: codes.Unauthenticated},
		{name: "unknown static token", ctx: bearer(auth.TokenPrefix + "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9v"), call: create, want: codes.Unauthenticated},
		{name: "expired JWT", ctx: bearer(f.jwt(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), call: create, want: codes.Unauthenticated, msg: "expired"},
		{name: "wrong audience", ctx: bearer(f.jwt(func(c map[string]any) { c["aud"] = "another-api" })), call: create, want: codes.Unauthenticated, msg: "audience"},
		{name: "wrong issuer", ctx: bearer(f.jwt(func(c map[string]any) { c["iss"] = "https://evil.test" })), call: create, want: codes.Unauthenticated},
		{name: "forged signature", ctx: bearer(forged), call: create, want: codes.Unauthenticated, msg: "signature"},
		{name: "alg none", ctx: bearer(f.idp.SignHeader(map[string]any{"alg": "none"}, map[string]any{"iss": issuerURL, "aud": audience, "sub": "x", "exp": time.Now().Add(time.Hour).Unix(), "scope": "admin"})), call: create, want: codes.Unauthenticated},
		{name: "reader creates", ctx: bearer(f.tokens["reader"]), call: create, want: codes.PermissionDenied, msg: `"tasks:write"`},
		{name: "JWT without write scope", ctx: bearer(f.jwt(func(c map[string]any) { c["scope"] = "tasks:read" })), call: create, want: codes.PermissionDenied},
		{name: "writer cancels", ctx: bearer(f.tokens["writer"]), call: func(ctx context.Context) error {
			_, err := tc.CancelTask(ctx, &flasherv1.CancelTaskRequest{Id: "00000000-0000-4000-8000-000000000000"})
			return err
		}, want: codes.PermissionDenied, msg: `"tasks:cancel"`},
		{name: "oversized message", ctx: bearer(f.tokens["ops"]), call: func(ctx context.Context) error {
			s := spec("srv-a")
			s.GetFirmware().Items[0].Url = "https://firmware.example.com/" + strings.Repeat("a", 5<<20)
			_, err := tc.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: s})
			return err
		}, want: codes.ResourceExhausted},
		{name: "admin token on the agent service", ctx: bearer(f.tokens["ops"]), call: func(ctx context.Context) error {
			s, err := flasherv1.NewAgentServiceClient(f.env.Conn).FetchArtifact(ctx, &flasherv1.FetchArtifactRequest{Checksum: "sha256:image-a"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, want: codes.Unauthenticated},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.ctx)
			st := status.Convert(err)
			if st.Code() != tc.want {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tc.want)
			}
			if tc.msg != "" && !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("message %q lacks %q", st.Message(), tc.msg)
			}
			for _, tok := range f.tokens {
				if strings.Contains(st.Message(), tok) {
					t.Fatal("status echoes a token")
				}
			}
		})
	}
	t.Run("plaintext client refused", func(t *testing.T) {
		conn, err := grpc.NewClient(f.env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(bearer(f.tokens["ops"]), 3*time.Second)
		defer cancel()
		if _, err := flasherv1.NewTaskServiceClient(conn).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec("srv-a")}); err == nil {
			t.Fatal("plaintext call to the TLS listener succeeded")
		}
	})
	if f.agents.reached.Load() != 0 {
		t.Fatalf("%d refused agent calls reached the handler", f.agents.reached.Load())
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("refused calls changed the store: before %+v after %+v", before, after)
	}
	refused := len(refusals) + 1

	t.Run("health stays open", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(f.env.Conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: %v %v", resp, err)
		}
	})
	t.Run("valid tokens act as their identity", func(t *testing.T) {
		for _, c := range []struct{ tok, want string }{
			{f.tokens["writer"], "writer"},
			{f.jwt(nil), "dana@example.test"},
		} {
			resp, err := tc.CreateTask(bearer(c.tok), &flasherv1.CreateTaskRequest{Task: spec("srv-a")})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetTask().GetRequester() != c.want {
				t.Fatalf("requester = %q, want %q", resp.GetTask().GetRequester(), c.want)
			}
		}
		if after := f.snapshot(t); after.tasks != before.tasks+2 || after.rev <= before.rev {
			t.Fatalf("two creations: before %+v after %+v", before, after)
		}
	})
	t.Run("CreateTask rate limit", func(t *testing.T) {
		var limited error
		for i := 0; i < 25 && limited == nil; i++ {
			_, limited = tc.CreateTask(bearer(f.tokens["ops"]), &flasherv1.CreateTaskRequest{Task: spec(fmt.Sprintf("srv-rl-%d", i))})
		}
		if status.Code(limited) != codes.ResourceExhausted || !strings.Contains(status.Convert(limited).Message(), "rate limit") {
			t.Fatalf("burst of 25 with burst 20: %v", limited)
		}
		if _, err := tc.CreateTask(bearer(f.tokens["writer"]), &flasherv1.CreateTaskRequest{Task: spec("srv-b")}); err != nil {
			t.Fatalf("writer limited by ops's bucket: %v", err)
		}
	})
	t.Run("audit trail", func(t *testing.T) {
		ctx := context.Background()
		ok, err := f.audit.Query(ctx, audit.Filter{Action: auth.CreateTaskMethod, Identity: "dana@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		// Newest first: the creation, then the refusal of the token without tasks:write.
		if len(ok) != 2 || ok[0].Code != "OK" || ok[0].ServerID != "srv-a" || ok[0].TaskID == "" || ok[1].Code != "PermissionDenied" {
			t.Fatalf("dana's calls: %+v", ok)
		}
		all, _ := f.audit.Query(ctx, audit.Filter{Limit: audit.MaxLimit})
		var denied, unauth int
		for _, e := range all {
			switch e.Code {
			case "PermissionDenied":
				denied++
			case "Unauthenticated":
				unauth++
			}
		}
		// Mutating refusals only: 3 PermissionDenied, 7 Unauthenticated CreateTasks (reads,
		// watches and agent fetches are not audited; the oversized message never reaches
		// the interceptors).
		if denied != 3 || unauth != 7 {
			t.Fatalf("audit holds %d PermissionDenied and %d Unauthenticated, want 3 and 7 (of %d refusals)", denied, unauth, refused)
		}
	})
	t.Run("AuditService", func(t *testing.T) {
		ac := flasherv1.NewAuditServiceClient(f.env.Conn)
		if _, err := ac.ListAuditEvents(bearer(f.tokens["reader"]), &flasherv1.ListAuditEventsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("reader lists the audit trail: %v", err)
		}
		if _, err := ac.ListAuditEvents(context.Background(), &flasherv1.ListAuditEventsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("anonymous lists the audit trail: %v", err)
		}
		var seen []int64
		req := &flasherv1.ListAuditEventsRequest{PageSize: 4, Action: auth.CreateTaskMethod}
		for {
			resp, err := ac.ListAuditEvents(bearer(f.tokens["ops"]), req)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range resp.GetEvents() {
				if e.GetAction() != auth.CreateTaskMethod {
					t.Fatalf("filter ignored: %v", e)
				}
				if len(seen) > 0 && e.GetId() >= seen[len(seen)-1] {
					t.Fatalf("not newest first: %d after %d", e.GetId(), seen[len(seen)-1])
				}
				seen = append(seen, e.GetId())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		want, _ := f.audit.Query(context.Background(), audit.Filter{Action: auth.CreateTaskMethod, Limit: audit.MaxLimit})
		if len(seen) != len(want) || len(seen) < 10 {
			t.Fatalf("paged %d events, trail holds %d", len(seen), len(want))
		}
		if _, err := ac.ListAuditEvents(bearer(f.tokens["ops"]), &flasherv1.ListAuditEventsRequest{PageToken: "garbage"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad page token: %v", err)
		}
	})
	t.Run("logs hold no token", func(t *testing.T) {
		logs := f.logs.String()
		for name, tok := range f.tokens {
			if strings.Contains(logs, tok) {
				t.Fatalf("logs hold %s's token", name)
			}
		}
		if !strings.Contains(logs, `"msg":"audit"`) {
			t.Fatal("no audit lines in the log")
		}
	})
}

// TestAgentAuth: agents are proven by their certificate alone and bound to its server.
func TestAgentAuth(t *testing.T) {
	f := newFixture(t, tls.VerifyClientCertIfGiven)
	before := f.snapshot(t)
	a := f.agentConn(t, f.flasher, "srv-a")

	t.Run("valid certificate for A fetches A's image", func(t *testing.T) {
		got, err := fetch(a, "sha256:image-a")
		if err != nil || got != "srv-a" {
			t.Fatalf("identity seen by the handler = %q, err %v", got, err)
		}
	})
	t.Run("valid certificate for A asking for B's image", func(t *testing.T) {
		if _, err := fetch(a, "sha256:image-b"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("err = %v, want PermissionDenied", err)
		}
	})
	t.Run("agent certificate grants no client scope", func(t *testing.T) {
		tc, _ := ca.ClientTLSConfig(f.caFile, "localhost")
		is, _ := f.flasher.IssueAgent("srv-a", 0)
		cert, _ := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
		tc.Certificates = []tls.Certificate{cert}
		conn, err := grpc.NewClient(f.env.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = flasherv1.NewTaskServiceClient(conn).CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: spec("srv-a")})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("agent certificate on CreateTask: %v", err)
		}
	})
	reachedBefore := f.agents.reached.Load()
	t.Run("no certificate", func(t *testing.T) {
		_, err := fetch(f.agentConn(t, nil, ""), "sha256:image-a")
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("err = %v, want Unauthenticated", err)
		}
	})
	t.Run("certificate from another CA fails the handshake", func(t *testing.T) {
		_, err := fetch(f.agentConn(t, f.other, "srv-a"), "sha256:image-a")
		if c := status.Code(err); c != codes.Unavailable && c != codes.Unauthenticated {
			t.Fatalf("err = %v, want the TLS handshake refused (Unavailable)", err)
		}
	})
	t.Run("revoked serial", func(t *testing.T) {
		b, serial := f.agentConnSerial(t, f.flasher, "srv-b")
		if _, err := fetch(b, "sha256:image-b"); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
		reachedBefore++
		// Revoke the certificate the connection already uses: the open connection must be
		// refused on its next call, without a restart or reconnect.
		if err := ca.Revoke(f.denyPath, serial, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		_, err := fetch(b, "sha256:image-b")
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "revoked") {
			t.Fatalf("after revocation: %v", err)
		}
	})
	t.Run("revocation ends an open stream", func(t *testing.T) {
		c, serial := f.agentConnSerial(t, f.flasher, "srv-c")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := c.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: &flasherv1.AgentHello{AgentVersion: "hold"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil { // the handler holds the stream: revoke now
			t.Fatal(err)
		}
		reachedBefore++
		if err := ca.Revoke(f.denyPath, serial, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "revoked") {
			t.Fatalf("open stream after revocation: %v, want Unauthenticated (revoked)", err)
		}
		if !strings.Contains(f.logs.String(), "agent stream ended") {
			t.Fatal("the stream was not ended by the periodic re-check")
		}
	})
	t.Run("expired certificate", func(t *testing.T) {
		old := *f.flasher
		old.Now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
		_, err := fetch(f.agentConn(t, &old, "srv-a"), "sha256:image-a")
		if c := status.Code(err); c != codes.Unavailable && c != codes.Unauthenticated {
			t.Fatalf("err = %v, want refused", err)
		}
	})
	if n := f.agents.reached.Load(); n != reachedBefore {
		t.Fatalf("%d refused agent calls reached the handler", n-reachedBefore)
	}
	t.Run("agent sessions audited", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := a.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: &flasherv1.AgentHello{AgentVersion: "test"}}})
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("connect: %v", err)
		}
		got, err := f.audit.Query(context.Background(), audit.Filter{Identity: "agent:srv-a"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Action != audit.ActionAgentDisconnect || got[1].Action != audit.ActionAgentConnect || got[1].Identity != "agent:srv-a" || got[0].Code != "OK" {
			t.Fatalf("audit for srv-a: %+v", got)
		}
	})
	if after := f.snapshot(t); after != before {
		t.Fatalf("agent calls changed the store: before %+v after %+v", before, after)
	}
}

// TestAgentIdentityBehindPermissiveListener: AgentIdentity verifies the chain itself, so a
// listener that accepts any client certificate at the TLS layer still refuses other CAs with
// Unauthenticated.
func TestAgentIdentityBehindPermissiveListener(t *testing.T) {
	f := newFixture(t, tls.RequestClientCert)
	if _, err := fetch(f.agentConn(t, f.other, "srv-a"), "sha256:image-a"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("other CA behind RequestClientCert: %v, want Unauthenticated", err)
	}
	if got, err := fetch(f.agentConn(t, f.flasher, "srv-a"), "sha256:image-a"); err != nil || got != "srv-a" {
		t.Fatalf("valid agent: %q %v", got, err)
	}
	if n := f.agents.reached.Load(); n != 1 {
		t.Fatalf("handler reached %d times, want 1", n)
	}
}
