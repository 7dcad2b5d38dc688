package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// simServer is a flasher-server over a simulated fleet, with its HTTP endpoint.
type simServer struct {
	srv   *server.Server
	sim   *fleet.Fleet
	conn  *grpc.ClientConn
	tasks flasherv1.TaskServiceClient
	http  string // base URL of the HTTP endpoint
}

// startSimServer starts n simulated BMCs (faults keyed by server id) and a server over their
// inventory; configure adjusts the server's Config and opts are passed to server.New. Both stop
// when the test ends.
func startSimServer(t *testing.T, n int, faults map[string]map[redfish.Op]redfish.Fault, configure func(*server.Config), opts ...server.Option) *simServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yaml")
	sim, err := fleet.Start(ctx, fleet.Config{
		N: n, FirstIP: "127.0.9.1", Port: 0, InventoryPath: inv, Faults: faults,
		InstallDuration: 200 * time.Millisecond, ApplyDuration: 100 * time.Millisecond,
		BMCRebootDelay: 50 * time.Millisecond, BMCRebootDuration: 300 * time.Millisecond,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Inventory = filepath.Join(dir, "data"), inv
	cfg.GRPCListen, cfg.HTTPListen, cfg.Insecure = "127.0.0.1:0", "127.0.0.1:0", true
	cfg.ArtifactSchemes, cfg.ArtifactHosts = []string{"http"}, []string{strings.TrimPrefix(sim.ImagesURL(), "http://")}
	cfg.BMCPollInterval, cfg.BMCLoginAttempts, cfg.ShutdownTimeout = 100*time.Millisecond, 1, 0
	if configure != nil {
		configure(&cfg)
	}
	opts = append([]server.Option{server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	srv, err := server.New(ctx, cfg, opts...)
	if err != nil {
		sim.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
		sim.Close()
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server stopped before it was ready: %v", err)
	}
	return &simServer{srv: srv, sim: sim, conn: conn, tasks: flasherv1.NewTaskServiceClient(conn), http: "http://" + srv.HTTPAddr()}
}

// resolveTask is an out-of-band task that installs the server's firmware set.
func resolveTask(serverID string) *flasherv1.CreateTaskRequest {
	return &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{ServerId: serverID, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
		Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}}}}
}

// waitFinal follows WatchTasks until every task of ids has ended and returns them by id.
func (s *simServer) waitFinal(t *testing.T, ids ...string) map[string]*flasherv1.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := s.tasks.WatchTasks(ctx, &flasherv1.WatchTasksRequest{StartRevision: 0})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]*flasherv1.Task{}
	for len(out) < len(want) {
		ev, err := w.Recv()
		if err != nil {
			t.Fatalf("watching tasks %v: %v", ids, err)
		}
		tk := ev.GetTask()
		if !want[tk.GetId()] {
			continue
		}
		switch tk.GetState() {
		case flasherv1.TaskState_TASK_STATE_SUCCEEDED, flasherv1.TaskState_TASK_STATE_FAILED, flasherv1.TaskState_TASK_STATE_CANCELLED:
			out[tk.GetId()] = tk
		}
	}
	return out
}

// get fetches path from the HTTP endpoint and returns its status and body.
func (s *simServer) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
