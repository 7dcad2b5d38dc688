// Command auth measures what transport security and authentication cost on CreateTask: the
// same control plane (SQLite store, full interceptor chain) serves many concurrent clients in
// plaintext, over TLS 1.3, over TLS with static-token auth, with OIDC JWT (ES256) auth, and
// with token auth plus the SQLite audit trail. It prints a table with each mode's throughput,
// latency and ratio to the plaintext run.
package main

import (
	"github.com/flasher-dev/flasher/bench/internal/measure"

	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/authtest"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/testenv"
)

type mode struct {
	name  string
	tls   bool
	token string // "", "static", "jwt"
	audit bool
}

var modes = []mode{
	{name: "plaintext, no auth"},
	{name: "TLS 1.3, no auth", tls: true},
	{name: "TLS + static token", tls: true, token: "static"},
	{name: "TLS + OIDC JWT (ES256)", tls: true, token: "jwt"},
	{name: "TLS + static token + audit", tls: true, token: "static", audit: true},
}

func main() {
	clients := flag.Int("clients", 32, "concurrent clients")
	conns := flag.Int("conns", 4, "client connections shared by the clients")
	dur := flag.Duration("duration", 2*time.Second, "length of each run")
	runs := flag.Int("runs", 3, "runs of each mode (interleaved); the table shows the median")
	dir := flag.String("dir", "var/bench", "directory for databases and certificates")
	only := flag.Int("mode", -1, "run only this mode (index in the table), for profiling")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	flag.Parse()
	stopProfile, err := measure.StartCPUProfile(*cpuprofile)
	if err != nil {
		fail(err)
	}
	defer stopProfile()
	if *only >= 0 && *only < len(modes) {
		modes = modes[*only : *only+1]
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fail(err)
	}
	work, err := os.MkdirTemp(*dir, "auth-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	s := setup(work)

	rates := make([][]float64, len(modes))
	p50s := make([][]float64, len(modes))
	p99s := make([][]float64, len(modes))
	cpus := make([][]float64, len(modes))
	for r := 0; r < *runs; r++ {
		for i, m := range modes {
			res := s.run(m, filepath.Join(work, fmt.Sprintf("m%d-r%d.db", i, r)), *clients, *conns, *dur)
			rates[i] = append(rates[i], res.Rate)
			p50s[i] = append(p50s[i], float64(res.P50))
			p99s[i] = append(p99s[i], float64(res.P99))
			cpus[i] = append(cpus[i], float64(res.CPU))
		}
	}
	base, baseCPU := measure.Median(rates[0]), measure.Median(cpus[0])
	fmt.Printf("\nCreateTask, %d clients over %d connections, %d runs of %s per mode (interleaved), SQLite in %s\n\n", *clients, *conns, *runs, *dur, *dir)
	fmt.Println("| mode | CreateTask/s (median) | runs | p50 | p99 | throughput ratio to plaintext | CPU µs/call | CPU ratio |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for i, m := range modes {
		var each string
		for j, x := range rates[i] {
			if j > 0 {
				each += " / "
			}
			each += fmt.Sprintf("%.0f", x)
		}
		mr := measure.Median(rates[i])
		mc := measure.Median(cpus[i])
		fmt.Printf("| %s | %.0f | %s | %s | %s | %.2f | %.0f | %.2f |\n", m.name, mr, each,
			ms(time.Duration(measure.Median(p50s[i]))), ms(time.Duration(measure.Median(p99s[i]))), mr/base, mc/1e3, mc/baseCPU)
	}
}

type setupState struct {
	serverTLS, clientTLS *tls.Config
	tokens               *auth.StaticTokens
	token                string
	jwt                  *auth.JWTVerifier
	jwtToken             string
}

func setup(dir string) *setupState {
	c, err := ca.Init(filepath.Join(dir, "ca"), "", 0, nil)
	if err != nil {
		fail(err)
	}
	is, err := c.IssueServer([]string{"localhost"}, nil, 0)
	if err != nil {
		fail(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := is.Write(certFile, keyFile); err != nil {
		fail(err)
	}
	caFile := filepath.Join(c.Dir, ca.CertFile)
	st := &setupState{}
	if st.serverTLS, err = ca.ServerTLSConfig(ca.ServerTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}); err != nil {
		fail(err)
	}
	if st.clientTLS, err = ca.ClientTLSConfig(caFile, "localhost"); err != nil {
		fail(err)
	}
	tok, entry, err := auth.GenerateToken("bench", []string{auth.ScopeTasksWrite}, nil)
	if err != nil {
		fail(err)
	}
	y, _ := auth.MarshalEntry(entry)
	tokenPath := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokenPath, append([]byte("tokens:\n"), y...), 0o600); err != nil {
		fail(err)
	}
	if st.tokens, err = auth.NewStaticTokens(tokenPath, nil); err != nil {
		fail(err)
	}
	st.token = tok
	idp, err := authtest.NewIssuer("ES256", "bench")
	if err != nil {
		fail(err)
	}
	// The JWKS is fetched over loopback HTTP once and cached, as in production.
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(authtest.JWKS(idp)) }))
	jwks, err := auth.NewJWKS(auth.JWKSConfig{URL: jwksSrv.URL})
	if err != nil {
		fail(err)
	}
	if st.jwt, err = auth.NewJWTVerifier(auth.JWTConfig{Issuer: "https://idp.bench", Audience: "flasher", Keys: jwks}); err != nil {
		fail(err)
	}
	st.jwtToken = idp.Sign(map[string]any{"iss": "https://idp.bench", "aud": "flasher", "sub": "bench", "exp": time.Now().Add(24 * time.Hour).Unix(), "scope": "tasks:write"})
	return st
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

func (s *setupState) run(m mode, db string, clients, nconns int, d time.Duration) result {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testenv.Config{DBPath: db, Heartbeat: time.Hour, Logger: discard}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if m.tls {
		cfg.ServerOptions = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.serverTLS))}
		dial = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS))}
	}
	var auditStore *audit.SQLite
	if m.token != "" {
		ac := auth.Config{Logger: discard}
		switch m.token {
		case "static":
			ac.Tokens = s.tokens
			dial = append(dial, grpc.WithPerRPCCredentials(bearer(s.token)))
		case "jwt":
			ac.JWT = s.jwt
			dial = append(dial, grpc.WithPerRPCCredentials(bearer(s.jwtToken)))
		}
		authn, err := auth.New(ac)
		if err != nil {
			fail(err)
		}
		cfg.AuthUnary, cfg.AuthStream = authn.Unary(), authn.Stream()
		if m.audit {
			if auditStore, err = audit.OpenSQLite(context.Background(), db+".audit"); err != nil {
				fail(err)
			}
			al, err := audit.New(audit.Config{Store: auditStore, Logger: discard})
			if err != nil {
				fail(err)
			}
			cfg.AuthUnary = auth.ChainUnary(al.Unary(), authn.Unary())
			cfg.AuthStream = auth.ChainStream(al.Stream(), authn.Stream())
		}
	}
	env, err := testenv.Run(cfg)
	if err != nil {
		fail(err)
	}
	defer env.Stop()
	if auditStore != nil {
		defer auditStore.Close()
	}
	var cc []flasherv1.TaskServiceClient
	for i := 0; i < nconns; i++ {
		c, err := grpc.NewClient(env.Addr, dial...)
		if err != nil {
			fail(err)
		}
		defer c.Close()
		cc = append(cc, flasherv1.NewTaskServiceClient(c))
	}
	var seq atomic.Int64
	return mustLoad(clients, d, func(ctx context.Context, i int) error {
		_, err := cc[i%len(cc)].CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec(fmt.Sprintf("srv-%d", seq.Add(1)%512))})
		return err
	})
}

func spec(server string) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{
		ServerId: server, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: 1,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{
			{Component: "BIOS", Version: "2.19.1"}, {Component: "BMC", Version: "7.00.00.171"},
		}}},
	}
}

type result = measure.Load

// mustLoad runs a closed-loop load and stops the program when a call fails.
func mustLoad(n int, d time.Duration, fn func(context.Context, int) error) result {
	l, err := measure.RunLoad(n, d, fn)
	if err != nil {
		fail(err)
	}
	return l
}

func ms(d time.Duration) string { return measure.Ms(d) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/auth:", err)
	os.Exit(1)
}
