package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flasher-dev/flasher/internal/api"
	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/audit/auditapi"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/fleetflag"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/watch"
)

// server holds the wired parts of one flasher-server process.
type server struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	hub   *watch.Hub
	sched *scheduler.Scheduler
	grpc  *api.Server
	sec   *security
	reg   *prometheus.Registry
	// inventory is the file inventory, reloaded on SIGHUP and on change; nil when not configured.
	inventory *file.Source
	images    *artifact.Cache
	fleetdb   *fleetdb.Source
	flagger   *fleetflag.Flagger
	collector *fleet.Collector
	ready     atomic.Bool

	grpcLis, httpLis net.Listener
}

func newServer(ctx context.Context, cfg Config, log *slog.Logger) (_ *server, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if cfg.Database == "" {
		cfg.Database = filepath.Join(cfg.DataDir, "flasher.db")
	}
	if cfg.AuditDB == "" {
		cfg.AuditDB = filepath.Join(cfg.DataDir, "audit.db")
	}
	s := &server{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	st, auditStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s.store = st
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	sec, err := newSecurity(ctx, cfg, log, auditStore)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			sec.close()
		}
	}()

	executors := map[task.Method]scheduler.Executor{}
	var inv inventory.Source
	var recorder inventory.Recorder
	switch {
	case cfg.FleetdbURL != "" && cfg.Inventory != "":
		return nil, errors.New("-inventory and -fleetdb-url are exclusive: pick one inventory source")
	case cfg.FleetdbURL != "":
		token, err := readSecret(cfg.FleetdbTokenFile)
		if err != nil {
			return nil, fmt.Errorf("fleetdb token: %w", err)
		}
		bmcTLS, schemes, err := cfg.fleetdbTLSAndSchemes()
		if err != nil {
			return nil, err
		}
		src, err := fleetdb.New(fleetdb.Config{URL: cfg.FleetdbURL, Token: token, BMC: bmcTLS, Schemes: schemes})
		if err != nil {
			return nil, fmt.Errorf("fleetdb inventory: %w", err)
		}
		s.fleetdb, inv, recorder = src, src, src
	case cfg.Inventory != "":
		src, err := file.NewSource(cfg.Inventory, file.WithLogger(log), file.WithLint(plan.Lint))
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		s.inventory, inv = src, src
	default:
		log.Warn("no inventory configured (-inventory or -fleetdb-url): tasks are stored unplanned, no executor runs and InventoryService is not served")
	}
	if cfg.FleetdbFlagTasks && s.fleetdb == nil {
		return nil, errors.New("-fleetdb-flag-tasks needs -fleetdb-url")
	}
	if cfg.Sweep && (inv == nil || cfg.ObservationMaxAge <= 0) {
		return nil, errors.New("-sweep needs an inventory and -observation-max-age")
	}
	var observed *fleet.Fleet
	if inv != nil {
		// Everything downstream plans from the declared inventory overlaid with what the
		// hardware last reported.
		if observed, err = fleet.New(fleet.Config{Store: st, Inventory: inv, MaxAge: cfg.ObservationMaxAge, Logger: log}); err != nil {
			return nil, err
		}
		inv = observed
	}
	var agents *inband.Service
	var planner *plan.SourcePlanner // one catalog index for the API's plans and both executors'
	var bmcReader fleet.BMCReader
	grpcOpts := append([]grpc.ServerOption(nil), sec.options...)
	if inv != nil {
		planner = plan.NewSourcePlanner(inv)
		if cfg.ArtifactDir == "" {
			cfg.ArtifactDir = filepath.Join(cfg.DataDir, "artifacts")
		}
		if len(cfg.ArtifactHosts) == 0 {
			log.Warn("no -artifact-hosts: every image download is refused until hosts are allowed")
		}
		images, err := artifact.New(artifact.Config{
			Dir: cfg.ArtifactDir, MaxBytes: cfg.ArtifactMaxBytes,
			Allow: artifact.AllowList{Schemes: cfg.ArtifactSchemes, Hosts: cfg.ArtifactHosts},
		})
		if err != nil {
			return nil, fmt.Errorf("artifact cache: %w", err)
		}
		s.images = images
		policy, err := cfg.bmcPolicy()
		if err != nil {
			return nil, err
		}
		oob, err := outofband.New(outofband.Config{
			Inventory: inv, Planner: planner, Images: images, Recorder: recorder, Observer: observed, Logger: log, Policy: policy,
		})
		if err != nil {
			return nil, err
		}
		executors[task.MethodOutOfBand] = oob
		bmcReader = oob
		agents, err = inband.New(inband.Config{
			Inventory: inv, Planner: planner, Images: images, Recorder: recorder, Observer: observed, Logger: log,
			ConnectTimeout: cfg.AgentConnectTimeout, LostTimeout: cfg.AgentLostTimeout,
		})
		if err != nil {
			return nil, err
		}
		executors[task.MethodInBand] = agents
		if cfg.AllowUnauthenticatedAgents {
			log.Warn("INSECURE: agents are identified by the x-flasher-server-id header (-allow-unauthenticated-agents)")
			grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(inband.InsecureAgentIdentity()))
		}
	}
	s.sched = scheduler.New(scheduler.Config{
		Store:     st,
		Executors: executors,
		MaxActive: cfg.MaxActive,
		MaxActivePerMethod: map[task.Method]int{
			task.MethodOutOfBand: cfg.MaxActiveOOB,
			task.MethodInBand:    cfg.MaxActiveInBand,
		},
		Worker: cfg.Worker,
		Logger: log,
		// With a shared database every task runs under a lease (internal/scheduler/lease.go).
		Leases:        leasesOf(st),
		LeaseDuration: cfg.LeaseDuration,
	})
	s.hub = watch.New(watch.Config{Store: st, Keep: cfg.WatchKeep, Logger: log})

	s.grpc, err = api.NewServer(api.ServerConfig{
		Logger: log, Registry: s.reg, MaxRecvBytes: cfg.MaxRecvBytes, Options: grpcOpts,
		AuthUnary: sec.unary, AuthStream: sec.stream,
	})
	if err != nil {
		return nil, err
	}
	s.sec = sec
	auditapi.New(auditapi.Config{Log: sec.trail}).Register(s.grpc)
	tasks := api.TaskConfig{Store: st, Queue: s.sched, Hub: s.hub, Logger: log, Heartbeat: cfg.WatchHeartbeat}
	if inv != nil {
		tasks.Planner = planner
		tasks.Inventory = inv
		tasks.CheckURL = s.images.CheckURL
		s.collector, err = fleet.NewCollector(fleet.CollectorConfig{
			Fleet: observed, BMC: bmcReader, Agents: agents, Turns: s.sched, Concurrency: cfg.CollectConcurrency,
		})
		if err != nil {
			return nil, err
		}
		api.NewInventoryService(api.InventoryConfig{Source: inv, Collector: s.collector, Logger: log}).Register(s.grpc)
		api.NewComplianceService(api.ComplianceConfig{Fleet: observed, Logger: log}).Register(s.grpc)
		agents.Register(s.grpc)
	}
	taskSvc := api.NewTaskService(tasks)
	taskSvc.Register(s.grpc)
	if cfg.FleetdbFlagTasks {
		client, err := api.NewLocalTaskClient(taskSvc, auth.Identity{Name: "fleetdb-attribute:" + cfg.Worker, Scopes: []string{"tasks:read", "tasks:write"}})
		if err != nil {
			return nil, err
		}
		s.flagger, err = fleetflag.New(fleetflag.Config{
			Fleetdb: s.fleetdb.Client(), Tasks: client, Worker: cfg.Worker, Interval: cfg.FleetdbFlagInterval, Logger: log,
		})
		if err != nil {
			return nil, err
		}
	}

	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
		return nil, fmt.Errorf("grpc listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
		s.grpcLis.Close()
		return nil, fmt.Errorf("http listen: %w", err)
	}
	return s, nil
}

// Run serves until ctx ends, then shuts down gracefully: no new calls, running calls and
// executors get ShutdownTimeout to finish, and the store closes last so nothing is half-recorded.
func (s *server) Run(ctx context.Context) error {
	defer s.store.Close()
	defer s.sec.close()
	s.log.Info("flasher-server starting",
		"grpc", s.grpcLis.Addr().String(), "http", s.httpLis.Addr().String(),
		"database", s.cfg.Database, "worker", s.cfg.Worker, "insecure", s.cfg.Insecure)
	if s.cfg.Insecure {
		s.log.Warn("serving gRPC without TLS (-insecure): use only on a trusted host")
	}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	g, gctx := errgroup.WithContext(workCtx)
	runTask := func(name string, fn func(context.Context) error) {
		g.Go(func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("%s: panic: %v", name, p)
				}
			}()
			if err := fn(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	runTask("watch hub", s.hub.Run)
	runTask("scheduler", s.sched.Run)
	runTask("change-log compaction", s.compact)
	if s.inventory != nil {
		runTask("inventory reload", s.inventory.Run)
	}
	if s.cfg.Sweep {
		runTask("observation sweep", func(ctx context.Context) error {
			return s.collector.Sweep(ctx, fleet.SweepConfig{MaxAge: s.cfg.ObservationMaxAge, Concurrency: s.cfg.CollectConcurrency})
		})
	}
	if s.flagger != nil {
		runTask("fleetdb attribute workflow", s.flagger.Run)
	}
	runTask("grpc", func(context.Context) error {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	httpSrv := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	runTask("http", func(context.Context) error {
		if err := httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	runTask("ready", func(c context.Context) error {
		select {
		case <-s.hub.Ready():
			s.ready.Store(true)
			s.grpc.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.log.Info("flasher-server ready")
		case <-c.Done():
		}
		return nil
	})

	// Wait for a signal or a failing part.
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case <-gctx.Done():
	}
	s.ready.Store(false)
	s.grpc.Health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.grpc.Stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = httpSrv.Shutdown(sctx)
	cancel()
	stopWork()
	err := g.Wait()
	s.log.Info("flasher-server stopped")
	return err
}

func (s *server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		// A shared database this replica cannot reach makes it not ready: its executors stop
		// at their next write, and the load balancer should send calls elsewhere.
		if p, ok := s.store.(interface{ Ping(context.Context) error }); ok {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := p.Ping(ctx); err != nil {
				http.Error(w, "not ready: store unreachable", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// compact trims the change log to the configured retention, once a minute.
func (s *server) compact(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rev, err := s.store.Revision(ctx)
		if err != nil {
			s.log.Error("compaction: read revision", "err", err)
			continue
		}
		if keep := s.cfg.ChangeRetention; keep > 0 && rev > keep {
			if err := s.store.Compact(ctx, rev-keep); err != nil {
				s.log.Error("compaction", "err", err)
			}
		}
	}
}

// readSecret reads a secret from a file, trimming the line end; an empty path means no secret.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
