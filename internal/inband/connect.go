package inband

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/inventory"
)

// Connect serves one agent stream: Hello, then heartbeats and reports until the agent leaves,
// the stream goes silent for three heartbeat intervals, or the agent reports on a task that
// was not assigned on this stream.
func (s *Service) Connect(stream flasherv1.AgentService_ConnectServer) error {
	err := s.connect(stream)
	if errors.Is(err, context.Canceled) {
		// The agent went away (or the server is stopping): an ordinary end of a stream, not an
		// unknown error.
		return status.Error(codes.Canceled, "stream ended")
	}
	return err
}

func (s *Service) connect(stream flasherv1.AgentService_ConnectServer) error {
	ctx := stream.Context()
	serverID := auth.FromContext(ctx).ServerID
	if serverID == "" {
		return status.Error(codes.PermissionDenied, "the connection does not identify an agent's server (no client certificate bound to a server id)")
	}
	lease := 3 * s.cfg.HeartbeatInterval

	// Recv runs on its own goroutine so a silent stream can be ended by its lease: returning
	// from the handler cancels the stream, which ends the pending Recv.
	msgs := make(chan *flasherv1.ConnectRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	timer := time.NewTimer(lease)
	defer timer.Stop()

	var hello *flasherv1.AgentHello
	select {
	case m := <-msgs:
		hello = m.GetHello()
		if hello == nil {
			return status.Error(codes.FailedPrecondition, "the first message of a stream must be hello")
		}
	case err := <-errc:
		return recvEnd(err)
	case <-timer.C:
		return status.Errorf(codes.DeadlineExceeded, "no hello within %s", lease)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errShuttingDown
	}

	now := s.cfg.Now()
	ss := &session{
		serverID: serverID, version: hello.GetAgentVersion(), host: hello.GetHost(),
		comps: componentsFromProto(hello.GetComponents(), now), connected: now,
		done: make(chan struct{}), stream: stream, assigned: map[string]bool{},
	}
	ss.lastSeen.Store(now.UnixNano())
	// The welcome must be the stream's first message: hold the send lock from the moment the
	// session becomes visible to executors until the welcome is out.
	ss.sendMu.Lock()
	if !s.reg.add(ss) {
		ss.sendMu.Unlock()
		s.log.Warn("second agent refused: the server's agent stream is alive", "server", serverID)
		return status.Errorf(codes.AlreadyExists, "server %s already has a connected agent; retry after it disconnects or its lease (%s) expires", serverID, lease)
	}
	defer func() {
		close(ss.done)
		s.reg.remove(ss)
	}()
	log := s.log.With("server", serverID)
	log.Info("agent connected", "version", ss.version, "components", len(ss.comps))
	err := stream.Send(&flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Welcome{Welcome: &flasherv1.AgentWelcome{
		ServerId: serverID, HeartbeatIntervalMs: s.cfg.HeartbeatInterval.Milliseconds(),
	}}})
	ss.sendMu.Unlock()
	if err != nil {
		return err
	}
	s.observe(ctx, inventory.Reading{ServerID: serverID, Source: "agent", At: now, Components: ss.comps})

	for {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(lease)
		select {
		case <-ctx.Done():
			log.Info("agent disconnected")
			return ctx.Err()
		case <-s.closing:
			log.Info("agent stream closed: server shutting down")
			return errShuttingDown
		case err := <-errc:
			log.Info("agent disconnected", "err", err)
			return recvEnd(err)
		case <-timer.C:
			log.Warn("agent lease expired: no message within the lease", "lease", lease)
			return status.Errorf(codes.DeadlineExceeded, "server %s: no message from the agent within %s", serverID, lease)
		case m := <-msgs:
			ss.lastSeen.Store(s.cfg.Now().UnixNano())
			if err := s.handle(ss, m); err != nil {
				log.Warn("agent stream ended", "err", err)
				return err
			}
		}
	}
}

// observe hands an agent's report to the Observer; a failure is logged, the stream goes on.
func (s *Service) observe(ctx context.Context, r inventory.Reading) {
	if o := s.cfg.Observer; o != nil && len(r.Components) > 0 {
		if err := o.Observe(ctx, r); err != nil {
			s.log.Warn("record the agent's versions", "server", r.ServerID, "err", err)
		}
	}
}

// Reported returns the inventory the server's connected agent last reported and when, or
// ok=false when no agent of the server is connected.
func (s *Service) Reported(serverID string) (comps []inventory.Component, ok bool) {
	ss, _ := s.reg.current(serverID)
	if ss == nil {
		return nil, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]inventory.Component(nil), ss.comps...), true
}

// errShuttingDown ends agent streams when the server stops; agents reconnect on Unavailable.
var errShuttingDown = status.Error(codes.Unavailable, "server shutting down; reconnect")

// recvEnd maps the end of the agent's side of the stream to the handler's return.
func recvEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// handle routes one message of an established stream. A report on a task that was not
// assigned on this stream ends the stream: an agent can never address another server's task.
func (s *Service) handle(ss *session, m *flasherv1.ConnectRequest) error {
	var taskID string
	switch x := m.Msg.(type) {
	case *flasherv1.ConnectRequest_Heartbeat:
		return nil
	case *flasherv1.ConnectRequest_Hello:
		// A repeated hello refreshes the inventory; the next re-plan uses it.
		now := s.cfg.Now()
		comps := componentsFromProto(x.Hello.GetComponents(), now)
		ss.mu.Lock()
		ss.comps = comps
		ss.mu.Unlock()
		s.observe(ss.stream.Context(), inventory.Reading{ServerID: ss.serverID, Source: "agent", At: now, Components: comps})
		return nil
	case *flasherv1.ConnectRequest_Ack:
		taskID = x.Ack.GetTaskId()
	case *flasherv1.ConnectRequest_Progress:
		taskID = x.Progress.GetTaskId()
	case *flasherv1.ConnectRequest_RebootRequired:
		taskID = x.RebootRequired.GetTaskId()
	case *flasherv1.ConnectRequest_Result:
		taskID = x.Result.GetTaskId()
	default:
		return status.Error(codes.InvalidArgument, "unknown message")
	}
	if !ss.owns(taskID) {
		return status.Error(codes.PermissionDenied, fmt.Sprintf("task %s was not assigned to server %s on this stream", taskID, ss.serverID))
	}
	s.mu.Lock()
	r := s.runs[taskID]
	s.mu.Unlock()
	if r == nil {
		return nil // the task ended meanwhile; a late report changes nothing
	}
	select {
	case r.events <- event{sess: ss, msg: m}:
	case <-r.done:
	case <-ss.stream.Context().Done():
	}
	return nil
}
