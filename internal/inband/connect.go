package inband

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// Serve serves one agent stream of serverID (taken from the connection, never from a
// message): Hello, then heartbeats and reports until the agent leaves, the stream goes silent
// for three heartbeat intervals, or the agent reports on a task that was not assigned on this
// stream. It returns nil when the agent closed its side, the stream's context error when the
// connection ended, and an *Error when the service ended the stream.
func (s *Service) Serve(serverID string, stream Stream) error {
	ctx := stream.Context()
	if serverID == "" {
		return refuse(KindDenied, "the connection does not identify an agent's server (no client certificate bound to a server id)")
	}
	lease := 3 * s.cfg.HeartbeatInterval

	// Recv runs on its own goroutine so a silent stream can be ended by its lease: returning
	// from the handler cancels the stream, which ends the pending Recv.
	msgs := make(chan Message)
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

	var hello *Hello
	select {
	case m := <-msgs:
		var ok bool
		if hello, ok = m.(*Hello); !ok {
			return refuse(KindProtocol, "the first message of a stream must be hello")
		}
	case err := <-errc:
		return recvEnd(err)
	case <-timer.C:
		return refuse(KindSilent, "no hello within %s", lease)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errShuttingDown
	}

	now := s.cfg.Now()
	ss := &session{
		serverID: serverID, version: hello.AgentVersion, host: hello.Host,
		comps: agentComponents(hello.Components, now), connected: now,
		done: make(chan struct{}), stream: stream, assigned: map[string]bool{},
	}
	ss.lastSeen.Store(now.UnixNano())
	// The welcome must be the stream's first message: hold the send lock from the moment the
	// session becomes visible to executors until the welcome is out.
	ss.sendMu.Lock()
	if !s.reg.add(ss) {
		ss.sendMu.Unlock()
		s.log.Warn("second agent refused: the server's agent stream is alive", "server", serverID)
		return refuse(KindBusy, "server %s already has a connected agent; retry after it disconnects or its lease (%s) expires", serverID, lease)
	}
	defer func() {
		close(ss.done)
		s.reg.remove(ss)
	}()
	log := s.log.With("server", serverID)
	log.Info("agent connected", "version", ss.version, "components", len(ss.comps))
	err := stream.Welcome(serverID, s.cfg.HeartbeatInterval)
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
			return refuse(KindSilent, "server %s: no message from the agent within %s", serverID, lease)
		case m := <-msgs:
			ss.lastSeen.Store(s.cfg.Now().UnixNano())
			if err := s.handle(ss, m); err != nil {
				log.Warn("agent stream ended", "err", err)
				return err
			}
		}
	}
}

// agentComponents marks an agent's inventory report, read at `at`, as the agent's.
func agentComponents(in []inventory.Component, at time.Time) []inventory.Component {
	out := make([]inventory.Component, len(in))
	for i, c := range in {
		out[i] = inventory.Component{
			Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial,
			Version: c.Version, InBand: true, VersionSource: "agent", VersionAt: at,
		}
	}
	return out
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

// errShuttingDown ends agent streams when the server stops; agents reconnect.
var errShuttingDown = refuse(KindShuttingDown, "server shutting down; reconnect")

// recvEnd maps the end of the agent's side of the stream to Serve's return.
func recvEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// handle routes one message of an established stream. A report on a task that was not
// assigned on this stream ends the stream: an agent can never address another server's task.
func (s *Service) handle(ss *session, m Message) error {
	var taskID string
	switch x := m.(type) {
	case Heartbeat:
		return nil
	case *Hello:
		// A repeated hello refreshes the inventory; the next re-plan uses it.
		now := s.cfg.Now()
		comps := agentComponents(x.Components, now)
		ss.mu.Lock()
		ss.comps = comps
		ss.mu.Unlock()
		s.observe(ss.stream.Context(), inventory.Reading{ServerID: ss.serverID, Source: "agent", At: now, Components: comps})
		return nil
	case Ack:
		taskID = x.TaskID
	case *Progress:
		taskID = x.TaskID
	case *RebootRequired:
		taskID = x.TaskID
	case *Result:
		taskID = x.TaskID
	default:
		return refuse(KindBadMessage, "unknown message")
	}
	if !ss.owns(taskID) {
		return refuse(KindDenied, "task %s was not assigned to server %s on this stream", taskID, ss.serverID)
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
