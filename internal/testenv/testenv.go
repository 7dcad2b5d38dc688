// Package testenv starts a real Flasher control plane for end-to-end tests: a SQLite store in a
// temporary directory, the scheduler with the given executors, the watch hub and the gRPC server
// with its full interceptor chain on a loopback port, and clients for it. Tests of every part
// (executors, agents, fleetdb) share it instead of wiring their own.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/api"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/watch"
)

// Config says what to run.
type Config struct {
	// Executors by method; none keeps tasks QUEUED.
	Executors map[task.Method]scheduler.Executor
	// Inventory, when set, plans tasks at creation and serves InventoryService.
	Inventory inventory.Source
	// DBPath reuses a database (to test restarts); empty means a new one in t.TempDir().
	DBPath string
	// Store, when set, is used instead of a SQLite database at DBPath (a PostgreSQL store
	// shared by several Envs acting as replicas); Stop closes it.
	Store store.Store
	// Register adds more services (AgentService, ...) to the gRPC server.
	Register func(grpc.ServiceRegistrar)
	// ServerOptions are added to the gRPC server (interceptors for auth, TLS, ...).
	ServerOptions []grpc.ServerOption
	// AuthUnary and AuthStream fill the auth slot of the server's interceptor chain
	// (api.ServerConfig), where health and reflection stay open.
	AuthUnary  grpc.UnaryServerInterceptor
	AuthStream grpc.StreamServerInterceptor
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
	Store     store.Store
	Scheduler *scheduler.Scheduler
	Hub       *watch.Hub
	Addr      string
	Conn      *grpc.ClientConn
	Tasks     flasherv1.TaskServiceClient
	Inventory flasherv1.InventoryServiceClient

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
	if cfg.DBPath == "" && cfg.Store == nil {
		return nil, errors.New("testenv: DBPath or Store is required")
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
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	st := cfg.Store
	if st == nil {
		if st, err = sqlite.Open(ctx, sqlite.Config{Path: cfg.DBPath}); err != nil {
			return nil, err
		}
	}
	sched := scheduler.New(scheduler.Config{Store: st, Executors: cfg.Executors, Worker: cfg.Worker, Logger: cfg.Logger})
	hub := watch.New(watch.Config{Store: st, Keep: cfg.HubKeep, Buffer: cfg.WatchBuffer, Poll: 50 * time.Millisecond, Logger: cfg.Logger})
	srv, err := api.NewServer(api.ServerConfig{Logger: cfg.Logger, Options: cfg.ServerOptions, AuthUnary: cfg.AuthUnary, AuthStream: cfg.AuthStream})
	if err != nil {
		st.Close()
		return nil, err
	}
	tc := api.TaskConfig{Store: st, Queue: sched, Hub: hub, Logger: cfg.Logger, Heartbeat: cfg.Heartbeat, Inventory: cfg.Inventory}
	if cfg.Inventory != nil {
		tc.Planner = plan.NewSourcePlanner(cfg.Inventory)
		api.NewInventoryService(api.InventoryConfig{Source: cfg.Inventory, Logger: cfg.Logger}).Register(srv)
	}
	api.NewTaskService(tc).Register(srv)
	if cfg.Register != nil {
		cfg.Register(srv)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		st.Close()
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	go func() { defer wg.Done(); _ = sched.Run(ctx) }()
	go func() { defer wg.Done(); _ = hub.Run(ctx) }()
	<-hub.Ready()
	dial := cfg.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(lis.Addr().String(), dial...)
	if err != nil {
		srv.Stop()
		cancel()
		wg.Wait()
		st.Close()
		return nil, err
	}
	e := &Env{
		Store: st, Scheduler: sched, Hub: hub, Addr: lis.Addr().String(), Conn: conn,
		Tasks: flasherv1.NewTaskServiceClient(conn), Inventory: flasherv1.NewInventoryServiceClient(conn),
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			conn.Close()
			srv.Stop()
			cancel()
			wg.Wait()
			st.Close()
		})
	}
	return e, nil
}

// Stop stops the control plane now, as a crash of the process would (running executors see
// their context end; nothing more is recorded). Start again with the same DBPath to restart.
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
