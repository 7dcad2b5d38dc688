package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/rollout/runner"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// RolloutConfig configures the RolloutService.
type RolloutConfig struct {
	// Store is subscribed to for changes; Rollouts keeps the rollouts.
	Store    store.Store
	Rollouts store.Rollouts
	// Preparer selects, plans and batches the servers of a spec.
	Preparer *runner.Preparer
	// Now is the clock windows and deadlines are judged by; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
	// Heartbeat is how often an idle watch gets a HEARTBEAT (0 means 30s); Poll is how often a
	// watch rereads the rollouts without a signal (0 means 1s): a rollout written by another
	// replica may wake nobody here.
	Heartbeat, Poll time.Duration
}

// RolloutService implements flasherv1.RolloutServiceServer over internal/rollout.
type RolloutService struct {
	flasherv1.UnimplementedRolloutServiceServer
	cfg RolloutConfig
	log *slog.Logger
}

var _ flasherv1.RolloutServiceServer = (*RolloutService)(nil)

// NewRolloutService returns the RolloutService.
func NewRolloutService(cfg RolloutConfig) *RolloutService {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	return &RolloutService{cfg: cfg, log: cfg.Logger.With("part", "api")}
}

// Register registers the service.
func (s *RolloutService) Register(r grpc.ServiceRegistrar) {
	flasherv1.RegisterRolloutServiceServer(r, s)
}

func (s *RolloutService) status(ctx context.Context, err error) error {
	var invalid *runner.InvalidError
	switch {
	case errors.As(err, &invalid):
		br := &errdetails.BadRequest{}
		for _, v := range invalid.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Reason})
		}
		return withDetails(codes.InvalidArgument, invalid.Error(), br)
	case errors.Is(err, store.ErrRolloutNotFound):
		return status.Error(codes.NotFound, "rollout not found")
	case errors.Is(err, store.ErrRolloutConflict):
		return status.Error(codes.Aborted, "rollout changed concurrently; retry")
	case errors.Is(err, store.ErrRolloutsUnsupported):
		return status.Error(codes.Unimplemented, err.Error())
	}
	return errorStatus(ctx, s.log, err)
}

// CreateRollout prepares and stores a rollout; the runner starts it.
func (s *RolloutService) CreateRollout(ctx context.Context, req *flasherv1.CreateRolloutRequest) (*flasherv1.CreateRolloutResponse, error) {
	if id := req.GetRequestId(); id != "" {
		// A repeat returns the first rollout as it is now, without planning again (its windows
		// may have passed since).
		all, err := s.cfg.Rollouts.ListRollouts(ctx, false)
		if err != nil {
			return nil, s.status(ctx, err)
		}
		for _, r := range all {
			if r.RequestID == id {
				return &flasherv1.CreateRolloutResponse{Rollout: rolloutToPB(r, s.cfg.Now(), true)}, nil
			}
		}
	}
	spec, wait := rolloutSpecFromPB(req.GetSpec())
	now := s.cfg.Now()
	rows, batches, err := s.cfg.Preparer.Prepare(ctx, spec, now)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	rec := &store.RolloutRecord{
		ID: uuid.NewString(), RequestID: req.GetRequestId(), Requester: auth.FromContext(ctx).Name,
		CreatedAt: now.UTC(), UpdatedAt: now.UTC(), Template: spec.Template, WaitForAgent: wait, Selector: spec.Selector,
		Rollout: rollout.Rollout{State: rollout.StatePending, Strategy: spec.Strategy, Windows: spec.Windows,
			Deadline: spec.Deadline, Rows: rows, Batches: batches},
	}
	stored, created, err := s.cfg.Rollouts.CreateRollout(ctx, rec)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if created {
		c := rollout.Count(rows)
		s.log.InfoContext(ctx, "rollout created", "rollout", stored.ID, "requester", stored.Requester,
			"servers", len(rows), "taking_part", c.Participants(), "batches", batches)
	}
	return &flasherv1.CreateRolloutResponse{Rollout: rolloutToPB(stored, now, true), Created: created}, nil
}

// PlanRollout prepares a spec as CreateRollout would and stores nothing.
func (s *RolloutService) PlanRollout(ctx context.Context, req *flasherv1.PlanRolloutRequest) (*flasherv1.PlanRolloutResponse, error) {
	spec, _ := rolloutSpecFromPB(req.GetSpec())
	now := s.cfg.Now()
	rows, _, err := s.cfg.Preparer.Prepare(ctx, spec, now)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out := &flasherv1.PlanRolloutResponse{Counts: countsToPB(rollout.Count(rows))}
	for _, r := range rows {
		out.Servers = append(out.Servers, rolloutServerToPB(r))
	}
	for i, b := range runner.PlanBatches(rows, spec.Strategy, spec.Windows, now) {
		out.Batches = append(out.Batches, &flasherv1.PlannedBatch{
			Index: int32(i), ServerIds: b.Servers, WindowStart: ts(b.WindowStart), WindowEnd: ts(b.WindowEnd),
		})
	}
	return out, nil
}

// GetRollout returns one rollout.
func (s *RolloutService) GetRollout(ctx context.Context, req *flasherv1.GetRolloutRequest) (*flasherv1.GetRolloutResponse, error) {
	r, err := s.cfg.Rollouts.GetRollout(ctx, req.GetId())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &flasherv1.GetRolloutResponse{Rollout: rolloutToPB(r, s.cfg.Now(), true)}, nil
}

// ListRollouts lists rollouts in creation order.
func (s *RolloutService) ListRollouts(ctx context.Context, req *flasherv1.ListRolloutsRequest) (*flasherv1.ListRolloutsResponse, error) {
	all, err := s.cfg.Rollouts.ListRollouts(ctx, req.GetActive())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out := &flasherv1.ListRolloutsResponse{}
	now := s.cfg.Now()
	for _, r := range all {
		out.Rollouts = append(out.Rollouts, rolloutToPB(r, now, !req.GetSummary()))
	}
	return out, nil
}

// PauseRollout pauses a rollout for its operator.
func (s *RolloutService) PauseRollout(ctx context.Context, req *flasherv1.PauseRolloutRequest) (*flasherv1.PauseRolloutResponse, error) {
	r, err := s.change(ctx, req.GetId(), "pause", func(ro *rollout.Rollout) error {
		ro.OperatorPaused = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &flasherv1.PauseRolloutResponse{Rollout: r}, nil
}

// ResumeRollout ends an operator's or a budget pause.
func (s *RolloutService) ResumeRollout(ctx context.Context, req *flasherv1.ResumeRolloutRequest) (*flasherv1.ResumeRolloutResponse, error) {
	r, err := s.change(ctx, req.GetId(), "resume", func(ro *rollout.Rollout) error {
		if ro.Cancelled {
			return notNow("resume", "it is being cancelled")
		}
		ro.Resume()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &flasherv1.ResumeRolloutResponse{Rollout: r}, nil
}

// ApproveRollout lets the rollout go on after its canary.
func (s *RolloutService) ApproveRollout(ctx context.Context, req *flasherv1.ApproveRolloutRequest) (*flasherv1.ApproveRolloutResponse, error) {
	r, err := s.change(ctx, req.GetId(), "approve", func(ro *rollout.Rollout) error {
		if !ro.Strategy.ApproveAfterCanary {
			return notNow("approve", "its strategy does not wait for an approval")
		}
		ro.CanaryApproved = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &flasherv1.ApproveRolloutResponse{Rollout: r}, nil
}

// CancelRollout cancels a rollout: nothing new starts, and its tasks in flight are cancelled
// by the runner (queued ones at once, running ones at their next safe point).
func (s *RolloutService) CancelRollout(ctx context.Context, req *flasherv1.CancelRolloutRequest) (*flasherv1.CancelRolloutResponse, error) {
	r, err := s.change(ctx, req.GetId(), "cancel", func(ro *rollout.Rollout) error {
		ro.Cancelled = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &flasherv1.CancelRolloutResponse{Rollout: r}, nil
}

// notNow is a call the rollout's state does not allow.
func notNow(verb, why string) error {
	return withDetails(codes.FailedPrecondition, "cannot "+verb+" the rollout: "+why,
		&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "ROLLOUT_STATE", Subject: "rollout", Description: why}}})
}

// change applies an operator's change to a rollout that has not ended and applies the rules
// at once, so the answer shows its effect (servers the step queues get their tasks from the
// runner, which creates the tasks of QUEUED rows that have none). A concurrent write by the
// runner makes it read again and retry.
func (s *RolloutService) change(ctx context.Context, id, verb string, fn func(*rollout.Rollout) error) (*flasherv1.Rollout, error) {
	for attempt := 0; ; attempt++ {
		rec, err := s.cfg.Rollouts.GetRollout(ctx, id)
		if err != nil {
			return nil, s.status(ctx, err)
		}
		if rec.Rollout.State.Terminal() {
			return nil, notNow(verb, "it has ended "+string(rec.Rollout.State))
		}
		if err := fn(&rec.Rollout); err != nil {
			return nil, err
		}
		now := s.cfg.Now()
		rec.Rollout.Step(now)
		rec.UpdatedAt = now.UTC()
		_, err = s.cfg.Rollouts.UpdateRollout(ctx, rec, rec.Version)
		if errors.Is(err, store.ErrRolloutConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return nil, s.status(ctx, err)
		}
		s.log.InfoContext(ctx, "rollout "+verb, "rollout", id, "by", auth.FromContext(ctx).Name, "state", rec.Rollout.State)
		return rolloutToPB(rec, now, true), nil
	}
}

// RolloutTasks is how a rollout's runner creates and cancels tasks: planned, stored and queued
// exactly as CreateTask and CancelTask do.
func (s *TaskService) RolloutTasks() runner.Tasks { return rolloutTasks{s} }

type rolloutTasks struct{ s *TaskService }

func (r rolloutTasks) Create(ctx context.Context, t *task.Task, waitForAgent bool) (*task.Task, error) {
	if !waitForAgent && t.Method == task.MethodInBand && r.s.cfg.AgentConnected != nil && !r.s.cfg.AgentConnected(t.ServerID) {
		return nil, &task.FailureError{Failure: task.Failure{Code: "AGENT_NOT_CONNECTED",
			Message: "no agent of server " + t.ServerID + " is connected, and the rollout does not wait for one"}}
	}
	stored, _, err := r.s.create(ctx, *t)
	var refusal *plan.Error
	if errors.As(err, &refusal) {
		return nil, &task.FailureError{Failure: task.Failure{Code: task.Code(refusal.Code), Message: refusal.Message}, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.ServerID, err)
	}
	return stored, nil
}

func (r rolloutTasks) Cancel(ctx context.Context, id, reason string) error {
	_, err := r.s.cfg.Queue.Cancel(ctx, id, reason)
	return err
}
