// Package audit keeps Flasher's audit trail: who did what to which server or task, when, and
// with what outcome, for every mutating API call and every agent connection. Events go to the
// structured log and to a queryable store (SQLite or memory). The package records; it never
// decides whether a call is allowed (that is internal/auth) and never stores request bodies,
// so no secret a request might carry reaches the trail.
package audit

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/flasher-dev/flasher/internal/auth"
)

// Actions recorded for agent sessions; API calls are recorded under their full gRPC method.
const (
	ActionAgentConnect    = "agent.connect"
	ActionAgentDisconnect = "agent.disconnect"
)

// Event is one audit record.
type Event struct {
	// ID orders events; assigned by the store.
	ID       int64
	Time     time.Time
	Identity string
	// Action is the full gRPC method ("/flasher.v1.TaskService/CreateTask") or an agent action.
	Action   string
	ServerID string
	TaskID   string
	// Code is the outcome as a gRPC code name ("OK", "PermissionDenied", ...).
	Code    string
	Message string
	// Peer is the caller's network address.
	Peer string
}

// Filter selects events. Zero fields match everything.
type Filter struct {
	Identity string
	Action   string
	ServerID string
	TaskID   string
	// Since (inclusive) and Until (exclusive) bound the event time.
	Since, Until time.Time
	// BeforeID pages backwards: only events with a smaller ID.
	BeforeID int64
	// Limit caps the result (0: DefaultLimit; at most MaxLimit).
	Limit int
}

// Query limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

func (f Filter) limit() int {
	switch {
	case f.Limit <= 0:
		return DefaultLimit
	case f.Limit > MaxLimit:
		return MaxLimit
	}
	return f.Limit
}

func (f Filter) match(e Event) bool {
	return (f.Identity == "" || e.Identity == f.Identity) &&
		(f.Action == "" || e.Action == f.Action) &&
		(f.ServerID == "" || e.ServerID == f.ServerID) &&
		(f.TaskID == "" || e.TaskID == f.TaskID) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until)) &&
		(f.BeforeID == 0 || e.ID < f.BeforeID)
}

// Store keeps events. Query returns the newest matching events first.
type Store interface {
	Append(ctx context.Context, e Event) (int64, error)
	Query(ctx context.Context, f Filter) ([]Event, error)
	Close() error
}

// Config configures the audit log.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Mutating decides which methods the interceptors record (nil: IsMutating).
	Mutating func(fullMethod string) bool
	// Sessions decides which stream methods are agent sessions, recorded as connect and
	// disconnect (nil: AgentService/Connect).
	Sessions func(fullMethod string) bool
}

// Log records audit events.
type Log struct {
	cfg Config
	log *slog.Logger
}

// New returns an audit log; Store is required.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Mutating == nil {
		cfg.Mutating = IsMutating
	}
	if cfg.Sessions == nil {
		cfg.Sessions = func(m string) bool { return m == "/flasher.v1.AgentService/Connect" }
	}
	return &Log{cfg: cfg, log: cfg.Logger.With("part", "audit")}, nil
}

// mutatingVerbs start the names of methods that change state. Naming new RPCs with these verbs
// (StartRollout, PauseRollout, ...) puts them in the trail with no change here.
var mutatingVerbs = []string{"Create", "Cancel", "Delete", "Update", "Start", "Pause", "Resume", "Abort", "Approve", "Revoke", "Set", "Retry", "Enroll"}

// IsMutating reports whether a full gRPC method changes state, by its verb.
func IsMutating(fullMethod string) bool {
	name := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	for _, v := range mutatingVerbs {
		if strings.HasPrefix(name, v) {
			return true
		}
	}
	return false
}

// Record stores e (stamping its time and, when empty, the caller's identity and address) and
// writes it to the log. A store failure is logged and returned; the call it describes has
// already happened, so callers do not undo anything.
func (l *Log) Record(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = l.cfg.Now()
	}
	if e.Identity == "" {
		e.Identity = auth.FromContext(ctx).Name
	}
	if e.Peer == "" {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			e.Peer = p.Addr.String()
		}
	}
	if e.Code == "" {
		e.Code = codes.OK.String()
	}
	l.log.InfoContext(ctx, "audit", "identity", e.Identity, "action", e.Action, "server", e.ServerID,
		"task", e.TaskID, "code", e.Code, "message", e.Message, "peer", e.Peer)
	if _, err := l.cfg.Store.Append(context.WithoutCancel(ctx), e); err != nil {
		l.log.ErrorContext(ctx, "audit event not stored", "action", e.Action, "identity", e.Identity, "error", err)
		return err
	}
	return nil
}

// AgentConnected records an agent session start for serverID.
func (l *Log) AgentConnected(ctx context.Context, serverID string) error {
	return l.Record(ctx, Event{Action: ActionAgentConnect, ServerID: serverID})
}

// AgentDisconnected records an agent session end with the stream's outcome.
func (l *Log) AgentDisconnected(ctx context.Context, serverID string, err error) error {
	st := status.Convert(err)
	return l.Record(ctx, Event{Action: ActionAgentDisconnect, ServerID: serverID, Code: st.Code().String(), Message: short(st.Message())})
}

// Query returns the newest events matching f.
func (l *Log) Query(ctx context.Context, f Filter) ([]Event, error) {
	return l.cfg.Store.Query(ctx, f)
}

// short bounds messages kept in the trail.
func short(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}
