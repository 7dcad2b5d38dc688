package inband

import (
	"context"
	"fmt"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// Stream is one agent connection as the service sees it: the agent's messages in, the
// service's out. The gRPC edge (internal/api) adapts AgentService.Connect to it, so this
// package never sees the wire types.
type Stream interface {
	// Context ends when the connection does.
	Context() context.Context
	// Recv returns the agent's next message; io.EOF when the agent closed its side. A message
	// the edge does not know is an *Error of kind KindBadMessage.
	Recv() (Message, error)
	// Welcome tells the agent its server id and how often to send heartbeats.
	Welcome(serverID string, heartbeat time.Duration) error
	// Assign sends a task's steps to the agent.
	Assign(Assignment) error
	// Cancel asks the agent to stop a task at its next safe point.
	Cancel(taskID string) error
}

// Message is one message from an agent: *Hello, Heartbeat, Ack, *Progress, *RebootRequired or
// *Result.
type Message interface{ agentMessage() }

// Hello opens a stream and repeats whenever the host's inventory changed.
type Hello struct {
	AgentVersion string
	Host         HostFacts
	// Components are what the host holds now: slug, vendor, model, serial and version.
	Components []inventory.Component
}

// HostFacts describe the host an agent runs on, for listings.
type HostFacts struct {
	Hostname, Vendor, Model, Serial string
}

// Heartbeat keeps the stream's lease.
type Heartbeat struct{}

// Ack says the agent received a task's assignment.
type Ack struct{ TaskID string }

// Progress is one step's progress on the host.
type Progress struct {
	TaskID string
	task.Progress
}

// RebootRequired says installed firmware takes effect after a host reboot, and whether the
// agent is rebooting the host now (the task allowed it).
type RebootRequired struct {
	TaskID     string
	Components []string
	Rebooting  bool
}

// Outcome is how an agent's run of a task ended.
type Outcome int

// The outcomes an agent reports.
const (
	OutcomeFailed Outcome = iota
	OutcomeSucceeded
	OutcomeCancelled
)

// Result is the agent's last word on a task.
type Result struct {
	TaskID  string
	Outcome Outcome
	// FailureCode and FailureComponent say why a failed run failed; an empty code is read as
	// INSTALL_FAILED.
	FailureCode      task.Code
	FailureComponent string
	Message          string
	// CancelledAt names the safe point a cancelled run stopped at.
	CancelledAt string
	Components  []ComponentOutcome
}

// ComponentOutcome is what the agent observed on one component at the end of a task.
type ComponentOutcome struct {
	Component, Serial string
	State             task.StepState
	// Version is the version the host reports after the install (re-read, not assumed).
	Version        string
	RebootRequired bool
	Message        string
	Attempt        int
	InstallID      string
}

func (*Hello) agentMessage()          {}
func (Heartbeat) agentMessage()       {}
func (Ack) agentMessage()             {}
func (*Progress) agentMessage()       {}
func (*RebootRequired) agentMessage() {}
func (*Result) agentMessage()         {}

// Assignment is a task's work for the agent.
type Assignment struct {
	TaskID string
	Steps  []AssignedStep
	// AllowReboot lets the agent reboot the host when a step needs it.
	AllowReboot bool
}

// AssignedStep is one install, with the image the agent downloads from the server's cache.
type AssignedStep struct {
	Component, Serial, Vendor, Model string
	FromVersion, ToVersion           string
	// Checksum names the image in the artifact cache ("sha256:…"); Size is its length.
	Checksum string
	Size     int64
	Filename string
	// Force installs even when the host already reports ToVersion, or a lower version.
	Force bool
}

// Kind classifies the service's refusals so that the edge can answer each with its status.
type Kind int

// The kinds of refusal.
const (
	// KindDenied: the agent may not do this (not identified, or not its server's task or image).
	KindDenied Kind = iota + 1
	// KindProtocol: the agent broke the protocol's order (no hello first).
	KindProtocol
	// KindBadMessage: a message the service does not know.
	KindBadMessage
	// KindSilent: the agent sent nothing within its lease.
	KindSilent
	// KindBusy: the server already has a connected agent.
	KindBusy
	// KindShuttingDown: the service is stopping; the agent should reconnect.
	KindShuttingDown
	// KindNotFound: the image is not in the cache.
	KindNotFound
	// KindUnavailable: the image cannot be read now.
	KindUnavailable
)

// Error is a refusal of the service. Msg is a sentence for the agent's operator; Err, when
// set, is the cause, for logs only.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}
