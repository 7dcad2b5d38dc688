// Package testenv starts a real Flasher control plane for end-to-end tests, built by
// internal/server like flasher-server itself: a SQLite store in a temporary directory, the
// scheduler with the given executors, the watch hub and the gRPC server with its full
// interceptor chain on a loopback port, and clients for it. Tests of every part (executors,
// agents, fleetdb) share it instead of wiring their own.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/watch"
)

// Config says what to run. Parts not named here are left out: no audit trail, no client
// authentication, no HTTP endpoint, unless Configure or Options put them in.
type Config struct {
	// Executors by method; none keeps tasks QUEUED.
	Executors map[task.Method]scheduler.Executor
	// BuildExecutors lets the server build its own out-of-band executor and in-band service, as
	// flasher-server does (Executors is then ignored), so collects read real (simulated) BMCs.
	BuildExecutors bool
	// Inventory, when set, plans tasks at creation and serves InventoryService.
	Inventory inventory.Source
	// DBPath reuses a database (to test restarts); empty means a new one in t.TempDir().
	DBPath string
	// Store, when set, is used instead of a SQLite database at DBPath (a PostgreSQL store
	// shared by several Envs acting as replicas); Stop closes it.
	Store store.Store
	// Register adds more services (AgentService, ...) to the gRPC server.
	Register func(grpc.ServiceRegistrar)
	// ServerOptions are added to the gRPC server (TLS credentials, ...).
	ServerOptions []grpc.ServerOption
	// AuthUnary and AuthStream fill the auth slot of the server's interceptor chain, where
	// health and reflection stay open.
	AuthUnary  grpc.UnaryServerInterceptor
	AuthStream grpc.StreamServerInterceptor
	// Configure adjusts the server's Config (TLS files, token file, ...) after testenv's
	// defaults; a test that sets it takes over security (Insecure, audit) from testenv.
	Configure func(*server.Config)
	// Options are passed to server.New after testenv's own.
	Options []server.Option
	// DialOptions replace the client's default plaintext transport (TLS, per-call tokens).
	DialOptions []grpc.DialOption
	// Addr is the listen address; empty means a free loopback port. A restart test reuses the
	// previous Env's Addr so clients reconnect to the restarted server.
	Addr string
	// Logger defaults to a discarding logger.
	Logger  *slog.Logger
	HubKeep int
	// WatchBuffer is each watcher's buffer in the hub (0: the hub's default).
	WatchBuffer int
	Heartbeat   time.Duration
	Worker      string
}

// Env is a running control plane.
type Env struct {
	Server    *server.Server
	Store     store.Store
	Scheduler *scheduler.Scheduler
	Hub       *watch.Hub
	Addr      string
	Conn      *grpc.ClientConn
	Tasks     flasherv1.TaskServiceClient
	Inventory flasherv1.InventoryServiceClient
	Rollouts  flasherv1.RolloutServiceClient

	stop func()
}

// Start starts a control plane that stops when the test ends.
func Start(t testing.TB, cfg Config) *Env {
	t.Helper()
	if cfg.DBPath == "" && cfg.Store == nil {
		cfg.DBPath = filepath.Join(t.TempDir(), "flasher.db")
	}
	e, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// Run starts a control plane outside a test (benchmarks); call Stop when done. cfg.DBPath is
// required unless cfg.Store is set.
func Run(cfg Config) (_ *Env, err error) {
	cleanup := func() {}
	switch {
	case cfg.DBPath == "" && cfg.Store == nil:
		return nil, errors.New("testenv: DBPath or Store is required")
	case cfg.DBPath == "":
		// The data directory still holds the server's other files.
		dir, err := os.MkdirTemp("", "flasher-testenv-")
		if err != nil {
			return nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		cfg.DBPath = filepath.Join(dir, "unused.db")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Worker == "" {
		cfg.Worker = "testenv"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	sc := server.DefaultConfig()
	sc.DataDir, sc.Database = filepath.Dir(cfg.DBPath), cfg.DBPath
	sc.GRPCListen, sc.HTTPListen = cfg.Addr, ""
	sc.Insecure, sc.Worker, sc.WatchHeartbeat, sc.WatchKeep = true, cfg.Worker, cfg.Heartbeat, cfg.HubKeep
	// Stop is a crash as far as calls are concerned: they are cancelled, not waited for.
	sc.ShutdownTimeout = 0
	// The scheduler's own default limit, not a production replica's.
	sc.MaxActive = 0
	opts := []server.Option{
		server.WithLogger(cfg.Logger),
		server.WithGRPCOptions(cfg.ServerOptions...),
		server.WithWatchTuning(cfg.WatchBuffer, 50*time.Millisecond),
	}
	if !cfg.BuildExecutors {
		opts = append(opts, server.WithExecutors(cfg.Executors))
	}
	if cfg.Configure == nil {
		opts = append(opts, server.WithoutAudit())
	} else {
		cfg.Configure(&sc)
	}
	if cfg.Inventory != nil {
		opts = append(opts, server.WithInventory(cfg.Inventory))
	}
	if cfg.Store != nil {
		opts = append(opts, server.WithStore(cfg.Store))
	}
	if cfg.Register != nil {
		opts = append(opts, server.WithServices(cfg.Register))
	}
	if cfg.AuthUnary != nil || cfg.AuthStream != nil {
		opts = append(opts, server.WithAuth(cfg.AuthUnary, cfg.AuthStream))
	}
	srv, err := server.New(context.Background(), sc, append(opts, cfg.Options...)...)
	if err != nil {
		cleanup()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		cleanup()
		return nil, err
	}
	dial := cfg.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), dial...)
	if err != nil {
		cancel()
		<-done
		cleanup()
		return nil, err
	}
	e := &Env{
		Server: srv, Store: srv.Store(), Scheduler: srv.Scheduler(), Hub: srv.Hub(), Addr: srv.GRPCAddr(), Conn: conn,
		Tasks: flasherv1.NewTaskServiceClient(conn), Inventory: flasherv1.NewInventoryServiceClient(conn),
		Rollouts: flasherv1.NewRolloutServiceClient(conn),
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			conn.Close()
			cancel()
			<-done
			cleanup()
		})
	}
	return e, nil
}

// Stop stops the control plane now, as a crash of the process would as far as calls and
// executors are concerned (they see their context end), and waits until it has. Start again
// with the same DBPath to restart.
func (e *Env) Stop() { e.stop() }

// WaitState polls until the task reaches one of the states or the timeout passes.
func (e *Env) WaitState(t testing.TB, id string, timeout time.Duration, states ...task.State) *task.Task {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tk, err := e.Store.GetTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if tk.State == s {
				return tk
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after %s, want %v (failure %+v)", id, tk.State, timeout, states, tk.Failure)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is an output sink that many goroutines write (a server's log, a watch's output)
// while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
