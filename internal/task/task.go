// Package task owns Flasher's task model: what a firmware-install task is, the states it moves
// through and the rules for moving between them. It is pure: no I/O, no clocks of its own, no
// generated protobuf types. The store persists tasks, the scheduler drives them, internal/api
// converts them to and from the wire.
package task

import (
	"fmt"
	"time"
)

// State is where a task is in its life.
type State string

// Task states. QUEUED → ACTIVE → SUCCEEDED | FAILED, and CANCELLED from QUEUED or ACTIVE.
const (
	StateQueued    State = "QUEUED"
	StateActive    State = "ACTIVE"
	StateSucceeded State = "SUCCEEDED"
	StateFailed    State = "FAILED"
	StateCancelled State = "CANCELLED"
)

// Terminal reports whether no further transition is possible from s.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	switch s {
	case StateQueued, StateActive, StateSucceeded, StateFailed, StateCancelled:
		return true
	}
	return false
}

// Method says who applies the firmware: the server through the BMC, or the agent on the host.
type Method string

// Install methods.
const (
	MethodOutOfBand Method = "OUT_OF_BAND"
	MethodInBand    Method = "IN_BAND"
)

// Valid reports whether m is a known method.
func (m Method) Valid() bool { return m == MethodOutOfBand || m == MethodInBand }

// InstallMode says how the firmware to install was chosen.
type InstallMode string

// Install modes, after the sh.hollow.flasher.task payload.
const (
	// ModeFirmware installs an explicit list of firmware; firmware sets are ignored.
	ModeFirmware InstallMode = "FIRMWARE"
	// ModeFirmwareSet installs the members of a named firmware set that differ from what is installed.
	ModeFirmwareSet InstallMode = "FIRMWARE_SET"
	// ModeResolve finds the one firmware set whose labels match the server's vendor and model.
	ModeResolve InstallMode = "RESOLVE"
)

// Valid reports whether m is a known install mode.
func (m InstallMode) Valid() bool {
	return m == ModeFirmware || m == ModeFirmwareSet || m == ModeResolve
}

// Action is something done to the server before or after a component is flashed.
type Action string

// Pre- and post-install actions.
const (
	ActionResetBMC       Action = "RESET_BMC"
	ActionResetHost      Action = "RESET_HOST"
	ActionPowerOffHost   Action = "POWER_OFF_HOST"
	ActionPowerCycleHost Action = "POWER_CYCLE_HOST"
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	switch a {
	case ActionResetBMC, ActionResetHost, ActionPowerOffHost, ActionPowerCycleHost:
		return true
	}
	return false
}

// MaxPriority is the highest task priority; 0 is the lowest.
const MaxPriority = 3

// Firmware is one requested (explicit mode) or resolved (set and resolve modes) install:
// the Firmware items of the sh.hollow.flasher.task payload.
type Firmware struct {
	// Component is the component slug ("BMC", "BIOS", "NIC", "Drive", ...).
	Component string `json:"component"`
	// Serial selects one instance when a server has several of the component; empty means all.
	Serial   string `json:"serial,omitempty"`
	Vendor   string `json:"vendor,omitempty"`
	Model    string `json:"model,omitempty"`
	Version  string `json:"version"`
	URL      string `json:"url,omitempty"`
	Checksum string `json:"checksum,omitempty"` // "sha256:<hex>", "sha512:<hex>" or "md5:<hex>"
	// FirmwareID is the catalog record the item resolved to, when there is one.
	FirmwareID string `json:"firmware_id,omitempty"`
	// Force allows what the planner cannot vouch for: a downgrade, a change between versions
	// that have no order, or an image of a version the catalog does not know.
	Force bool `json:"force,omitempty"`
	// Reinstall flashes the component even when it already runs the version.
	Reinstall   bool     `json:"reinstall,omitempty"`
	PreActions  []Action `json:"pre_actions,omitempty"`
	PostActions []Action `json:"post_actions,omitempty"`
}

// Installed is a component instance and the version it had when it was read.
type Installed struct {
	Component string `json:"component"`
	Serial    string `json:"serial,omitempty"`
	Vendor    string `json:"vendor,omitempty"`
	Model     string `json:"model,omitempty"`
	Version   string `json:"version"`
}

// Step is one component instance to flash, in plan order.
type Step struct {
	Component   string `json:"component"`
	Serial      string `json:"serial,omitempty"`
	Vendor      string `json:"vendor,omitempty"`
	Model       string `json:"model,omitempty"`
	FromVersion string `json:"from_version"`
	ToVersion   string `json:"to_version"`
	// Scheme is the version scheme of the component's firmware line ("dotted", "semver"…), so
	// that verification compares the version read back exactly as planning compared it
	// (firmware.Same). Empty for plans stored before it existed: compare the text.
	Scheme       string `json:"scheme,omitempty"`
	FirmwareID   string `json:"firmware_id,omitempty"`
	Filename     string `json:"filename,omitempty"`
	URL          string `json:"url"`
	Checksum     string `json:"checksum"`
	Method       Method `json:"method"`
	Force        bool   `json:"force,omitempty"`
	Downgrade    bool   `json:"downgrade,omitempty"`
	Reinstall    bool   `json:"reinstall,omitempty"`
	Irreversible bool   `json:"irreversible,omitempty"`
	// Uncatalogued: the image is the request's own, for a version no catalog record describes,
	// so no requirements or preconditions are known for it. Planned only with Force.
	Uncatalogued bool     `json:"uncatalogued,omitempty"`
	PreActions   []Action `json:"pre_actions,omitempty"`
	PostActions  []Action `json:"post_actions,omitempty"`
	// FromSource and FromAt say where FromVersion was read and when (see Installed).
	FromSource string    `json:"from_source,omitempty"`
	FromAt     time.Time `json:"from_at,omitzero"`
	// Path is how an OUT_OF_BAND step reaches the BMC (PathBMCLib, PathRedfishUpdate); empty
	// for in-band steps and for plans stored before it existed (bmclib).
	Path string `json:"path,omitempty"`
	// Activation says how the installed image becomes the running one, once the executor has
	// read what the BMC supports (ActivationImmediate, ActivationResetBMC, ActivationHostReboot);
	// empty until then.
	Activation string `json:"activation,omitempty"`
}

// Out-of-band update paths.
const (
	// PathBMCLib flashes through a bmclib provider (Dell, OpenBMC and what else is registered).
	PathBMCLib = "bmclib"
	// PathRedfishUpdate flashes through the BMC's standard Redfish UpdateService (HPE iLO,
	// Lenovo XCC, BMCs no bmclib provider flashes).
	PathRedfishUpdate = "redfish-update"
)

// Activations: how an installed image starts running.
const (
	// ActivationImmediate: the BMC applies and activates the image by itself (a BMC image
	// reboots the BMC into it).
	ActivationImmediate = "immediate"
	// ActivationResetBMC: the BMC only stages the image (apply time OnReset); Flasher resets the
	// BMC to activate it, then verifies.
	ActivationResetBMC = "reset-bmc"
	// ActivationHostReboot: the BMC applies the image at the next host boot; Flasher restarts
	// the host once.
	ActivationHostReboot = "host-reboot"
)

// Skip is a component the plan leaves alone, and why.
type Skip struct {
	Component string `json:"component"`
	Serial    string `json:"serial,omitempty"`
	Version   string `json:"version,omitempty"`
	Reason    string `json:"reason"`
	// VersionSource and VersionAt say where Version was read and when: "bmc" or "agent" for a
	// version Flasher read, "declared" for an inventory source's (VersionAt zero when the source
	// keeps no time).
	VersionSource string    `json:"version_source,omitempty"`
	VersionAt     time.Time `json:"version_at,omitzero"`
}

// Plan is what a task will flash, in order, computed before any hardware is touched.
type Plan struct {
	FirmwareSet string      `json:"firmware_set,omitempty"`
	Steps       []Step      `json:"steps"`
	Skipped     []Skip      `json:"skipped,omitempty"`
	Snapshot    []Installed `json:"snapshot,omitempty"`
}

// StepState is where one component's install is.
type StepState string

// Component progress states.
const (
	StepPending   StepState = "PENDING"
	StepRunning   StepState = "RUNNING"
	StepSucceeded StepState = "SUCCEEDED"
	StepFailed    StepState = "FAILED"
	StepSkipped   StepState = "SKIPPED"
)

// Progress is the live state of one component instance's install.
type Progress struct {
	Component string    `json:"component"`
	Serial    string    `json:"serial,omitempty"`
	State     StepState `json:"state"`
	// Step names the current install step ("download", "upload-initiate-install", "install-status", ...).
	Step    string `json:"step,omitempty"`
	Percent int    `json:"percent"`
	Message string `json:"message,omitempty"` // the BMC's or agent's own words
	Attempt int    `json:"attempt,omitempty"`
	// JobID is the BMC's task/job id or the agent's install id for this component, recorded
	// before waiting on it so a restarted executor asks about the same job instead of
	// uploading again.
	JobID     string    `json:"job_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Failure says why a task failed: a stable code for programs, the component it concerns and a
// message for people.
type Failure struct {
	Code      Code   `json:"code"`
	Component string `json:"component,omitempty"`
	Message   string `json:"message"`
}

// Task is one request to install firmware on one server.
type Task struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id,omitempty"`
	ServerID  string `json:"server_id"`
	Method    Method `json:"method"`
	Priority  int    `json:"priority"`
	Requester string `json:"requester"`
	Worker    string `json:"worker,omitempty"`
	// RolloutID names the rollout that created the task; "" for a task created on its own.
	RolloutID string `json:"rollout_id,omitempty"`
	// TraceID and TraceSpanID name the span of the call that created the task (W3C trace
	// context, hex) when tracing was on, so the task's own span joins that trace.
	TraceID     string `json:"trace_id,omitempty"`
	TraceSpanID string `json:"trace_span_id,omitempty"`

	Mode        InstallMode `json:"mode"`
	FirmwareSet string      `json:"firmware_set,omitempty"` // requested, or resolved in RESOLVE mode
	Firmware    []Firmware  `json:"firmware,omitempty"`     // requested, or resolved from the set
	// Force allows downgrades and unorderable changes of every member of the set, Reinstall
	// reflashes members already at their version (set and resolve modes).
	Force     bool `json:"force,omitempty"`
	Reinstall bool `json:"reinstall,omitempty"`
	// Plan is the plan the operator was shown (PlanTask, CreateTask). It is never rewritten.
	Plan *Plan `json:"plan,omitempty"`
	// Replans are the plans executors computed against live versions, one each time the task
	// started or resumed, oldest first. The first one's Snapshot is the snapshot taken before
	// the first step; a resume records its own re-plan beside it.
	Replans []Plan `json:"replans,omitempty"`

	State    State      `json:"state"`
	Progress []Progress `json:"progress,omitempty"`
	Failure  *Failure   `json:"failure,omitempty"`
	// CancelRequested is set when a cancel arrives for an ACTIVE task; the executor stops at
	// its next safe point.
	CancelRequested bool `json:"cancel_requested,omitempty"`

	// Revision is the store-wide revision of the task's latest change.
	Revision   int64     `json:"revision"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Clone returns a deep copy of t.
func (t *Task) Clone() *Task {
	if t == nil {
		return nil
	}
	c := *t
	c.Firmware = cloneFirmware(t.Firmware)
	c.Progress = append([]Progress(nil), t.Progress...)
	if t.Failure != nil {
		f := *t.Failure
		c.Failure = &f
	}
	c.Plan = t.Plan.clone()
	if t.Replans != nil {
		c.Replans = make([]Plan, len(t.Replans))
		for i := range t.Replans {
			c.Replans[i] = *t.Replans[i].clone()
		}
	}
	return &c
}

// LivePlan is the latest plan against live versions (what a resumed executor works from), or the
// plan shown when no executor planned the task yet.
func (t *Task) LivePlan() *Plan {
	if n := len(t.Replans); n > 0 {
		return &t.Replans[n-1]
	}
	return t.Plan
}

// PreUpdateSnapshot is the installed versions read before the task's first step: the first live
// re-plan's snapshot, or the shown plan's when no executor planned the task yet. Failure messages
// compare against it, so a resumed task still reports what it changed before the restart.
func (t *Task) PreUpdateSnapshot() []Installed {
	if len(t.Replans) > 0 {
		return t.Replans[0].Snapshot
	}
	if t.Plan != nil {
		return t.Plan.Snapshot
	}
	return nil
}

func (p *Plan) clone() *Plan {
	if p == nil {
		return nil
	}
	c := *p
	c.Steps = make([]Step, len(p.Steps))
	for i, s := range p.Steps {
		s.PreActions = append([]Action(nil), s.PreActions...)
		s.PostActions = append([]Action(nil), s.PostActions...)
		c.Steps[i] = s
	}
	c.Skipped = append([]Skip(nil), p.Skipped...)
	c.Snapshot = append([]Installed(nil), p.Snapshot...)
	return &c
}

func cloneFirmware(in []Firmware) []Firmware {
	if in == nil {
		return nil
	}
	out := make([]Firmware, len(in))
	for i, f := range in {
		f.PreActions = append([]Action(nil), f.PreActions...)
		f.PostActions = append([]Action(nil), f.PostActions...)
		out[i] = f
	}
	return out
}

// EventKind names what happened to a task.
type EventKind string

// Event kinds.
const (
	EventCreated         EventKind = "CREATED"
	EventStarted         EventKind = "STARTED"
	EventProgress        EventKind = "PROGRESS"
	EventPlanned         EventKind = "PLANNED"
	EventSucceeded       EventKind = "SUCCEEDED"
	EventFailed          EventKind = "FAILED"
	EventCancelRequested EventKind = "CANCEL_REQUESTED"
	EventCancelled       EventKind = "CANCELLED"
	EventRequeued        EventKind = "REQUEUED"
)

// Event is one entry of a task's history. Nothing is truncated: every event is kept with its task.
type Event struct {
	TaskID   string    `json:"task_id"`
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	From     State     `json:"from,omitempty"`
	To       State     `json:"to,omitempty"`
	Message  string    `json:"message,omitempty"`
}

// TransitionError is returned for a state change the state machine does not allow.
type TransitionError struct {
	TaskID   string
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("task %s: illegal transition %s → %s", e.TaskID, e.From, e.To)
}

var allowed = map[State][]State{
	StateQueued: {StateActive, StateCancelled},
	StateActive: {StateSucceeded, StateFailed, StateCancelled, StateQueued},
}

// CanTransition reports whether a task may move from one state to another. ACTIVE → QUEUED is
// allowed only for requeueing a task whose worker was lost before it touched hardware.
func CanTransition(from, to State) bool {
	for _, s := range allowed[from] {
		if s == to {
			return true
		}
	}
	return false
}
