package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/flasher-dev/flasher/internal/fleet"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Run serves until ctx ends or a part fails, then shuts down in order:
//
//  1. readiness and health turn NOT_SERVING;
//  2. watch streams end (the hub stops) and agent streams end, both with Unavailable, so
//     clients reconnect rather than hold the server;
//  3. running calls get ShutdownTimeout to finish (then they are cancelled);
//  4. the scheduler and executors stop;
//  5. the audit trail, the artifact cache and, last, the store close, once no handler or
//     executor can write to them.
//
// Each long-lived part runs as a task: the first to fail stops the rest, and a panic in one is
// returned as an error with its stack instead of killing the process mid-write.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	s.log.Info("flasher-server starting",
		"grpc", s.GRPCAddr(), "http", s.HTTPAddr(),
		"database", s.cfg.Database, "worker", s.cfg.Worker, "insecure", s.cfg.Insecure)
	if s.cfg.Insecure {
		s.log.Warn("serving gRPC without TLS (-insecure): use only on a trusted host")
	}

	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	hubCtx, stopHub := context.WithCancel(gctx)
	defer stopHub()
	workCtx, stopWork := context.WithCancel(gctx)
	defer stopWork()
	run := func(name string, ctx context.Context, fn func(context.Context) error) {
		g.Go(func() error { return runTask(ctx, name, fn) })
	}
	run("watch hub", hubCtx, s.hub.Run)
	run("scheduler", workCtx, s.sched.Run)
	run("change-log compaction", workCtx, s.compact)
	run("task metrics", hubCtx, func(ctx context.Context) error { return s.obs.tasks.Run(ctx, s.store, s.hub) })
	if s.fileInventory != nil {
		run("inventory reload", workCtx, s.fileInventory.Run)
	}
	if s.cfg.Sweep {
		run("observation sweep", workCtx, func(ctx context.Context) error {
			return s.collector.Sweep(ctx, fleet.SweepConfig{MaxAge: s.cfg.ObservationMaxAge, Concurrency: s.cfg.CollectConcurrency})
		})
	}
	if s.rollouts != nil {
		run("rollout runner", workCtx, s.rollouts.Run)
	}
	if s.flagger != nil {
		run("fleetdb attribute workflow", workCtx, s.flagger.Run)
	}
	run("grpc", workCtx, func(context.Context) error {
		// A shutdown may come before Serve starts (ErrServerStopped): a normal end too.
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	})
	var httpSrv *http.Server
	if s.httpLis != nil {
		httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		run("http", workCtx, func(context.Context) error {
			if err := httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	run("ready", workCtx, func(c context.Context) error {
		select {
		case <-s.hub.Ready():
			s.ready.Store(true)
			s.grpc.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.log.Info("flasher-server ready")
		case <-c.Done():
		}
		return nil
	})

	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case <-gctx.Done():
	}
	s.ready.Store(false)
	s.grpc.Health.Shutdown()
	stopHub()
	if s.agents != nil {
		s.agents.Shutdown()
	}
	s.stopGRPC()
	stopWork()
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	err := g.Wait()
	s.log.Info("flasher-server stopped")
	return err
}

// stopGRPC lets running calls finish within ShutdownTimeout, then cancels them (at once when
// ShutdownTimeout is 0). Either way it returns once every handler has returned (api.NewServer
// sets WaitForHandlers).
func (s *Server) stopGRPC() {
	if s.cfg.ShutdownTimeout <= 0 {
		s.grpc.Stop()
		return
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("calls still running after the shutdown timeout: cancelling them", "timeout", s.cfg.ShutdownTimeout)
		s.grpc.Stop()
		<-done
	}
}

// runTask runs one long-lived part: a context error at shutdown is a normal end, any other
// error names the part, and a panic becomes an error carrying its stack.
func runTask(ctx context.Context, name string, fn func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: panic: %v\n%s", name, p, debug.Stack())
		}
	}()
	if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
