// Package agent is flasher-agent's logic: it holds one AgentService stream to the Flasher
// server, reports the host's inventory, applies the tasks assigned to its host with ironlib and
// reports progress and results. It records every install in its state dir before and after
// applying it, so after a crash, a dropped connection or a reboot it reports what happened and
// never applies the same image twice. It reconnects with jittered exponential backoff.
//
// The agent never decides what to install: the server plans, the agent applies the assignment.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// Version is the agent's version, reported in Hello.
var Version = "dev"

// Config configures an Agent.
type Config struct {
	// Conn is the client connection to the server (built by the caller with its TLS settings).
	Conn grpc.ClientConnInterface
	// ServerID is sent as the x-flasher-server-id header, for servers that run in insecure agent
	// mode only. With mTLS the certificate names the server and this stays empty.
	ServerID string
	// StateDir holds the task records and downloaded images. Required.
	StateDir string
	// Host reads inventory and installs; nil means ironlib.
	Host Host
	// Reboot reboots the host; nil means the reboot is reported but never done.
	Reboot func(ctx context.Context) error
	// BackoffMin and BackoffMax bound the reconnect delay (0: 500ms and 30s).
	BackoffMin, BackoffMax time.Duration
	// HeartbeatInterval is used until the server's welcome names its own (0: 10s).
	HeartbeatInterval time.Duration
	// MaxAttempts bounds installs of one step that were interrupted (0: 2).
	MaxAttempts int
	// ToolPoll bounds how often the agent checks whether a vendor tool left running by an
	// earlier agent process has exited (0: 1s).
	ToolPoll time.Duration
	Logger   *slog.Logger
}

// Agent is a running flasher-agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client flasherv1.AgentServiceClient
	state  *State
	host   Host
	pid    int

	mu     sync.Mutex
	stream flasherv1.AgentService_ConnectClient // the live stream, nil between streams
	sendMu sync.Mutex
	tasks  map[string]*taskRun // running tasks
	wg     sync.WaitGroup
}

// New returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Conn == nil {
		return nil, errors.New("agent: Config.Conn is required")
	}
	st, err := OpenState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if cfg.Host == nil {
		cfg.Host = &Ironlib{}
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 2
	}
	if cfg.ToolPoll <= 0 {
		cfg.ToolPoll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{
		cfg: cfg, log: cfg.Logger.With("part", "agent"),
		client: flasherv1.NewAgentServiceClient(cfg.Conn), state: st, host: cfg.Host, pid: os.Getpid(),
		tasks: map[string]*taskRun{},
	}, nil
}

// callCtx adds the insecure-mode identity header when configured.
func (a *Agent) callCtx(ctx context.Context) context.Context {
	if a.cfg.ServerID == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "x-flasher-server-id", a.cfg.ServerID)
}

// Run holds the stream until ctx ends, reconnecting with jittered exponential backoff that
// resets after every stream the server welcomed. Running tasks outlive streams; Run waits for
// them (they stop at ctx's end) before it returns. Run holds the state dir for this process: a
// second agent on the same state dir does not start.
func (a *Agent) Run(ctx context.Context) error {
	release, err := a.state.lockAgent()
	if err != nil {
		return err
	}
	defer release()
	defer a.wg.Wait()
	bo := a.reconnectBackoff(a.cfg.BackoffMin)
	// A refused identity stays refused until an operator fixes it: retry at the slow end.
	refused := a.reconnectBackoff(a.cfg.BackoffMax)
	for {
		welcomed, err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if welcomed {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied:
			a.log.Error("server refused the agent's identity", "err", err)
			wait = refused.NextBackOff()
		case codes.AlreadyExists:
			a.log.Warn("another agent holds this server's stream; retrying", "err", err)
		default:
			a.log.Warn("stream ended; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		if err := sleep(ctx, wait); err != nil {
			return nil
		}
	}
}

// reconnectBackoff doubles from initial up to BackoffMax, each wait drawn within ±50% so
// restarted agents do not reconnect in lockstep.
func (a *Agent) reconnectBackoff(initial time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: initial, MaxInterval: a.cfg.BackoffMax, Multiplier: 2, RandomizationFactor: 0.5}
}

// session runs one stream: hello, welcome, then heartbeats and the server's messages.
func (a *Agent) session(ctx context.Context) (welcomed bool, err error) {
	inv, err := a.host.Inventory(ctx)
	if err != nil {
		return false, fmt.Errorf("inventory: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := a.client.Connect(a.callCtx(sctx))
	if err != nil {
		return false, err
	}
	if err := stream.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: helloProto(inv)}}); err != nil {
		return false, recvErr(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return false, err
	}
	w := first.GetWelcome()
	if w == nil {
		return false, errors.New("server did not answer hello with a welcome")
	}
	hb := a.cfg.HeartbeatInterval
	if ms := w.GetHeartbeatIntervalMs(); ms > 0 {
		hb = time.Duration(ms) * time.Millisecond
	}
	a.log.Info("connected", "server_id", w.GetServerId(), "heartbeat", hb)
	a.mu.Lock()
	a.stream = stream
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.stream == stream {
			a.stream = nil
		}
		a.mu.Unlock()
	}()

	go func() {
		t := time.NewTicker(hb)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				if err := a.sendOn(stream, &flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Heartbeat{Heartbeat: &flasherv1.AgentHeartbeat{}}}); err != nil {
					return
				}
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, err
		}
		switch x := m.Msg.(type) {
		case *flasherv1.ConnectResponse_Assign:
			a.assigned(ctx, stream, x.Assign)
		case *flasherv1.ConnectResponse_Cancel:
			a.mu.Lock()
			tr := a.tasks[x.Cancel.GetTaskId()]
			a.mu.Unlock()
			if tr != nil {
				tr.cancel.Store(true)
			}
		}
	}
}

// recvErr returns the stream's status when Send failed because the server ended the stream.
func recvErr(stream flasherv1.AgentService_ConnectClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

func (a *Agent) sendOn(stream flasherv1.AgentService_ConnectClient, m *flasherv1.ConnectRequest) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return stream.Send(m)
}

// report sends m on the live stream; between streams it is dropped: the state dir holds the
// truth and the server re-assigns the task after reconnecting, which reports it again.
func (a *Agent) report(m *flasherv1.ConnectRequest) {
	a.mu.Lock()
	stream := a.stream
	a.mu.Unlock()
	if stream == nil {
		return
	}
	if err := a.sendOn(stream, m); err != nil {
		a.log.Debug("report not sent", "err", err)
	}
}

func helloProto(inv *Inventory) *flasherv1.AgentHello {
	h := &flasherv1.AgentHello{AgentVersion: Version, Host: &flasherv1.HostFacts{
		Hostname: inv.Hostname, Vendor: inv.Vendor, Model: inv.Model, Serial: inv.Serial, Os: inv.OS,
	}}
	for _, c := range inv.Components {
		if c.Slug == "" {
			continue
		}
		h.Components = append(h.Components, &flasherv1.AgentComponent{Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version})
	}
	return h
}
