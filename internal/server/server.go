// Package server builds and runs one flasher-server from its Config: the store, the declared
// inventory, the artifact cache, the executors, the scheduler, the watch hub, security and the
// gRPC and HTTP endpoints, and shuts them down in order. It is the one place that wires the
// control plane: flasher-server, the end-to-end tests (internal/testenv), the security suite
// and the benchmarks all build through New, leaving parts out or replacing them by Option.
//
// It holds no domain logic: every rule lives in the package it wires.
package server

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
	"google.golang.org/grpc"

	"github.com/flasher-dev/flasher/internal/api"
	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/fleetflag"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/rollout/runner"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/watch"
)

// Server is one wired flasher-server. Build it with New, then call Run once.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	hub   *watch.Hub
	sched *scheduler.Scheduler
	grpc  *api.Server
	sec   *security
	reg   *prometheus.Registry
	obs   *metrics
	// stopTracing flushes the spans not yet exported.
	stopTracing func(context.Context) error
	// fileInventory is the file inventory, reloaded on SIGHUP and on change; nil when the
	// inventory is not a file.
	fileInventory *file.Source
	images        *artifact.Cache
	agents        *inband.Service
	flagger       *fleetflag.Flagger
	collector     *fleet.Collector
	rollouts      *runner.Runner // nil without an inventory or a store that keeps rollouts
	ready         atomic.Bool

	grpcLis, httpLis net.Listener
}

// New builds a server from cfg and opts and opens its listeners; nothing runs until Run.
func New(ctx context.Context, cfg Config, opts ...Option) (_ *Server, err error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	log := o.logger
	if log == nil {
		log = slog.Default()
	}
	// Secrets never reach a log line, whoever built the logger.
	log = slog.New(auth.RedactingHandler(log.Handler()))

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if cfg.Database == "" {
		cfg.Database = filepath.Join(cfg.DataDir, "flasher.db")
	}
	if cfg.AuditDB == "" {
		cfg.AuditDB = filepath.Join(cfg.DataDir, "audit.db")
	}
	s := &Server{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.obs = newMetrics(s.reg)
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	tp, stopTracing, err := newTracerProvider(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	s.stopTracing = stopTracing
	st, auditStore := o.store, audit.Store(nil)
	if st == nil {
		if st, auditStore, err = openStore(ctx, cfg, log); err != nil {
			return nil, err
		}
	}
	s.store = st
	if cfg.EnrollCADir != "" && cfg.CAFile == "" {
		cfg.CAFile = filepath.Join(cfg.EnrollCADir, ca.CertFile)
	}
	if s.sec, err = newSecurity(ctx, cfg, o, log, auditStore); err != nil {
		return nil, err
	}
	enroller, err := newEnroller(cfg, st, log)
	if err != nil {
		return nil, err
	}

	inv, recorder, fleetSrc, err := s.inventory(cfg, o)
	if err != nil {
		return nil, err
	}
	if cfg.FleetdbFlagTasks && fleetSrc == nil {
		return nil, errors.New("-fleetdb-flag-tasks needs -fleetdb-url")
	}
	if cfg.Sweep && (inv == nil || cfg.ObservationMaxAge <= 0) {
		return nil, errors.New("-sweep needs an inventory and -observation-max-age")
	}
	var observed *fleet.Fleet
	var planner *plan.SourcePlanner // one catalog index for the API's plans and both executors'
	if inv != nil {
		// Everything downstream plans from the declared inventory overlaid with what the
		// hardware last reported.
		if observed, err = fleet.New(fleet.Config{Store: st, Inventory: inv, MaxAge: cfg.ObservationMaxAge, Logger: log}); err != nil {
			return nil, err
		}
		inv = observed
		planner = plan.NewSourcePlanner(inv)
		s.obs.tasks.useInventory(ctx, observed.Declared())
		s.reg.MustRegister(newObservationAges(st, observed.Declared()))
	}
	executors := o.executors
	var bmcReader fleet.BMCReader
	if !o.ownExecs && inv != nil {
		if executors, bmcReader, err = s.executors(cfg, o, inv, planner, recorder, observed); err != nil {
			return nil, err
		}
	}
	s.sched = scheduler.New(scheduler.Config{
		Store:     st,
		Executors: traceExecutors(executors, tp),
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
	s.hub = watch.New(watch.Config{Store: st, Keep: cfg.WatchKeep, Buffer: o.watchBuffer, Poll: o.watchPoll, Logger: log})

	var agentIdentity grpc.StreamServerInterceptor
	if cfg.AllowUnauthenticatedAgents {
		log.Warn("INSECURE: agents are identified by the x-flasher-server-id header (-allow-unauthenticated-agents)")
		agentIdentity = api.InsecureAgentIdentity()
	}
	s.grpc, err = api.NewServer(api.ServerConfig{
		Logger: log, Registry: s.reg, MaxRecvBytes: cfg.MaxRecvBytes, TracerProvider: tracing(tp),
		Options:    append(append([]grpc.ServerOption(nil), s.sec.options...), o.grpcOptions...),
		AuditUnary: s.sec.auditUnary, AuditStream: s.sec.auditStream,
		AuthUnary: s.sec.authUnary, AuthStream: s.sec.authStream, AgentIdentity: agentIdentity,
	})
	if err != nil {
		return nil, err
	}
	if s.sec.trail != nil {
		api.NewAuditService(api.AuditConfig{Trail: s.sec.trail, Logger: log}).Register(s.grpc)
	}
	tasks := api.TaskConfig{Store: st, Queue: s.sched, Hub: s.hub, Logger: log, Heartbeat: cfg.WatchHeartbeat}
	if inv != nil {
		tasks.Planner = planner
		tasks.Inventory = inv
		collect := fleet.CollectorConfig{Fleet: observed, Turns: s.sched, Concurrency: cfg.CollectConcurrency}
		if bmcReader != nil {
			collect.BMC = bmcReader
		}
		if s.agents != nil {
			collect.Agents = s.agents
		}
		if s.collector, err = fleet.NewCollector(collect); err != nil {
			return nil, err
		}
		api.NewInventoryService(api.InventoryConfig{Source: inv, Collector: s.collector, Logger: log}).Register(s.grpc)
		api.NewComplianceService(api.ComplianceConfig{Fleet: observed, Logger: log}).Register(s.grpc)
	}
	if s.images != nil {
		tasks.CheckURL = s.images.CheckURL
	}
	if s.agents != nil || enroller != nil {
		api.NewAgentService(api.AgentServiceConfig{Agents: s.agents, Enroll: enroller, Logger: log}).Register(s.grpc)
	}
	if s.agents != nil {
		// With one server, an agent not connected here is connected nowhere. Replicas sharing
		// PostgreSQL may hold it elsewhere, so they queue in-band tasks without the check.
		if _, shared := st.(*postgres.Store); !shared {
			tasks.AgentConnected = s.agents.Connected
		}
	}
	taskSvc := api.NewTaskService(tasks)
	taskSvc.Register(s.grpc)
	if rs, ok := st.(store.Rollouts); ok && observed != nil {
		// Rollouts plan from the fleet as tasks do. With replicas sharing PostgreSQL every
		// replica runs the runner: each step is fenced by the rollout's version and each task is
		// created once under its request id, so two runners never start a server twice.
		api.NewRolloutService(api.RolloutConfig{
			Store: st, Rollouts: rs, Preparer: &runner.Preparer{Fleet: observed, Planner: planner, Rollouts: rs},
			Now: o.clock, Logger: log, Heartbeat: cfg.WatchHeartbeat,
		}).Register(s.grpc)
		s.rollouts = runner.New(runner.Config{Store: st, Rollouts: rs, Tasks: taskSvc.RolloutTasks(), Now: o.clock, Tick: o.rolloutTick, Logger: log})
	}
	for _, register := range o.services {
		register(s.grpc)
	}
	if cfg.FleetdbFlagTasks {
		client, err := api.NewLocalTaskClient(taskSvc, auth.Identity{Name: "fleetdb-attribute:" + cfg.Worker, Scopes: []string{"tasks:read", "tasks:write"}})
		if err != nil {
			return nil, err
		}
		s.flagger, err = fleetflag.New(fleetflag.Config{
			Fleetdb: fleetSrc.Client(), Tasks: client, Worker: cfg.Worker, Interval: cfg.FleetdbFlagInterval, Logger: log,
		})
		if err != nil {
			return nil, err
		}
	}

	if s.grpcLis = o.grpcLis; s.grpcLis == nil {
		if s.grpcLis, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
			return nil, fmt.Errorf("grpc listen: %w", err)
		}
	}
	if cfg.HTTPListen != "" {
		if s.httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			s.grpcLis.Close()
			return nil, fmt.Errorf("http listen: %w", err)
		}
	}
	return s, nil
}

// inventory opens the declared inventory: the one given by option, fleetdb or a file.
func (s *Server) inventory(cfg Config, o *options) (inventory.Source, inventory.Recorder, *fleetdb.Source, error) {
	switch {
	case o.inventory != nil:
		return o.inventory, nil, nil, nil
	case cfg.FleetdbURL != "" && cfg.Inventory != "":
		return nil, nil, nil, errors.New("-inventory and -fleetdb-url are exclusive: pick one inventory source")
	case cfg.FleetdbURL != "":
		token, err := readSecret(cfg.FleetdbTokenFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("fleetdb token: %w", err)
		}
		bmcTLS, schemes, err := cfg.fleetdbTLSAndSchemes()
		if err != nil {
			return nil, nil, nil, err
		}
		src, err := fleetdb.New(fleetdb.Config{URL: cfg.FleetdbURL, Token: token, BMC: bmcTLS, Schemes: schemes})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("fleetdb inventory: %w", err)
		}
		return src, src, src, nil
	case cfg.Inventory != "":
		src, err := file.NewSource(cfg.Inventory, file.WithLogger(s.log), file.WithLint(plan.Lint))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("inventory: %w", err)
		}
		s.fileInventory = src
		return src, nil, nil, nil
	}
	s.log.Warn("no inventory configured (-inventory or -fleetdb-url): tasks are stored unplanned, no executor runs and InventoryService is not served")
	return nil, nil, nil, nil
}

// executors builds the artifact cache, the out-of-band executor and the in-band service.
// It returns the out-of-band executor as the fleet's BMC reader too.
func (s *Server) executors(cfg Config, o *options, inv inventory.Source, planner *plan.SourcePlanner, recorder inventory.Recorder, observed *fleet.Fleet) (map[task.Method]scheduler.Executor, fleet.BMCReader, error) {
	if cfg.ArtifactDir == "" {
		cfg.ArtifactDir = filepath.Join(cfg.DataDir, "artifacts")
	}
	if len(cfg.ArtifactHosts) == 0 {
		s.log.Warn("no -artifact-hosts: every image download is refused until hosts are allowed")
	}
	images, err := artifact.New(artifact.Config{
		Dir: cfg.ArtifactDir, MaxBytes: cfg.ArtifactMaxBytes,
		Allow: artifact.AllowList{Schemes: cfg.ArtifactSchemes, Hosts: cfg.ArtifactHosts},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("artifact cache: %w", err)
	}
	s.images = images
	registerCache(s.reg, images)
	recorder = s.obs.recorder(recorder)
	policy, err := cfg.bmcPolicy()
	if err != nil {
		return nil, nil, err
	}
	if o.oobPolicy != nil {
		o.oobPolicy(&policy)
	}
	oob, err := outofband.New(outofband.Config{Inventory: inv, Planner: planner, Images: images, Recorder: recorder, Observer: observed, Logger: s.log, Policy: policy, Calls: s.obs})
	if err != nil {
		return nil, nil, err
	}
	s.agents, err = inband.New(inband.Config{
		Inventory: inv, Planner: planner, Images: images, Recorder: recorder, Observer: observed, Logger: s.log,
		ConnectTimeout: cfg.AgentConnectTimeout, LostTimeout: cfg.AgentLostTimeout, HeartbeatInterval: cfg.AgentHeartbeat,
	})
	if err != nil {
		return nil, nil, err
	}
	registerAgents(s.reg, func() int { return len(s.agents.Agents()) })
	execs := map[task.Method]scheduler.Executor{task.MethodOutOfBand: oob, task.MethodInBand: s.agents}
	if o.wrap != nil {
		for m, x := range execs {
			execs[m] = o.wrap(m, x)
		}
	}
	return execs, oob, nil
}

// Store is the server's task store.
func (s *Server) Store() store.Store { return s.store }

// Scheduler is the server's scheduler.
func (s *Server) Scheduler() *scheduler.Scheduler { return s.sched }

// Hub is the server's watch hub.
func (s *Server) Hub() *watch.Hub { return s.hub }

// Audit is the server's audit trail; nil when it was left out.
func (s *Server) Audit() *audit.Log { return s.sec.trail }

// Logger is the server's logger, with secrets redacted.
func (s *Server) Logger() *slog.Logger { return s.log }

// GRPCAddr is the address gRPC is served on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address of /metrics, /healthz and /readyz; empty when not served.
func (s *Server) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// Ready is closed once the server serves (its watch hub knows the store's revision).
func (s *Server) Ready() <-chan struct{} { return s.hub.Ready() }

// close releases what New opened, the store last so nothing is half-recorded.
func (s *Server) close() {
	if s.images != nil {
		s.images.Close()
	}
	if s.sec != nil {
		s.sec.close()
	}
	if s.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.stopTracing(ctx); err != nil {
			s.log.Warn("flushing traces", "err", err)
		}
		cancel()
	}
	if s.store != nil {
		s.store.Close()
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

func (s *Server) httpHandler() http.Handler {
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
func (s *Server) compact(ctx context.Context) error {
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

// Agents is the in-band service (connected agents, AgentService); nil when the server did not
// build its executors.
func (s *Server) Agents() *inband.Service { return s.agents }
