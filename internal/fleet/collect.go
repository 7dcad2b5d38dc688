package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// BMCReader reads a server's installed versions through its BMC, changing nothing
// (outofband.Executor.ReadInventory).
type BMCReader interface {
	ReadInventory(ctx context.Context, srv *inventory.Server) ([]inventory.Component, error)
}

// AgentReports gives the inventory a server's connected agent last reported
// (inband.Service.Reported).
type AgentReports interface {
	Reported(serverID string) ([]inventory.Component, bool)
}

// ServerTurns gives a collect its turn in the one-active-operation-per-server rule
// (scheduler.Scheduler.Hold).
type ServerTurns interface {
	Hold(ctx context.Context, serverID, holder string, busyWith func(taskID string)) (release func(), err error)
}

// Collect failure codes.
const (
	// CodeBMCUnreachable: the BMC could not be read (login, connection, inventory).
	CodeBMCUnreachable = "BMC_READ_FAILED"
	// CodeAgentUnavailable: no agent of the server is connected.
	CodeAgentUnavailable = "AGENT_UNAVAILABLE"
	// CodeNoReader: this server runs no reader for the method.
	CodeNoReader = "UNSUPPORTED"
	// CodeStoreError: the reading could not be stored.
	CodeStoreError = "STORE_ERROR"
)

// CollectState is where one server's collect is.
type CollectState string

// Collect states, as a task's.
const (
	CollectWaiting   CollectState = "WAITING"
	CollectRunning   CollectState = "RUNNING"
	CollectSucceeded CollectState = "SUCCEEDED"
	CollectFailed    CollectState = "FAILED"
)

// Drift is a component whose read version differs from the one Flasher knew before.
type Drift struct {
	Component, Serial string
	// From is the version known before the collect and its source; To the version read.
	From, FromSource, To string
}

// CollectEvent is one step of one server's collect: progress while it waits or reads, then its
// outcome.
type CollectEvent struct {
	CollectID string
	ServerID  string
	Method    task.Method
	State     CollectState
	Message   string
	// Outcome, set on SUCCEEDED and FAILED.
	Code       string
	Components []inventory.Component
	Drift      []Drift
	// Joined says this outcome is another caller's collect of the same server, in flight when
	// this one asked.
	Joined bool
	Time   time.Time
}

// CollectRequest asks for a collect.
type CollectRequest struct {
	Selector Selector
	// Method reads through the BMC (OUT_OF_BAND, the default) or the agent (IN_BAND).
	Method task.Method
	// Concurrency bounds servers read at once (0 means the collector's default).
	Concurrency int
}

// CollectorConfig configures a Collector.
type CollectorConfig struct {
	Fleet  *Fleet
	BMC    BMCReader
	Agents AgentReports
	// Turns, when set, keeps collects and tasks of a server from running at once.
	Turns ServerTurns
	// Concurrency is the default bound on servers read at once (0 means 16).
	Concurrency int
}

// Collector runs collects: read-only inventory reads that become observations.
type Collector struct {
	cfg CollectorConfig

	mu      sync.Mutex
	flights map[string]*flight // server id → the collect in flight
}

type flight struct {
	done chan struct{}
	last CollectEvent
}

// NewCollector returns a Collector.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	if cfg.Fleet == nil {
		return nil, errors.New("fleet: CollectorConfig.Fleet is required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	return &Collector{cfg: cfg, flights: map[string]*flight{}}, nil
}

// Collect reads the selected servers' installed versions, at most Concurrency at once, and
// stores them as observations. It calls emit (from several goroutines, never at once) with
// every event, and returns the outcome of each server in id order. A selector error or an
// unknown method is returned before anything is read.
func (c *Collector) Collect(ctx context.Context, req CollectRequest, emit func(CollectEvent)) ([]CollectEvent, error) {
	if req.Method == "" {
		req.Method = task.MethodOutOfBand
	}
	if !req.Method.Valid() {
		return nil, &SelectorError{Field: "method", Reason: fmt.Sprintf("unknown method %q", req.Method)}
	}
	if err := req.Selector.Validate(); err != nil {
		return nil, err
	}
	all, err := c.cfg.Fleet.cfg.Inventory.Servers(ctx)
	if err != nil {
		return nil, err
	}
	servers, err := req.Selector.Select(all)
	if err != nil {
		return nil, err
	}
	n := req.Concurrency
	if n <= 0 {
		n = c.cfg.Concurrency
	}
	var emitMu sync.Mutex
	send := func(ev CollectEvent) {
		if emit != nil {
			emitMu.Lock()
			emit(ev)
			emitMu.Unlock()
		}
	}
	out := make([]CollectEvent, len(servers))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, srv := range servers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = c.one(ctx, srv, req.Method, send)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// one collects one server, or joins its collect in flight.
func (c *Collector) one(ctx context.Context, srv *inventory.Server, m task.Method, send func(CollectEvent)) CollectEvent {
	c.mu.Lock()
	if f := c.flights[srv.ID]; f != nil {
		c.mu.Unlock()
		send(CollectEvent{ServerID: srv.ID, Method: m, State: CollectWaiting, Message: "a collect of this server is in flight: joining it", Time: c.cfg.Fleet.cfg.Now()})
		select {
		case <-f.done:
			ev := f.last
			ev.Joined = true
			send(ev)
			return ev
		case <-ctx.Done():
			return c.failed(CollectEvent{ServerID: srv.ID, Method: m}, "CANCELLED", ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	c.flights[srv.ID] = f
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.flights, srv.ID)
		c.mu.Unlock()
		close(f.done)
	}()
	f.last = c.run(ctx, srv, m, send)
	send(f.last)
	return f.last
}

func (c *Collector) run(ctx context.Context, srv *inventory.Server, m task.Method, send func(CollectEvent)) CollectEvent {
	fl := c.cfg.Fleet
	ev := CollectEvent{CollectID: newCollectID(), ServerID: srv.ID, Method: m}
	if t := c.cfg.Turns; t != nil {
		release, err := t.Hold(ctx, srv.ID, "collect:"+ev.CollectID, func(taskID string) {
			w := ev
			w.State, w.Message, w.Time = CollectWaiting, "waiting for task "+taskID+", active on the server", fl.cfg.Now()
			send(w)
		})
		if err != nil {
			return c.failed(ev, "CANCELLED", err)
		}
		defer release()
	}
	r := ev
	r.State, r.Time = CollectRunning, fl.cfg.Now()
	r.Message = "reading the installed versions through the BMC"
	if m == task.MethodInBand {
		r.Message = "reading the inventory the agent reported"
	}
	send(r)

	before, err := fl.cfg.Store.CurrentObservations(ctx, []string{srv.ID})
	if err != nil {
		return c.failed(ev, CodeStoreError, err)
	}
	var comps []inventory.Component
	var src store.Source
	switch m {
	case task.MethodInBand:
		if c.cfg.Agents == nil {
			return c.failed(ev, CodeNoReader, errors.New("this server runs no in-band service"))
		}
		var ok bool
		if comps, ok = c.cfg.Agents.Reported(srv.ID); !ok {
			return c.failed(ev, CodeAgentUnavailable, fmt.Errorf("server %s: no agent connected", srv.ID))
		}
		src = store.SourceAgent
	default:
		if c.cfg.BMC == nil {
			return c.failed(ev, CodeNoReader, errors.New("this server runs no out-of-band executor"))
		}
		if comps, err = c.cfg.BMC.ReadInventory(ctx, srv); err != nil {
			return c.failed(ev, CodeBMCUnreachable, err)
		}
		src = store.SourceBMC
	}
	at := fl.cfg.Now()
	if len(comps) > 0 && !comps[0].VersionAt.IsZero() {
		at = comps[0].VersionAt
	}
	if err := fl.Observe(ctx, inventory.Reading{ServerID: srv.ID, Source: string(src), CollectID: ev.CollectID, At: at, Components: comps}); err != nil {
		return c.failed(ev, CodeStoreError, err)
	}
	ev.State, ev.Time, ev.Components = CollectSucceeded, fl.cfg.Now(), comps
	ev.Drift = drift(srv, before, comps)
	ev.Message = fmt.Sprintf("read %d components", len(comps))
	if len(ev.Drift) > 0 {
		ev.Message += fmt.Sprintf("; %d differ from what Flasher knew", len(ev.Drift))
	}
	return ev
}

func (c *Collector) failed(ev CollectEvent, code string, err error) CollectEvent {
	ev.State, ev.Code, ev.Message, ev.Time = CollectFailed, code, err.Error(), c.cfg.Fleet.cfg.Now()
	return ev
}

// drift lists the components read whose version differs from the freshest known before: the
// previous observation, else the declared version.
func drift(srv *inventory.Server, before []store.Observation, read []inventory.Component) []Drift {
	known := Overlay(srv, before)
	prev := map[string]inventory.Component{}
	for i, k := range Instances(known.Components) {
		prev[k] = known.Components[i]
	}
	for _, o := range before {
		if _, ok := prev[o.Instance]; !ok {
			prev[o.Instance] = inventory.Component{Slug: o.Component, Serial: o.Serial, Version: o.Version, VersionSource: string(o.Source)}
		}
	}
	var out []Drift
	for i, k := range Instances(read) {
		c := read[i]
		p, ok := prev[k]
		if !ok || strings.TrimSpace(p.Version) == strings.TrimSpace(c.Version) {
			continue
		}
		out = append(out, Drift{Component: c.Slug, Serial: c.Serial, From: p.Version, FromSource: p.VersionSource, To: c.Version})
	}
	return out
}

func newCollectID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "collect-" + hex.EncodeToString(b[:])
}
