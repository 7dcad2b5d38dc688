// Package inband is the server side of in-band updates: the sessions host agents
// (flasher-agent) hold, the registry of connected agents, which images an agent may download,
// and the scheduler.Executor for IN_BAND tasks. It assigns a task only to the agent connected for
// that task's server, re-plans against the inventory the agent reports, relays progress, holds
// a lease on each agent stream and fails the task when the agent does not come back in time.
//
// An agent's server id is taken from its connection (the edge passes auth.FromContext's
// ServerID, bound to the agent's client certificate), never from a message.
//
// It never touches hardware and never installs anything itself, and it knows nothing of the wire:
// the gRPC edge (internal/api's AgentService) adapts each agent stream to Stream and the agent's
// messages to this package's (messages.go), and answers an *Error with its status.
package inband

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/scheduler"
)

// Images is what the service needs from the artifact cache: fetching a step's image before it
// is assigned, and reading it back to serve agents. *artifact.Cache implements it.
type Images interface {
	Fetch(ctx context.Context, rawURL, checksum string) (*artifact.Artifact, error)
	Open(checksum string) (io.ReadSeekCloser, int64, error)
}

var _ Images = (*artifact.Cache)(nil)

// Config configures a Service.
type Config struct {
	// Inventory gives the server record and the firmware catalog for re-planning. Required.
	Inventory inventory.Source
	// Planner re-plans against the agent's inventory; nil means plan.NewSourcePlanner(Inventory).
	// Share the API's so that one catalog index serves every plan.
	Planner *plan.SourcePlanner
	// Images is the artifact cache agents download from. Required.
	Images Images
	// ConnectTimeout bounds how long a task waits for its server's agent to be connected when
	// it starts (0 means 5 minutes); then the task fails AGENT_UNAVAILABLE.
	ConnectTimeout time.Duration
	// LostTimeout bounds how long an agent may be away in the middle of a task (0 means 10
	// minutes); then the task fails AGENT_LOST.
	LostTimeout time.Duration
	// RebootTimeout replaces LostTimeout after the agent said it is rebooting the host (0 means
	// 30 minutes).
	RebootTimeout time.Duration
	// HeartbeatInterval is what agents are told to keep; a stream silent for three intervals
	// loses its lease and is closed (0 means 10 seconds).
	HeartbeatInterval time.Duration
	// CancelPoll is how often a running task checks for a cancel to relay (0 means 1 second).
	CancelPoll time.Duration
	// Recorder, when set, records each version the agent verified in the inventory source.
	Recorder inventory.Recorder
	// WriteBack bounds the Recorder's retries (zero: inventory.DefaultWriteBack).
	WriteBack inventory.WriteBackPolicy
	// Observer, when set, is told every inventory an agent reports (hello) and every version
	// it verified after an install (the fleet's observed versions).
	Observer inventory.Observer
	Logger   *slog.Logger
	// Now is the clock for agent records and the service's start, which tells tasks claimed by
	// an earlier process from this one's: it must be the scheduler's clock. nil means time.Now.
	Now func() time.Time
}

// Service serves agent streams and is the IN_BAND executor.
type Service struct {
	cfg Config
	log *slog.Logger
	// started is when the service was created: a task started before it was claimed by an
	// earlier process (see assignRecord).
	started time.Time
	planner *plan.SourcePlanner
	reg     *Registry

	// closing is closed by Shutdown: every agent stream ends, so a stopping server is not held
	// by streams that would otherwise last as long as the agents do.
	closing   chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	runs map[string]*run // task id → the executor run waiting on agent messages
	// images maps a server id to the checksums it may download (counted per run), so an agent
	// can fetch only what was assigned to its own server.
	images map[string]map[string]int
}

var _ scheduler.Executor = (*Service)(nil)

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Inventory == nil {
		return nil, errors.New("inband: Config.Inventory is required")
	}
	if cfg.Images == nil {
		return nil, errors.New("inband: Config.Images is required")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Minute
	}
	if cfg.LostTimeout <= 0 {
		cfg.LostTimeout = 10 * time.Minute
	}
	if cfg.RebootTimeout <= 0 {
		cfg.RebootTimeout = 30 * time.Minute
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.CancelPoll <= 0 {
		cfg.CancelPoll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Planner == nil {
		cfg.Planner = plan.NewSourcePlanner(cfg.Inventory)
	}
	return &Service{
		cfg:     cfg,
		started: cfg.Now(),
		log:     cfg.Logger.With("part", "inband"),
		planner: cfg.Planner,
		reg:     newRegistry(),
		closing: make(chan struct{}),
		runs:    map[string]*run{},
		images:  map[string]map[string]int{},
	}, nil
}

// Shutdown ends every agent stream, now and from now on, with Unavailable: the agents
// reconnect (to this server once it is back, or to another replica). Running tasks are not
// touched; they see their agent go away as after any disconnect.
func (s *Service) Shutdown() { s.closeOnce.Do(func() { close(s.closing) }) }

// Connected reports whether the agent of serverID is connected to this service.
func (s *Service) Connected(serverID string) bool { return s.reg.connected(serverID) }

// Agents lists the connected agents, ordered by server id.
func (s *Service) Agents() []AgentInfo { return s.reg.list() }

func (s *Service) allowImages(serverID string, sums []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.images[serverID]
	if m == nil {
		m = map[string]int{}
		s.images[serverID] = m
	}
	for _, c := range sums {
		m[c]++
	}
}

func (s *Service) revokeImages(serverID string, sums []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.images[serverID]
	for _, c := range sums {
		if m[c]--; m[c] <= 0 {
			delete(m, c)
		}
	}
	if len(m) == 0 {
		delete(s.images, serverID)
	}
}

func (s *Service) imageAllowed(serverID, checksum string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.images[serverID][checksum] > 0
}
