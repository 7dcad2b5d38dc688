package auth_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/flasher-dev/flasher/internal/auth"
)

func TestAuthorize(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	dir := t.TempDir()
	reader, readerE, _ := auth.GenerateToken("reader", []string{"tasks:read", "inventory:read"}, nil)
	writer, writerE, _ := auth.GenerateToken("writer", []string{"tasks:write"}, nil)
	admin, adminE, _ := auth.GenerateToken("root", []string{"admin"}, nil)
	path := filepath.Join(dir, "tokens.yaml")
	writeTokens(t, path, readerE, writerE, adminE)
	tokens, err := auth.NewStaticTokens(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := mustIssuer(t, "RS256", "k")
	jv, _ := auth.NewJWTVerifier(auth.JWTConfig{Issuer: testIssuer, Audience: testAudience, Keys: mustKeySet(t, rs), Now: func() time.Time { return clock }})
	a, err := auth.New(auth.Config{
		Tokens: tokens, JWT: jv,
		RateLimits: map[string]auth.RateLimit{auth.CreateTaskMethod: {PerSecond: 1, Burst: 2}},
		Now:        func() time.Time { return clock },
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	jwt := rs.Sign(map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "carol", "exp": now.Add(time.Hour).Unix(), "scope": "tasks:cancel"})
	withAuth := func(v ...string) context.Context {
		md := metadata.MD{}
		for _, x := range v {
			md.Append("authorization", x)
		}
		return metadata.NewIncomingContext(context.Background(), md)
	}
	const (
		get    = "/flasher.v1.TaskService/GetTask"
		create = auth.CreateTaskMethod
		cancel = "/flasher.v1.TaskService/CancelTask"
		inv    = "/flasher.v1.InventoryService/ListServers"
		agent  = "/flasher.v1.AgentService/Connect"
		future = "/flasher.v1.RolloutService/StartRollout"
	)
	tests := []struct {
		name     string
		ctx      context.Context
		method   string
		wantCode codes.Code
		wantName string
		wantMsg  string
	}{
		{name: "no metadata", ctx: context.Background(), method: get, wantCode: codes.Unauthenticated, wantMsg: "missing bearer"},
		{name: "basic auth", ctx: withAuth("Basic dXNlcjpwYXNz"), method: get, wantCode: codes.Unauthenticated, wantMsg: "Bearer"},
		{name: "two headers", ctx: withAuth("Bearer "+reader, "Bearer "+admin), method: get, wantCode: codes.Unauthenticated},
		{name: "unknown static token", ctx: withAuth("Bearer " + auth.TokenPrefix + "AAAA"), method: get, wantCode: codes.Unauthenticated},
		{name: "opaque token", ctx: withAuth("Bearer hello"), method: get, wantCode: codes.Unauthenticated},
		{name: "reader reads", ctx: withAuth("Bearer " + reader), method: get, wantName: "reader"},
		{name: "lower-case scheme", ctx: withAuth("bearer " + reader), method: inv, wantName: "reader"},
		{name: "reader cannot create", ctx: withAuth("Bearer " + reader), method: create, wantCode: codes.PermissionDenied, wantMsg: `"tasks:write"`},
		{name: "writer cannot cancel", ctx: withAuth("Bearer " + writer), method: cancel, wantCode: codes.PermissionDenied, wantMsg: `"tasks:cancel"`},
		{name: "jwt cancels", ctx: withAuth("Bearer " + jwt), method: cancel, wantName: "carol"},
		{name: "jwt cannot read", ctx: withAuth("Bearer " + jwt), method: get, wantCode: codes.PermissionDenied},
		{name: "admin on a future method", ctx: withAuth("Bearer " + admin), method: future, wantName: "root"},
		{name: "reader on a future method", ctx: withAuth("Bearer " + reader), method: future, wantCode: codes.PermissionDenied, wantMsg: `"admin"`},
		{name: "admin token is no agent", ctx: withAuth("Bearer " + admin), method: agent, wantCode: codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var observed auth.Identity
			ctx := auth.WithObserver(tc.ctx, func(id auth.Identity) { observed = id })
			ctx, err := a.Authorize(ctx, tc.method)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if err != nil {
				msg := status.Convert(err).Message()
				if tc.wantMsg != "" && !strings.Contains(msg, tc.wantMsg) {
					t.Fatalf("message %q lacks %q", msg, tc.wantMsg)
				}
				for _, tok := range []string{reader, writer, admin, jwt} {
					if strings.Contains(msg, tok) {
						t.Fatal("error message echoes a token")
					}
				}
				if tc.wantCode == codes.PermissionDenied && observed.Name == "" {
					t.Fatal("observer not told who was denied")
				}
				return
			}
			if got := auth.FromContext(ctx).Name; got != tc.wantName || observed.Name != tc.wantName {
				t.Fatalf("identity %q observed %q, want %q", got, observed.Name, tc.wantName)
			}
		})
	}

	t.Run("CreateTask rate limit per identity", func(t *testing.T) {
		w := withAuth("Bearer " + writer)
		for i := range 2 {
			if _, err := a.Authorize(w, create); err != nil {
				t.Fatalf("call %d within burst: %v", i, err)
			}
		}
		_, err := a.Authorize(w, create)
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("third call: %v, want ResourceExhausted", err)
		}
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		if retry == nil || retry.GetRetryDelay().AsDuration() != time.Second {
			t.Fatalf("retry info = %v, want 1s", retry)
		}
		if _, err := a.Authorize(withAuth("Bearer "+admin), create); err != nil {
			t.Fatalf("another identity limited by writer's bucket: %v", err)
		}
		clock = clock.Add(time.Second)
		if _, err := a.Authorize(w, create); err != nil {
			t.Fatalf("after refill: %v", err)
		}
	})
}

func TestRateLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := auth.NewRateLimiter(auth.RateLimit{PerSecond: 10, Burst: 5}, func() time.Time { return now })
	allowed := 0
	for range 20 {
		if ok, _ := l.Allow("a"); ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d of a burst, want 5", allowed)
	}
	now = now.Add(250 * time.Millisecond) // 2.5 tokens
	allowed = 0
	for range 20 {
		if ok, _ := l.Allow("a"); ok {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("allowed %d after 250ms at 10/s, want 2", allowed)
	}
	if _, wait := l.Allow("a"); wait != 50*time.Millisecond {
		t.Fatalf("wait = %s, want 50ms", wait)
	}
}

func TestRedact(t *testing.T) {
	var out strings.Builder
	log := slog.New(auth.RedactingHandler(slog.NewJSONHandler(&out, nil)))
	log = log.With("bmc_password", "hunter2")
	log.Info("login", "user", "root", "Authorization", "Bearer abc.def.ghi",
		slog.Group("bmc", "password", "s3cret-pw", "host", "10.0.0.1"),
		"header", "Bearer xyz-token-value", "token_file", "/etc/flasher/tokens.yaml",
		"note", "flt_AAAAAAAAAAAA")
	got := out.String()
	for _, secret := range []string{"hunter2", "abc.def.ghi", "s3cret-pw", "xyz-token-value", "flt_AAAA"} {
		if strings.Contains(got, secret) {
			t.Errorf("log line holds %q: %s", secret, got)
		}
	}
	for _, keep := range []string{`"user":"root"`, `"host":"10.0.0.1"`, auth.Redacted} {
		if !strings.Contains(got, keep) {
			t.Errorf("log line lacks %q: %s", keep, got)
		}
	}

	out.Reset()
	slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: auth.RedactAttr})).Info("x", "password", "pw1", "server", "s1")
	if strings.Contains(out.String(), "pw1") || !strings.Contains(out.String(), "server=s1") {
		t.Fatalf("ReplaceAttr: %s", out.String())
	}
}

// TestInsecureAgents: with the header-based agent mode enabled, agent calls without a
// certificate pass on with no identity (the insecure interceptor decides), while client
// methods still need tokens.
func TestInsecureAgents(t *testing.T) {
	a, err := auth.New(auth.Config{InsecureAgents: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := a.Authorize(context.Background(), "/flasher.v1.AgentService/Connect")
	if err != nil || auth.FromContext(ctx).Name != auth.Anonymous {
		t.Fatalf("agent call in insecure mode: %v, identity %+v", err, auth.FromContext(ctx))
	}
	if _, err := a.Authorize(context.Background(), "/flasher.v1.TaskService/CreateTask"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client call in insecure agent mode: %v", err)
	}
	if _, err := auth.New(auth.Config{}); err == nil {
		t.Fatal("an authenticator with no source at all was built")
	}
}

// TestCallLimitsPerIdentityOrConnection: an identity has one bucket whatever connection it
// uses; anonymous callers have one per connection.
func TestCallLimitsPerIdentityOrConnection(t *testing.T) {
	now := time.Unix(1000, 0)
	limits, err := auth.NewCallLimits(map[string]auth.RateLimit{auth.CreateTaskMethod: {PerSecond: 1, Burst: 1}}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	from := func(port int, name string) context.Context {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}})
		if name != "" {
			ctx = auth.WithIdentity(ctx, auth.Identity{Name: name})
		}
		return ctx
	}
	steps := []struct {
		ctx    context.Context
		method string
		ok     bool
	}{
		{from(1, ""), auth.CreateTaskMethod, true},
		{from(1, ""), auth.CreateTaskMethod, false}, // same connection
		{from(2, ""), auth.CreateTaskMethod, true},  // another connection
		{from(1, ""), "/flasher.v1.TaskService/GetTask", true},
		{from(3, "alice"), auth.CreateTaskMethod, true},
		{from(4, "alice"), auth.CreateTaskMethod, false}, // same identity, another connection
	}
	for i, s := range steps {
		err := limits.Check(s.ctx, s.method)
		if (err == nil) != s.ok || err != nil && status.Code(err) != codes.ResourceExhausted {
			t.Errorf("step %d: %v, want allowed=%v", i, err, s.ok)
		}
	}
	now = now.Add(time.Second)
	if err := limits.Check(from(1, ""), auth.CreateTaskMethod); err != nil {
		t.Errorf("after a second: %v", err)
	}
	if _, err := auth.NewCallLimits(map[string]auth.RateLimit{auth.CreateTaskMethod: {}}, nil); err == nil {
		t.Error("a zero rate was accepted")
	}
}
