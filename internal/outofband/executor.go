package outofband

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
)

// Pseudo-components of progress entries that are not firmware: they make the session's login
// retries and the host's original power state visible and durable in the task.
const (
	// ProgressSession records login retries (Attempt, Message).
	ProgressSession = "BMCSession"
	// ProgressHostPower records the host power state before the task (Message "On" or "Off"),
	// so a resumed task restores the state from before the first run, not from before the restart.
	ProgressHostPower = "HostPower"
)

// ImageCache is the part of the artifact cache the executor uses.
type ImageCache interface {
	Fetch(ctx context.Context, rawURL, checksum string) (*artifact.Artifact, error)
}

var _ ImageCache = (*artifact.Cache)(nil)

// Config configures an Executor.
type Config struct {
	// Inventory gives servers, BMC addresses, credentials and the catalog. Required.
	Inventory inventory.Source
	// Images downloads and verifies images. Required.
	Images ImageCache
	// Planner re-plans against the live inventory; nil means plan.NewSourcePlanner(Inventory).
	// Share the API's so that one catalog index serves every plan.
	Planner *plan.SourcePlanner
	// Sessions is the BMC session layer; nil means a new one. Share one between executors that
	// may reach the same BMCs so they take turns.
	Sessions *Sessions
	// Policy sets timeouts and retries per vendor and component.
	Policy Policy
	// Recorder, when set, records each verified version in the inventory source.
	Recorder inventory.Recorder
	// WriteBack bounds the Recorder's retries (zero: inventory.DefaultWriteBack).
	WriteBack inventory.WriteBackPolicy
	// Observer, when set, is told the inventory read before planning and after a failure, and
	// each verified version (the fleet's observed versions).
	Observer inventory.Observer
	// Calls, when set, is told about every BMC call that failed (internal/server counts them
	// by vendor and kind). It is set on the session layer, shared or not.
	Calls  CallObserver
	Logger *slog.Logger
}

// CallObserver is told about each BMC call that failed: the server's vendor, the operation
// ("login", "upload", ...) and the kind of failure ("unreachable", "timeout", "auth",
// "http_status", "tls", "other"). Calls ended by Flasher's own shutdown are not failures.
type CallObserver interface {
	BMCCallFailed(vendor, op, kind string)
}

// tracerName names the spans this package starts (BMC calls). Spans use the tracer provider of
// the span in the context, so with tracing off nothing is recorded.
const tracerName = "github.com/flasher-dev/flasher/internal/outofband"

// Executor runs OUT_OF_BAND tasks through the BMC.
type Executor struct {
	cfg      Config
	log      *slog.Logger
	planner  *plan.SourcePlanner
	sessions *Sessions
}

var _ scheduler.Executor = (*Executor)(nil)

// New returns an Executor.
func New(cfg Config) (*Executor, error) {
	if cfg.Inventory == nil || cfg.Images == nil {
		return nil, errors.New("outofband: Config.Inventory and Config.Images are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	x := &Executor{cfg: cfg, log: cfg.Logger.With("part", "outofband"), planner: cfg.Planner, sessions: cfg.Sessions}
	if x.planner == nil {
		x.planner = plan.NewSourcePlanner(cfg.Inventory)
	}
	if x.sessions == nil {
		x.sessions = NewSessions(x.log)
	}
	if cfg.Calls != nil {
		x.sessions.calls = cfg.Calls
	}
	return x, nil
}

// Sessions returns the executor's session layer.
func (x *Executor) Sessions() *Sessions { return x.sessions }

type instKey struct{ component, serial string }

func keyOf(component, serial string) instKey {
	return instKey{strings.ToUpper(component), strings.ToUpper(strings.TrimSpace(serial))}
}

// run is one Execute.
type run struct {
	x    *Executor
	t    *task.Task
	r    task.Reporter
	srv  *inventory.Server
	sess *Session
	to   Timeouts
	log  *slog.Logger

	// wctx is Execute's context: progress is written with it, so a cancel request (which ends
	// the run's own context) never stops the task from recording what happened.
	wctx context.Context

	prev    map[instKey]task.Progress // progress recorded before this Execute (resume)
	cur     map[instKey]task.Progress
	written map[instKey]time.Time
	plan    *task.Plan
	live    []inventory.Component
	applied map[string]bool // checksums applied and verified in this task
	done    []string        // verified steps, for failure messages
	power   string          // host power before the task
	hostNow string          // host power as of our last read or action; "" when unknown
	// open are the BMC jobs of this task not yet seen ending: at a failure or cancel they are
	// deleted where the BMC allows it, else named in the outcome as still pending.
	open []openJob
	// touched says an image may have reached the BMC in this task (or before its restart).
	touched bool
	// at names where the run is, for the outcome of a cancel ("BIOS install-status").
	at string
	// changed caches what the failure's re-read found, so it is read once.
	changed string
	// pending says a job of this task may still change the server.
	pending bool
	// svc is the BMC's UpdateService, read once (redfish-update path).
	svc *UpdateService
}

// openJob is a BMC job this task created or adopted.
type openJob struct {
	step task.Step
	id   string
}

// Execute implements scheduler.Executor.
func (x *Executor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	srv, err := x.cfg.Inventory.Server(ctx, t.ServerID)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return task.Fail(task.CodeInventoryError, "", fmt.Sprintf("server %s: %v", t.ServerID, err), err)
	}
	target, err := TargetFor(srv)
	if err != nil {
		return task.Fail(task.CodeInventoryError, "", fmt.Sprintf("server %s: %v", t.ServerID, err), err)
	}
	if p := planPath(t.Plan); p != "" {
		target.Path = p // the path the operator was shown
	}
	rn := &run{
		x: x, t: t, r: r, srv: srv, to: x.cfg.Policy.For(srv.Vendor, ""), wctx: ctx,
		log:  x.log.With("task", t.ID, "server", t.ServerID, "bmc", target.Key()),
		prev: map[instKey]task.Progress{}, cur: map[instKey]task.Progress{}, applied: map[string]bool{},
		written: map[instKey]time.Time{},
		// Until the live re-plan, a failure reports changes against the stored plan's snapshot.
		plan: t.Plan,
	}
	for _, p := range t.Progress {
		rn.prev[keyOf(p.Component, p.Serial)] = p
		rn.cur[keyOf(p.Component, p.Serial)] = p
		if p.State == task.StepRunning && (p.JobID != "" || p.Step == stepUpload) {
			rn.touched = true
		}
	}
	// One task per BMC at a time, whatever servers point at it.
	unlock, err := x.sessions.Lock(ctx, target.Key())
	if err != nil {
		return err
	}
	defer unlock()
	creds := func(ctx context.Context) (inventory.Credentials, error) {
		return x.cfg.Inventory.Credentials(ctx, srv.ID)
	}
	// A cancel request ends rctx: every wait of the run stops within a bounded time.
	rctx, stop := rn.watchCancel(ctx)
	defer stop()
	sess, err := x.sessions.Open(rctx, target, creds, rn.to, rn.loginRetry)
	if err != nil {
		return rn.finish(rctx, rn.failure(rctx, "", "connect to the BMC", err))
	}
	rn.sess = sess
	defer sess.Close()
	if note := target.TLSNote(); note != "" {
		// Visible in the task, not only in the log: how far this flash trusted the BMC.
		_ = rn.r.Progress(ctx, task.Progress{Component: ProgressSession, State: task.StepSucceeded, Step: "login", Percent: 100,
			Message: note})
	}
	return rn.finish(rctx, rn.run(rctx))
}

// errCancelRequested is the cause of a run context ended by a cancel request.
var errCancelRequested = errors.New("cancel requested")

// cancelCheck is how often a run looks for a cancel request: it bounds how long a wait goes on
// after one (plus the BMC call in flight, itself bounded).
const cancelCheck = 100 * time.Millisecond

// watchCancel returns a context that ends with cause errCancelRequested once a cancel is
// requested for the task.
func (rn *run) watchCancel(ctx context.Context) (context.Context, func()) {
	rctx, cancel := context.WithCancelCause(ctx)
	go func() {
		tick := time.NewTicker(cancelCheck)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				if rn.r.CancelRequested() {
					cancel(errCancelRequested)
					return
				}
			}
		}
	}()
	return rctx, func() { cancel(nil) }
}

func (rn *run) loginRetry(attempt int, err error) {
	rn.log.Warn("BMC login retry", "attempt", attempt, "err", err)
	_ = rn.r.Progress(rn.wctx, task.Progress{Component: ProgressSession, State: task.StepRunning, Step: "login",
		Attempt: attempt, Message: fmt.Sprintf("login attempt %d of %d after: %s", attempt, rn.to.LoginAttempts, bmcMessage(err))})
}

func (rn *run) run(ctx context.Context) error {
	if err := rn.recordPower(ctx); err != nil {
		return err
	}
	p, err := rn.replan(ctx)
	if err != nil {
		return err
	}
	rn.annotate(ctx, p)
	rn.plan = p
	if err := rn.r.SetPlan(rn.wctx, p); err != nil {
		return err
	}
	if err := rn.settleResumed(ctx, p); err != nil {
		return err
	}
	for _, st := range p.Steps {
		if prev, ok := rn.prev[keyOf(st.Component, st.Serial)]; ok && prev.State == task.StepSucceeded {
			continue // verified before a restart
		}
		if err := rn.step(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// recordPower reads the host power state once per task and keeps it in the task.
func (rn *run) recordPower(ctx context.Context) error {
	if p, ok := rn.prev[keyOf(ProgressHostPower, "")]; ok && p.Message != "" {
		rn.power = p.Message
		return nil
	}
	state, err := rn.sess.PowerState(ctx)
	if err != nil {
		return rn.failure(ctx, "", "read the host power state", err)
	}
	rn.power, rn.hostNow = state, state
	return rn.r.Progress(rn.wctx, task.Progress{Component: ProgressHostPower, State: task.StepSucceeded, Step: "original-power-state", Percent: 100, Message: state})
}

// replan plans the task against the versions the BMC reports now.
func (rn *run) replan(ctx context.Context) (*task.Plan, error) {
	if err := rn.readInventoryReady(ctx); err != nil {
		return nil, rn.failure(ctx, "", "read the BMC inventory", err)
	}
	rn.observe(rn.live)
	return rn.x.planner.Replan(ctx, rn.t, rn.srv, rn.live, "the BMC's inventory")
}

// readInventoryReady reads the inventory, retrying what a BMC still coming up answers (no
// connection, an empty inventory) for up to BMCReboot when this task may have rebooted it,
// else for LoginAttempts reads.
func (rn *run) readInventoryReady(ctx context.Context) error {
	start := time.Now()
	wait := newBackoff(rn.to)
	for attempt := 1; ; attempt++ {
		err := rn.readInventory(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		c := classify(err)
		transient := errors.Is(err, errEmptyInventory) || c == classUnreachable || c == classTimeout
		if !transient || (rn.touched && time.Since(start) > rn.to.BMCReboot) || (!rn.touched && attempt >= rn.to.LoginAttempts) {
			return err
		}
		rn.log.Warn("BMC inventory not readable yet", "attempt", attempt, "err", err)
		if err := sleep(ctx, wait.NextBackOff()); err != nil {
			return err
		}
	}
}

func (rn *run) readInventory(ctx context.Context) error {
	dev, err := rn.sess.Inventory(ctx)
	if err != nil {
		return err
	}
	rn.live = liveComponents(rn.srv, dev, time.Now())
	return nil
}

// observe hands components read from the BMC to the Observer; a failure is only logged, as
// the reading changes nothing on the hardware.
func (rn *run) observe(comps []inventory.Component) {
	if o := rn.x.cfg.Observer; o != nil && len(comps) > 0 {
		r := inventory.Reading{ServerID: rn.t.ServerID, Source: "bmc", TaskID: rn.t.ID, At: comps[0].VersionAt, Components: comps}
		if err := o.Observe(rn.wctx, r); err != nil {
			rn.log.Warn("record the observed versions", "err", err)
		}
	}
}

// settleResumed closes progress entries left RUNNING by an earlier run whose component the new
// plan skips because it already is at the wanted version.
func (rn *run) settleResumed(ctx context.Context, p *task.Plan) error {
	for _, s := range p.Skipped {
		prev, ok := rn.prev[keyOf(s.Component, s.Serial)]
		if !ok || prev.State != task.StepRunning || !strings.HasPrefix(s.Reason, plan.ReasonAlreadyAtVersion) {
			continue
		}
		prev.State, prev.Step, prev.Percent = task.StepSucceeded, "verified", 100
		prev.Message = fmt.Sprintf("verified after a restart: the BMC reports %s", s.Version)
		if err := rn.r.Progress(rn.wctx, prev); err != nil {
			return err
		}
		rn.prev[keyOf(s.Component, s.Serial)] = prev
	}
	return nil
}

func stepName(st task.Step) string {
	if st.Serial != "" {
		return st.Component + " " + st.Serial
	}
	return st.Component
}

func isBMC(component string) bool { return strings.EqualFold(component, "BMC") }

// progress records the progress of a step. The job id and attempt carry over from the last
// entry of the same instance unless given. It is written with Execute's context: a cancel
// request does not stop it.
func (rn *run) progress(st task.Step, p task.Progress) error {
	k := keyOf(st.Component, st.Serial)
	last := rn.cur[k]
	p.Component, p.Serial = st.Component, st.Serial
	rn.at = stepName(st) + " " + p.Step
	if p.JobID == "" && p.Step != "download" {
		p.JobID = last.JobID
	}
	if p.State == "" {
		p.State = task.StepRunning
	}
	if last.Component != "" && last.State == p.State && last.Step == p.Step && last.JobID == p.JobID && last.Attempt == p.Attempt {
		if last.Percent == p.Percent && last.Message == p.Message {
			return nil // nothing new: spare the store a write
		}
		if p.Percent < 100 && time.Since(rn.written[k]) < progressEvery {
			// Only the BMC's percentage or wording moved: record it at most every progressEvery.
			return nil
		}
	}
	if err := rn.r.Progress(rn.wctx, p); err != nil {
		return err
	}
	rn.cur[k] = p
	rn.written[k] = time.Now()
	return nil
}

// progressEvery bounds how often a running job's percentage is written to the task.
const progressEvery = 2 * time.Second

// Install steps recorded in progress entries.
const (
	stepUpload = "upload-initiate-install"
	stepStatus = "install-status"
)

// planPath is the update path a stored plan chose for its out-of-band steps ("" when none says).
func planPath(p *task.Plan) string {
	if p == nil {
		return ""
	}
	for _, s := range p.Steps {
		if s.Method == task.MethodOutOfBand && s.Path != "" {
			return s.Path
		}
	}
	return ""
}
