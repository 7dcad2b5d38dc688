package agent_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// server is the server's half of AgentService on loopback, as the agent sees it: it welcomes
// every stream, (re-)assigns every task without a result on each new stream, as the real
// server does after a reconnect, serves images by checksum and records what the agent reports.
type server struct {
	flasherv1.UnimplementedAgentServiceServer
	t    *testing.T
	addr string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	tasks    []*flasherv1.Assignment
	images   map[string][]byte
	streams  int
	live     grpc.BidiStreamingServer[flasherv1.ConnectRequest, flasherv1.ConnectResponse]
	liveSend sync.Mutex
	hello    *flasherv1.AgentHello
	progress []*flasherv1.AgentProgress
	results  map[string][]*flasherv1.AgentResult
	reboots  []*flasherv1.RebootRequired
	acks     int
}

func startServer(t *testing.T) *server {
	t.Helper()
	s := &server{t: t, changed: make(chan struct{}), images: map[string][]byte{}, results: map[string][]*flasherv1.AgentResult{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	g := grpc.NewServer()
	flasherv1.RegisterAgentServiceServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s
}

func (s *server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor waits until cond (called under the lock) holds.
func (s *server) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.t.Fatalf("not seen within %s: %s", timeout, what)
		}
	}
}

// step makes an image of version for component on host, serves it, and returns the step that
// installs it.
func (s *server) step(h *hosttools.Host, component, version string) *flasherv1.AssignedStep {
	s.t.Helper()
	img, err := h.MakeUpdateImage(component, version)
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		s.t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	checksum := "sha256:" + hex.EncodeToString(sum[:])
	vendor := "Supermicro"
	if h.Profile == hosttools.DellR6515 {
		vendor = "Dell Inc."
	}
	s.mu.Lock()
	s.images[checksum] = b
	s.mu.Unlock()
	return &flasherv1.AssignedStep{Component: component, Vendor: vendor, ToVersion: version, Checksum: checksum,
		Size: int64(len(b)), Filename: filepath.Base(img)}
}

// assign assigns a task of one step installing version on component, changed by opts.
func (s *server) assign(h *hosttools.Host, component, version string, opts ...func(*flasherv1.Assignment)) *flasherv1.Assignment {
	s.t.Helper()
	as := &flasherv1.Assignment{TaskId: uuid.NewString(), Steps: []*flasherv1.AssignedStep{s.step(h, component, version)}}
	for _, o := range opts {
		o(as)
	}
	s.mu.Lock()
	s.tasks = append(s.tasks, as)
	live := s.live
	s.mu.Unlock()
	if live != nil {
		s.send(live, &flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Assign{Assign: as}})
	}
	return as
}

func (s *server) send(st grpc.BidiStreamingServer[flasherv1.ConnectRequest, flasherv1.ConnectResponse], m *flasherv1.ConnectResponse) {
	s.liveSend.Lock()
	defer s.liveSend.Unlock()
	_ = st.Send(m)
}

// cancel sends a cancel for the task on the live stream.
func (s *server) cancel(taskID string) {
	s.mu.Lock()
	live := s.live
	s.mu.Unlock()
	if live == nil {
		s.t.Fatal("cancel: no agent connected")
	}
	s.send(live, &flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Cancel{Cancel: &flasherv1.CancelAssignment{TaskId: taskID}}})
}

// result waits for the task's first result.
func (s *server) result(taskID string) *flasherv1.AgentResult {
	s.t.Helper()
	s.waitFor("result of task "+taskID, func() bool { return len(s.results[taskID]) > 0 })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.results[taskID][0]
}

// progressOf returns the progress reports of a task so far.
func (s *server) progressOf(taskID string) []*flasherv1.AgentProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*flasherv1.AgentProgress
	for _, p := range s.progress {
		if p.GetTaskId() == taskID {
			out = append(out, p)
		}
	}
	return out
}

func (s *server) Connect(st grpc.BidiStreamingServer[flasherv1.ConnectRequest, flasherv1.ConnectResponse]) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "hello first")
	}
	if err := st.Send(&flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Welcome{Welcome: &flasherv1.AgentWelcome{ServerId: "srv", HeartbeatIntervalMs: 200}}}); err != nil {
		return err
	}
	s.mu.Lock()
	s.streams++
	s.hello = first.GetHello()
	s.live = st
	var pending []*flasherv1.Assignment
	for _, as := range s.tasks {
		if len(s.results[as.GetTaskId()]) == 0 {
			pending = append(pending, as)
		}
	}
	s.notify()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.live == st {
			s.live = nil
		}
		s.notify()
		s.mu.Unlock()
	}()
	for _, as := range pending {
		s.send(st, &flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Assign{Assign: as}})
	}
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		switch x := m.Msg.(type) {
		case *flasherv1.ConnectRequest_Ack:
			s.acks++
		case *flasherv1.ConnectRequest_Progress:
			s.progress = append(s.progress, x.Progress)
		case *flasherv1.ConnectRequest_Result:
			s.results[x.Result.GetTaskId()] = append(s.results[x.Result.GetTaskId()], x.Result)
		case *flasherv1.ConnectRequest_RebootRequired:
			s.reboots = append(s.reboots, x.RebootRequired)
		}
		s.notify()
		s.mu.Unlock()
	}
}

func (s *server) FetchArtifact(req *flasherv1.FetchArtifactRequest, st grpc.ServerStreamingServer[flasherv1.FetchArtifactResponse]) error {
	s.mu.Lock()
	b, ok := s.images[req.GetChecksum()]
	s.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "no image %s", req.GetChecksum())
	}
	const chunk = 1024
	for off := req.GetOffset(); off < int64(len(b)); off += chunk {
		end := min(off+chunk, int64(len(b)))
		if err := st.Send(&flasherv1.FetchArtifactResponse{Offset: off, Data: b[off:end], Size: int64(len(b))}); err != nil {
			return err
		}
	}
	return nil
}
