// Package api serves Flasher's gRPC services. It is the edge where protobuf stops: requests are
// converted to domain types here, domain errors become gRPC statuses here, and nothing below this
// package imports gen/.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/watch"
)

// Planner computes the plan of a task that is not yet stored, from current inventory. Refusals
// implement Precondition.
type Planner interface {
	Plan(ctx context.Context, t *task.Task) (*task.Plan, error)
}

// Queue is the scheduler as the API sees it.
type Queue interface {
	Submit(t *task.Task)
	Cancel(ctx context.Context, id, reason string) (*task.Task, error)
}

// TaskConfig configures the TaskService.
type TaskConfig struct {
	Store   store.Store
	Queue   Queue
	Hub     *watch.Hub
	Planner Planner // nil: tasks are stored unplanned and PlanTask is unavailable
	// Inventory, when set, names the server's vendor and model in PlanTask answers.
	Inventory inventory.Source
	// CheckURL, when set, vets every image URL a client supplies (the artifact allowlist), so a
	// task can never make the server fetch an address it must not.
	CheckURL func(rawURL string) error
	// AgentConnected, when set, tells whether the agent of a server is connected to this
	// server: an IN_BAND task for a server without one is refused unless the spec says
	// wait_for_agent, instead of holding a slot until the agent timeout.
	AgentConnected func(serverID string) bool
	Logger         *slog.Logger
	// Heartbeat is how often an idle watch stream gets a HEARTBEAT (0 means 30s).
	Heartbeat time.Duration
	Now       func() time.Time
}

// TaskService implements flasherv1.TaskServiceServer.
type TaskService struct {
	flasherv1.UnimplementedTaskServiceServer
	cfg TaskConfig
	log *slog.Logger

	// changes converts each committed change to the wire once, however many watchers send it.
	changes changeCache
}

// changeCache keeps the encoded wire form of recent changes, by revision, shared by every
// watch stream.
type changeCache struct {
	mu    sync.Mutex
	byRev map[int64]*encodedMessage
	order []int64
}

const changeCacheSize = 4096

func (c *changeCache) get(ch *store.Change) (*encodedMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.byRev[ch.Revision]; ok {
		return m, nil
	}
	ev := ch.Event
	ev.Revision = ch.Revision
	m, err := encodeOnce(&flasherv1.WatchTasksResponse{
		Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE, Revision: ch.Revision,
		Task: TaskToPB(ch.Task), Event: eventToPB(ev),
	})
	if err != nil {
		return nil, err
	}
	if c.byRev == nil {
		c.byRev = make(map[int64]*encodedMessage, changeCacheSize)
	}
	if len(c.order) >= changeCacheSize {
		delete(c.byRev, c.order[0])
		c.order = c.order[1:]
	}
	c.byRev[ch.Revision] = m
	c.order = append(c.order, ch.Revision)
	return m, nil
}

var _ flasherv1.TaskServiceServer = (*TaskService)(nil)

// NewTaskService returns the TaskService.
func NewTaskService(cfg TaskConfig) *TaskService {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &TaskService{cfg: cfg, log: cfg.Logger.With("part", "api")}
}

// Register registers the service.
func (s *TaskService) Register(r grpc.ServiceRegistrar) { flasherv1.RegisterTaskServiceServer(r, s) }

func (s *TaskService) status(ctx context.Context, err error) error {
	return errorStatus(ctx, s.log, err)
}

// CreateTask plans and queues a task.
func (s *TaskService) CreateTask(ctx context.Context, req *flasherv1.CreateTaskRequest) (*flasherv1.CreateTaskResponse, error) {
	spec := SpecFromPB(req.GetTask())
	if err := s.checkURLs(&spec); err != nil {
		return nil, err
	}
	if err := s.checkAgent(req.GetTask()); err != nil {
		return nil, err
	}
	spec.RequestID = req.GetRequestId()
	spec.Requester = auth.FromContext(ctx).Name
	stored, created, err := s.create(ctx, spec)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if !created && !sameRequest(stored, &spec) {
		return nil, status.Error(codes.AlreadyExists, fmt.Sprintf("request_id %q was used for task %s with a different server, method or install mode", spec.RequestID, stored.ID))
	}
	return &flasherv1.CreateTaskResponse{Task: TaskToPB(stored), Created: created}, nil
}

// create plans spec, stores it (idempotently on its request id) and queues it.
func (s *TaskService) create(ctx context.Context, spec task.Task) (*task.Task, bool, error) {
	spec.ID = uuid.NewString()
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// The task's own span (internal/server) joins the trace of the call that created it.
		spec.TraceID, spec.TraceSpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	if s.cfg.Planner != nil {
		p, err := s.cfg.Planner.Plan(ctx, &spec)
		if err != nil {
			return nil, false, err
		}
		applyPlan(&spec, p)
	}
	t, ev := task.New(spec, s.cfg.Now().UTC())
	stored, created, err := s.cfg.Store.CreateTask(ctx, t, ev)
	if err != nil {
		return nil, false, err
	}
	if created {
		s.cfg.Queue.Submit(stored)
		s.log.DebugContext(ctx, "task created", "task", stored.ID, "server", stored.ServerID, "method", stored.Method,
			"requester", stored.Requester, "priority", stored.Priority, "rollout", stored.RolloutID)
	}
	return stored, created, nil
}

// applyPlan stores the plan in the task and fills the resolved set and firmware, as the
// sh.hollow.flasher.task payload does for the set and resolve modes.
func applyPlan(t *task.Task, p *task.Plan) {
	t.Plan = p
	if p == nil {
		return
	}
	if p.FirmwareSet != "" {
		t.FirmwareSet = p.FirmwareSet
	}
	if t.Mode == task.ModeFirmware {
		return
	}
	t.Firmware = t.Firmware[:0]
	for _, st := range p.Steps {
		t.Firmware = append(t.Firmware, task.Firmware{
			Component: st.Component, Serial: st.Serial, Vendor: st.Vendor, Model: st.Model,
			Version: st.ToVersion, URL: st.URL, Checksum: st.Checksum, FirmwareID: st.FirmwareID,
			Force: st.Force, Reinstall: st.Reinstall, PreActions: st.PreActions, PostActions: st.PostActions,
		})
	}
}

// checkURLs refuses image URLs outside the artifact allowlist before anything is stored.
func (s *TaskService) checkURLs(t *task.Task) error {
	if s.cfg.CheckURL == nil {
		return nil
	}
	for i, f := range t.Firmware {
		if f.URL == "" {
			continue
		}
		if err := s.cfg.CheckURL(f.URL); err != nil {
			return badRequest(fmt.Sprintf("task.firmware.items[%d].url", i), "not an allowed image source: "+err.Error())
		}
	}
	return nil
}

func sameRequest(a, b *task.Task) bool {
	return a.ServerID == b.ServerID && a.Method == b.Method && a.Mode == b.Mode
}

// PlanTask returns the plan without queuing anything.
func (s *TaskService) PlanTask(ctx context.Context, req *flasherv1.PlanTaskRequest) (*flasherv1.PlanTaskResponse, error) {
	if s.cfg.Planner == nil {
		return nil, status.Error(codes.Unimplemented, "planning is not configured on this server (no inventory)")
	}
	spec := SpecFromPB(req.GetTask())
	if err := s.checkURLs(&spec); err != nil {
		return nil, err
	}
	if err := s.checkAgent(req.GetTask()); err != nil {
		return nil, err
	}
	spec.Requester = auth.FromContext(ctx).Name
	p, err := s.cfg.Planner.Plan(ctx, &spec)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out := &flasherv1.PlanTaskResponse{Plan: planToPB(p)}
	if s.cfg.Inventory != nil {
		if srv, err := s.cfg.Inventory.Server(ctx, spec.ServerID); err == nil {
			out.ServerVendor, out.ServerModel = srv.Vendor, srv.Model
		}
	}
	return out, nil
}

// checkAgent refuses an IN_BAND spec whose server has no agent connected, unless it asks to
// wait for one.
func (s *TaskService) checkAgent(spec *flasherv1.TaskSpec) error {
	if s.cfg.AgentConnected == nil || spec.GetMethod() != flasherv1.Method_METHOD_IN_BAND ||
		spec.GetWaitForAgent() || s.cfg.AgentConnected(spec.GetServerId()) {
		return nil
	}
	return withDetails(codes.FailedPrecondition, fmt.Sprintf("no agent of server %s is connected", spec.GetServerId()),
		&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
			Type: "AGENT_NOT_CONNECTED", Subject: "server/" + spec.GetServerId(),
			Description: "an in-band task needs the host's flasher-agent connected to this server; start it, " +
				"or set wait_for_agent to queue the task anyway (it fails AGENT_UNAVAILABLE if no agent comes within the server's agent connect timeout)",
		}}})
}

// GetTask returns one task.
func (s *TaskService) GetTask(ctx context.Context, req *flasherv1.GetTaskRequest) (*flasherv1.GetTaskResponse, error) {
	t, err := s.cfg.Store.GetTask(ctx, req.GetId())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &flasherv1.GetTaskResponse{Task: TaskToPB(t)}, nil
}

// ListTasks lists tasks.
func (s *TaskService) ListTasks(ctx context.Context, req *flasherv1.ListTasksRequest) (*flasherv1.ListTasksResponse, error) {
	tasks, next, err := s.cfg.Store.ListTasks(ctx, filterFromPB(req.GetFilter()), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out := &flasherv1.ListTasksResponse{NextPageToken: next, Tasks: make([]*flasherv1.Task, 0, len(tasks))}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, TaskToPB(t))
	}
	return out, nil
}

// ListTaskEvents returns a task's history.
func (s *TaskService) ListTaskEvents(ctx context.Context, req *flasherv1.ListTaskEventsRequest) (*flasherv1.ListTaskEventsResponse, error) {
	if _, err := s.cfg.Store.GetTask(ctx, req.GetTaskId()); err != nil {
		return nil, s.status(ctx, err)
	}
	evs, err := s.cfg.Store.Events(ctx, req.GetTaskId())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out := &flasherv1.ListTaskEventsResponse{Events: make([]*flasherv1.TaskEvent, 0, len(evs))}
	for _, e := range evs {
		out.Events = append(out.Events, eventToPB(e))
	}
	return out, nil
}

// CancelTask cancels a task.
func (s *TaskService) CancelTask(ctx context.Context, req *flasherv1.CancelTaskRequest) (*flasherv1.CancelTaskResponse, error) {
	reason := req.GetReason()
	if reason == "" {
		reason = "cancelled by " + auth.FromContext(ctx).Name
	} else {
		reason = auth.FromContext(ctx).Name + ": " + reason
	}
	t, err := s.cfg.Queue.Cancel(ctx, req.GetId(), reason)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	s.log.InfoContext(ctx, "task cancel", "task", t.ID, "state", t.State, "by", auth.FromContext(ctx).Name)
	return &flasherv1.CancelTaskResponse{Task: TaskToPB(t)}, nil
}

// WatchTasks streams a snapshot and then every change.
func (s *TaskService) WatchTasks(req *flasherv1.WatchTasksRequest, stream grpc.ServerStreamingServer[flasherv1.WatchTasksResponse]) error {
	ctx := stream.Context()
	filter := filterFromPB(req.GetFilter())
	after := req.GetStartRevision()
	if after == 0 {
		after = -1 // from now, after a snapshot
	}
	if after > s.cfg.Hub.Revision() {
		// Ahead of what the hub delivered: ahead of the store too, or the hub is behind.
		rev, err := s.cfg.Store.Revision(ctx)
		if err != nil {
			return s.status(ctx, err)
		}
		if after > rev {
			return status.Error(codes.OutOfRange, fmt.Sprintf("start_revision %d is ahead of this server's latest revision %d: resume only from a revision a watch delivered", after, rev))
		}
	}
	sub, err := s.cfg.Hub.Subscribe(ctx, after)
	if errors.Is(err, store.ErrCompacted) {
		return compactedStatus(req.GetStartRevision())
	}
	if err != nil {
		return s.status(ctx, err)
	}
	defer sub.Close()

	// sent holds the revision each task was last sent at, so a buffered change older than the
	// snapshot is not sent again and a task that leaves the filter is still followed.
	sent := map[string]int64{}
	last := sub.From()
	if req.GetStartRevision() == 0 {
		if err := s.snapshot(ctx, stream, filter, sent); err != nil {
			return err
		}
		if err := stream.Send(&flasherv1.WatchTasksResponse{Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED, Revision: last}); err != nil {
			return err
		}
	}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			return s.subscriptionEnded(sub.Err(), last)
		case c := <-sub.C():
			last = c.Revision
			rev, followed := sent[c.Task.ID]
			if !followed && !filter.Match(c.Task) {
				continue
			}
			if followed && rev >= c.Revision {
				continue
			}
			sent[c.Task.ID] = c.Revision
			m, err := s.changes.get(c)
			if err != nil {
				return s.status(ctx, err)
			}
			if err := stream.SendMsg(m); err != nil {
				return err
			}
			beat.Reset(s.cfg.Heartbeat)
		case <-beat.C:
			if err := stream.Send(&flasherv1.WatchTasksResponse{Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Revision: last}); err != nil {
				return err
			}
		}
	}
}

func (s *TaskService) snapshot(ctx context.Context, stream grpc.ServerStreamingServer[flasherv1.WatchTasksResponse], f store.Filter, sent map[string]int64) error {
	token := ""
	for {
		tasks, next, err := s.cfg.Store.ListTasks(ctx, f, 500, token)
		if err != nil {
			return s.status(ctx, err)
		}
		for _, t := range tasks {
			sent[t.ID] = t.Revision
			if err := stream.Send(&flasherv1.WatchTasksResponse{Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT, Revision: t.Revision, Task: TaskToPB(t)}); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

func (s *TaskService) subscriptionEnded(err error, last int64) error {
	switch {
	case errors.Is(err, watch.ErrSlowWatcher):
		return status.Error(codes.Aborted, fmt.Sprintf("watcher fell behind; reconnect with start_revision=%d to miss nothing", last))
	case errors.Is(err, store.ErrCompacted):
		return compactedStatus(last)
	case err == nil || errors.Is(err, context.Canceled):
		return status.Error(codes.Unavailable, fmt.Sprintf("server shutting down; reconnect with start_revision=%d", last))
	}
	return status.Error(codes.Internal, "watch ended")
}

func compactedStatus(rev int64) error {
	st := status.New(codes.OutOfRange, fmt.Sprintf("revision %d is no longer kept; start a new watch without start_revision to get a fresh snapshot", rev))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "REVISION_COMPACTED", Domain: "flasher.v1", Metadata: map[string]string{"start_revision": fmt.Sprint(rev)}}); err == nil {
		st = d
	}
	return st.Err()
}
