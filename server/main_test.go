package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/config"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/server"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

// freeAddr returns a loopback address with a free port.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startInProcess runs flasher-server's run() with args and returns its gRPC and HTTP addresses.
func startInProcess(t *testing.T, extra ...string) (grpcAddr, httpAddr string) {
	t.Helper()
	grpcAddr, httpAddr = freeAddr(t), freeAddr(t)
	args := append([]string{"-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-data-dir", t.TempDir(), "-log-level", "warn"}, extra...)
	if !slices.Contains(extra, "-tls-cert") {
		args = append(args, "-insecure")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	waitReady(t, httpAddr)
	return grpcAddr, httpAddr
}

func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server at %s not ready", httpAddr)
}

func grpcurlPath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../bin/grpcurl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("grpcurl is missing (%v): run `make tools`", err)
	}
	return p
}

// grpcurl runs `grpcurl -plaintext [flags] addr rest...`.
func grpcurl(t *testing.T, addr string, flags []string, rest ...string) (string, error) {
	t.Helper()
	args := append(append(append([]string{"-plaintext"}, flags...), addr), rest...)
	var out bytes.Buffer
	cmd := exec.Command(grpcurlPath(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestGrpcurlWalkthrough drives the server the way the README does: reflection, create, get,
// list, watch, cancel, health — with grpcurl and no proto files.
func TestGrpcurlWalkthrough(t *testing.T) {
	addr, httpAddr := startInProcess(t)

	out, err := grpcurl(t, addr, nil, "list")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, svc := range []string{"flasher.v1.TaskService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(out, svc) {
			t.Fatalf("list lacks %s:\n%s", svc, out)
		}
	}
	out, err = grpcurl(t, addr, nil, "describe", "flasher.v1.TaskService.CreateTask")
	if err != nil || !strings.Contains(out, "rpc CreateTask ( .flasher.v1.CreateTaskRequest )") {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	out, err = grpcurl(t, addr, nil, "grpc.health.v1.Health/Check")
	if err != nil || !strings.Contains(out, "SERVING") {
		t.Fatalf("health: %v\n%s", err, out)
	}

	// A watcher started before the task sees it created and cancelled.
	watch := exec.Command(grpcurlPath(t), "-plaintext", "-max-time", "20", "-d", `{"filter":{"server_id":"srv-42"}}`, addr, "flasher.v1.TaskService/WatchTasks")
	var watchOut bytes.Buffer
	watch.Stdout = &watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	create := `{"request_id":"walkthrough-1","task":{"server_id":"srv-42","method":"METHOD_OUT_OF_BAND","priority":2,` +
		`"firmware":{"items":[{"component":"BIOS","version":"2.19.1"}]}}}`
	out, err = grpcurl(t, addr, []string{"-d", create}, "flasher.v1.TaskService/CreateTask")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	var created struct {
		Task struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"task"`
		Created bool `json:"created"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || !created.Created || created.Task.State != "TASK_STATE_QUEUED" {
		t.Fatalf("create output %v:\n%s", err, out)
	}
	id := created.Task.ID

	out, err = grpcurl(t, addr, []string{"-d", `{"id":"` + id + `"}`}, "flasher.v1.TaskService/GetTask")
	if err != nil || !strings.Contains(out, `"serverId": "srv-42"`) {
		t.Fatalf("get: %v\n%s", err, out)
	}
	out, err = grpcurl(t, addr, []string{"-d", `{"filter":{"states":["TASK_STATE_QUEUED"]}}`}, "flasher.v1.TaskService/ListTasks")
	if err != nil || !strings.Contains(out, id) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = grpcurl(t, addr, []string{"-d", `{"id":"` + id + `","reason":"maintenance window moved"}`}, "flasher.v1.TaskService/CancelTask")
	if err != nil || !strings.Contains(out, "TASK_STATE_CANCELLED") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
	// Bad input: InvalidArgument naming the field, nothing stored.
	out, err = grpcurl(t, addr, []string{"-d", `{"task":{"server_id":"srv-42","method":"METHOD_OUT_OF_BAND","priority":9,"firmware":{"items":[{"component":"BIOS","version":"1"}]}}}`}, "flasher.v1.TaskService/CreateTask")
	if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "task.priority") {
		t.Fatalf("invalid create: %v\n%s", err, out)
	}

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(watchOut.String(), "TASK_STATE_CANCELLED") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	watch.Process.Kill()
	watch.Wait()
	w := watchOut.String()
	for _, want := range []string{"WATCH_EVENT_TYPE_SYNCED", `"kind": "CREATED"`, `"kind": "CANCELLED"`} {
		if !strings.Contains(w, want) {
			t.Fatalf("watch output lacks %s:\n%s", want, w)
		}
	}

	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `grpc_server_handled_total{grpc_code="OK",grpc_method="CreateTask"`) {
		t.Fatalf("metrics lack CreateTask counts:\n%.2000s", body)
	}
}

// TestAcknowledgedTasksSurviveKill9 starts the real binary, creates tasks from several clients,
// kills the process with SIGKILL mid-stream and checks that every acknowledged task is there
// after a restart.
func TestAcknowledgedTasksSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	bin := filepath.Join(t.TempDir(), "flasher-server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := t.TempDir()
	start := func() (*exec.Cmd, string) {
		grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
		cmd := exec.Command(bin, "-insecure", "-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-data-dir", data, "-log-level", "error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, httpAddr)
		return cmd, grpcAddr
	}
	cmd, addr := start()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := flasherv1.NewTaskServiceClient(conn)
	var mu sync.Mutex
	var acked []string
	var lastErr error
	enough := make(chan struct{}) // closed once 20 tasks are acknowledged
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				resp, err := client.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
					ServerId: fmt.Sprintf("srv-%d-%d", w, i), Method: flasherv1.Method_METHOD_IN_BAND,
					Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}},
				}})
				if err != nil {
					mu.Lock()
					lastErr = err
					mu.Unlock()
					return
				}
				mu.Lock()
				acked = append(acked, resp.Task.Id)
				if len(acked) == 20 {
					close(enough)
				}
				mu.Unlock()
			}
		}(w)
	}
	// Kill mid-stream once enough tasks are acknowledged (however slow the machine), the
	// clients still sending.
	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		cancel()
		wg.Wait()
		t.Fatalf("only %d tasks acknowledged in 2 minutes (last error: %v)", len(acked), lastErr)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	cancel()
	wg.Wait()
	conn.Close()
	if len(acked) < 20 {
		t.Fatalf("only %d tasks acknowledged before the kill (last error: %v)", len(acked), lastErr)
	}

	cmd, addr = start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client = flasherv1.NewTaskServiceClient(conn)
	for _, id := range acked {
		if _, err := client.GetTask(context.Background(), &flasherv1.GetTaskRequest{Id: id}); err != nil {
			t.Fatalf("acknowledged task %s lost after kill -9: %v", id, err)
		}
	}
	t.Logf("%d acknowledged tasks all present after kill -9", len(acked))
}

// TestFleetdbInventory runs the server on a fleetdb inventory (the fleetdb-compatible server
// from sim/, seeded with the sample inventory) and checks that planning and InventoryService
// see fleetdb's servers and catalog.
func TestFleetdbInventory(t *testing.T) {
	doc, err := sampleDocument()
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := simfleetdb.New(simfleetdb.Config{Token: "fleetdb-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ids := fdb.SeedDocument(doc)
	if err := fdb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fdb.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("fleetdb-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := startInProcess(t, "-fleetdb-url", fdb.URL(), "-fleetdb-token-file", tokenFile, "-fleetdb-flag-tasks", "-fleetdb-flag-interval", "1h")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	servers, err := flasherv1.NewInventoryServiceClient(conn).ListServers(ctx, &flasherv1.ListServersRequest{IncludeComponents: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(servers.Servers) != len(doc.Servers) {
		t.Fatalf("fleetdb lists %d servers, the seed has %d", len(servers.Servers), len(doc.Servers))
	}
	id := ids["r6515-01"].String()
	resp, err := flasherv1.NewTaskServiceClient(conn).PlanTask(ctx, &flasherv1.PlanTaskRequest{Task: &flasherv1.TaskSpec{
		ServerId: id, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
		Install: &flasherv1.TaskSpec_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: "R6515 production"}},
	}})
	if err != nil {
		t.Fatalf("plan on fleetdb inventory: %v", err)
	}
	if len(resp.Plan.Steps) == 0 || resp.ServerVendor == "" {
		t.Fatalf("plan %v, vendor %q", resp.Plan, resp.ServerVendor)
	}
}

func sampleDocument() (file.Document, error) {
	var doc file.Document
	data, err := os.ReadFile("../deploy/inventory/sample.yaml")
	if err != nil {
		return doc, err
	}
	return doc, yaml.Unmarshal(data, &doc)
}

// TestTLSAndTokens starts the server the way a deployment does: TLS from a Flasher CA and a
// static token file. A client with the token creates a task recorded under the token's name;
// without a token, with a token lacking the scope, or over plaintext, nothing is accepted.
func TestTLSAndTokens(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ctx := context.Background()
	for _, args := range [][]string{
		{"init", "--dir", caDir},
		{"issue-server", "--dir", caDir, "--ip", "127.0.0.1", "--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key")},
	} {
		if err := runCA(ctx, args, io.Discard, io.Discard); err != nil {
			t.Fatalf("ca %v: %v", args, err)
		}
	}
	writer, wEntry, err := auth.GenerateToken("ops-alice", []string{"tasks:read", "tasks:write"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader, rEntry, err := auth.GenerateToken("dashboard", []string{"tasks:read"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, aEntry, err := auth.GenerateToken("security-team", []string{"admin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tokens bytes.Buffer
	tokens.WriteString("tokens:\n")
	for _, e := range []auth.TokenEntry{wEntry, rEntry, aEntry} {
		y, err := auth.MarshalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		tokens.Write(y)
	}
	tokenFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokenFile, tokens.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, []string{"-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-data-dir", filepath.Join(dir, "data"),
			"-tls-cert", filepath.Join(dir, "server.crt"), "-tls-key", filepath.Join(dir, "server.key"),
			"-ca-file", filepath.Join(caDir, "ca.crt"), "-token-file", tokenFile}, &logs, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
		if strings.Contains(logs.String(), writer) || strings.Contains(logs.String(), reader) {
			t.Error("a token appears in the server log")
		}
	}()
	waitReady(t, httpAddr)

	tlsCfg, err := ca.ClientTLSConfig(filepath.Join(caDir, "ca.crt"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := flasherv1.NewTaskServiceClient(conn)
	with := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	req := &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{ServerId: "srv-1", Method: flasherv1.Method_METHOD_IN_BAND,
		Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}}}}

	if _, err := client.CreateTask(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v, want Unauthenticated", err)
	}
	if _, err := client.CreateTask(with(reader), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("read-only token: %v, want PermissionDenied", err)
	}
	list, err := client.ListTasks(with(reader), &flasherv1.ListTasksRequest{})
	if err != nil || len(list.Tasks) != 0 {
		t.Fatalf("refused calls stored something: %v %v", list, err)
	}
	resp, err := client.CreateTask(with(writer), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Task.Requester != "ops-alice" {
		t.Fatalf("requester %q, want the token's name", resp.Task.Requester)
	}
	plain, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := flasherv1.NewTaskServiceClient(plain).ListTasks(with(reader), &flasherv1.ListTasksRequest{}); err == nil {
		t.Fatal("plaintext call to the TLS server succeeded")
	}
	// The audit trail recorded the refused and the accepted create, under their identities;
	// reading it needs audit:read.
	auditClient := flasherv1.NewAuditServiceClient(conn)
	if _, err := auditClient.ListAuditEvents(with(writer), &flasherv1.ListAuditEventsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("audit without audit:read: %v, want PermissionDenied", err)
	}
	events, err := auditClient.ListAuditEvents(with(admin), &flasherv1.ListAuditEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, e := range events.Events {
		if strings.HasSuffix(e.Action, "CreateTask") {
			seen[e.Identity] = e.Code
		}
	}
	if seen["ops-alice"] != "OK" || seen["dashboard"] != "PermissionDenied" {
		t.Fatalf("audit of CreateTask by identity: %v", seen)
	}
}

// TestAgentMutualTLS connects agents the way flasher-agent does: over TLS with a client
// certificate from the Flasher CA that names one server. The server binds the stream to that
// server; a revoked certificate and an agent without one are refused.
func TestAgentMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ctx := context.Background()
	issue := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runCA(ctx, append(args, "--dir", caDir), &out, io.Discard); err != nil {
			t.Fatalf("ca %v: %v", args, err)
		}
		return out.String()
	}
	issue("init")
	issue("issue-server", "--ip", "127.0.0.1", "--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key"))
	issue("issue-agent", "--server-id", "x11-01", "--cert", filepath.Join(dir, "x11.crt"), "--key", filepath.Join(dir, "x11.key"))
	out := issue("issue-agent", "--server-id", "r6515-01", "--cert", filepath.Join(dir, "r6515.crt"), "--key", filepath.Join(dir, "r6515.key"))
	serial := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "serial:" {
			serial = f[1]
		}
	}
	if serial == "" {
		t.Fatalf("no serial in %q", out)
	}
	issue("revoke", "--serial", serial)
	adminTok, entry, err := auth.GenerateToken("admin", []string{"admin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	y, _ := auth.MarshalEntry(entry)
	tokenFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokenFile, append([]byte("tokens:\n"), y...), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(caDir, "ca.crt")
	addr, _ := startInProcess(t, "-tls-cert", filepath.Join(dir, "server.crt"), "-tls-key", filepath.Join(dir, "server.key"),
		"-ca-file", caFile, "-token-file", tokenFile, "-inventory", "../deploy/inventory/sample.yaml")

	dialAgent := func(name string) *grpc.ClientConn {
		t.Helper()
		var creds credentials.TransportCredentials
		if name == "" {
			cfg, err := ca.ClientTLSConfig(caFile, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			creds = credentials.NewTLS(cfg)
		} else {
			cfg, err := ca.AgentTLSConfig(ca.AgentTLS{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"), CAFile: caFile, ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			creds = credentials.NewTLS(cfg)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	hello := &flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: &flasherv1.AgentHello{
		AgentVersion: "test", Host: &flasherv1.HostFacts{Hostname: "x11-01", Vendor: "Supermicro", Model: "X11DPH-T"},
		Components: []*flasherv1.AgentComponent{{Slug: "BIOS", Vendor: "Supermicro", Version: "3.4"}},
	}}}
	connect := func(conn *grpc.ClientConn, md ...string) (*flasherv1.ConnectResponse, error) {
		sctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, md...), 10*time.Second)
		t.Cleanup(cancel)
		stream, err := flasherv1.NewAgentServiceClient(conn).Connect(sctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(hello); err != nil {
			// A stream the server refused ends the send side with io.EOF; the refusal's status
			// is what the receive side returns.
			if _, rerr := stream.Recv(); rerr != nil {
				return nil, rerr
			}
			return nil, err
		}
		return stream.Recv()
	}

	// The valid certificate: welcomed, and listed under the server its certificate names even
	// though it claims another server in the header.
	if _, err := connect(dialAgent("x11"), "x-flasher-server-id", "r6515-01"); err != nil {
		t.Fatalf("agent with a valid certificate: %v", err)
	}
	admin := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminTok)
	list, err := flasherv1.NewAgentServiceClient(dialAgent("")).ListAgents(admin, &flasherv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Agents) != 1 || list.Agents[0].ServerId != "x11-01" {
		t.Fatalf("agents %v, want only x11-01 (from its certificate)", list.Agents)
	}
	// The revoked certificate and a connection without a certificate are refused.
	if _, err := connect(dialAgent("r6515")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked agent certificate: %v, want Unauthenticated", err)
	}
	if _, err := connect(dialAgent(""), "x-flasher-server-id", "r6515-01"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("agent without a certificate: %v, want Unauthenticated", err)
	}
}

// TestDeployConfig keeps the example configuration in deploy/ in step with the flags.
func TestDeployConfig(t *testing.T) {
	cfg := server.DefaultConfig()
	if _, err := config.Load("flasher-server", &cfg, []string{"-config", "../deploy/config/server.yaml"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCListen != "0.0.0.0:9090" || cfg.Insecure || cfg.TokenFile == "" || len(cfg.ArtifactHosts) != 2 || cfg.CreateRate != 50 {
		t.Fatalf("deploy/config/server.yaml read as %+v", cfg)
	}
	replica := server.DefaultConfig()
	if _, err := config.Load("flasher-server", &replica, []string{"-config", "../deploy/config/server-replica.yaml"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(replica.Store, "postgres://") || replica.StorePasswordFile == "" || replica.LeaseDuration != 15*time.Second {
		t.Fatalf("deploy/config/server-replica.yaml read as %+v", replica)
	}
}

// TestCreateRateWithoutClientAuth: without client authentication every caller is anonymous,
// and -create-rate/-create-burst still hold, per connection.
func TestCreateRateWithoutClientAuth(t *testing.T) {
	addr, _ := startInProcess(t, "-create-rate", "0.001", "-create-burst", "2")
	create := func(c flasherv1.TaskServiceClient, n int) error {
		_, err := c.CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
			ServerId: fmt.Sprintf("srv-%d", n), Method: flasherv1.Method_METHOD_OUT_OF_BAND,
			Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{{Component: "BIOS", Version: "2.19.1"}}}},
		}})
		return err
	}
	var clients []flasherv1.TaskServiceClient
	for range 2 {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients = append(clients, flasherv1.NewTaskServiceClient(conn))
	}
	for i, c := range clients {
		for n := range 2 {
			if err := create(c, 10*i+n); err != nil {
				t.Fatalf("connection %d, call %d within the burst: %v", i, n, err)
			}
		}
		err := create(c, 10*i+2)
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "connection") {
			t.Errorf("connection %d past the burst: %v, want ResourceExhausted naming the connection", i, err)
		}
	}
}

// TestFleetdbBMCTLSAndSchemes: the BMC TLS and version-scheme settings of a fleetdb inventory
// are set by flags; bad values stop the server at start.
func TestFleetdbBMCTLSAndSchemes(t *testing.T) {
	doc, err := sampleDocument()
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := simfleetdb.New(simfleetdb.Config{Token: "fleetdb-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ids := fdb.SeedDocument(doc)
	if err := fdb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fdb.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("fleetdb-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	insecureID := ids["r6515-01"].String()
	fleetdbArgs := []string{"-fleetdb-url", fdb.URL(), "-fleetdb-token-file", tokenFile}
	for _, bad := range [][]string{
		{"-fleetdb-schemes", "bios=alphabetical"},
		{"-fleetdb-schemes", "bios"},
		{"-fleetdb-bmc-insecure-skip-verify", "r6515-01"},
	} {
		args := append([]string{"-grpc-listen", freeAddr(t), "-http-listen", freeAddr(t), "-data-dir", t.TempDir(), "-insecure"}, fleetdbArgs...)
		if err := run(context.Background(), append(args, bad...), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want a refusal naming the flag", bad, err)
		}
	}

	addr, _ := startInProcess(t, append(fleetdbArgs, "-fleetdb-bmc-insecure-skip-verify", insecureID, "-fleetdb-schemes", "Dell Inc./BIOS=opaque")...)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	inv := flasherv1.NewInventoryServiceClient(conn)
	servers, err := inv.ListServers(ctx, &flasherv1.ListServersRequest{})
	if err != nil || len(servers.Servers) < 2 {
		t.Fatalf("ListServers = %v, %v", servers, err)
	}
	for _, s := range servers.Servers {
		if s.BmcInsecureSkipVerify != (s.Id == insecureID) {
			t.Errorf("server %s: insecure_skip_verify %v", s.Name, s.BmcInsecureSkipVerify)
		}
	}
	fw, err := inv.ListFirmware(ctx, &flasherv1.ListFirmwareRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var dellBIOS int
	for _, r := range fw.Firmware {
		if strings.EqualFold(r.Component, "BIOS") && strings.HasPrefix(strings.ToLower(r.Vendor), "dell") {
			dellBIOS++
			if r.VersionScheme != "opaque" {
				t.Errorf("Dell BIOS %s: scheme %q, want opaque", r.Version, r.VersionScheme)
			}
		} else if r.VersionScheme == "opaque" && r.Version == "2.19.1" {
			t.Errorf("%s %s %s: opaque without an override", r.Vendor, r.Component, r.Version)
		}
	}
	if dellBIOS == 0 {
		t.Fatal("the sample catalog has no Dell BIOS record")
	}
}
