package outofband

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclibErrs "github.com/bmc-toolbox/bmclib/v2/errors"

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
	// Planner re-plans against the live inventory; nil means plan.New().
	Planner *plan.Planner
	// Sessions is the BMC session layer; nil means a new one. Share one between executors that
	// may reach the same BMCs so they take turns.
	Sessions *Sessions
	// Policy sets timeouts and retries per vendor and component.
	Policy Policy
	// Recorder, when set, records each verified version in the inventory source.
	Recorder inventory.Recorder
	Logger   *slog.Logger
}

// Executor runs OUT_OF_BAND tasks through the BMC.
type Executor struct {
	cfg      Config
	log      *slog.Logger
	planner  *plan.Planner
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
	x := &Executor{cfg: cfg, log: cfg.Logger.With("component", "outofband"), planner: cfg.Planner, sessions: cfg.Sessions}
	if x.planner == nil {
		x.planner = plan.New()
	}
	if x.sessions == nil {
		x.sessions = NewSessions(x.log)
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

	prev    map[instKey]task.Progress // progress recorded before this Execute (resume)
	cur     map[instKey]task.Progress
	written map[instKey]time.Time
	plan    *task.Plan
	live    []inventory.Component
	applied map[string]bool // checksums applied and verified in this task
	done    []string        // verified steps, for failure messages
	power   string          // host power before the task
	hostNow string          // host power as of our last read or action; "" when unknown
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
	target, err := ParseTarget(srv.BMC)
	if err != nil {
		return task.Fail(task.CodeInventoryError, "", fmt.Sprintf("server %s: %v", t.ServerID, err), err)
	}
	rn := &run{
		x: x, t: t, r: r, srv: srv, to: x.cfg.Policy.For(srv.Vendor, ""),
		log:  x.log.With("task", t.ID, "server", t.ServerID, "bmc", target.Key()),
		prev: map[instKey]task.Progress{}, cur: map[instKey]task.Progress{}, applied: map[string]bool{},
		written: map[instKey]time.Time{},
	}
	for _, p := range t.Progress {
		rn.prev[keyOf(p.Component, p.Serial)] = p
		rn.cur[keyOf(p.Component, p.Serial)] = p
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
	sess, err := x.sessions.Open(ctx, target, creds, rn.to, rn.loginRetry)
	if err != nil {
		return rn.failure(ctx, "", "connect to the BMC", err)
	}
	rn.sess = sess
	defer sess.Close()
	if target.TLSUnverified() {
		// Visible in the task, not only in the log: this flash trusted an unverified BMC.
		_ = rn.r.Progress(ctx, task.Progress{Component: ProgressSession, State: task.StepSucceeded, Step: "login", Percent: 100,
			Message: "TLS certificate of the BMC NOT verified (inventory: insecure_skip_verify)"})
	}
	return rn.finish(ctx, rn.run(ctx))
}

func (rn *run) loginRetry(attempt int, err error) {
	rn.log.Warn("BMC login retry", "attempt", attempt, "err", err)
	_ = rn.r.Progress(context.Background(), task.Progress{Component: ProgressSession, State: task.StepRunning, Step: "login",
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
	rn.plan = p
	if err := rn.r.SetPlan(ctx, p); err != nil {
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
	return rn.r.Progress(ctx, task.Progress{Component: ProgressHostPower, State: task.StepSucceeded, Step: "original-power-state", Percent: 100, Message: state})
}

// replan plans the task against the versions the BMC reports now.
func (rn *run) replan(ctx context.Context) (*task.Plan, error) {
	if err := rn.readInventory(ctx); err != nil {
		return nil, rn.failure(ctx, "", "read the BMC inventory", err)
	}
	cat, err := rn.x.cfg.Inventory.Catalog(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, task.Fail(task.CodeInventoryError, "", "firmware catalog: "+err.Error(), err)
	}
	live := *rn.srv
	live.Components = rn.live
	p, err := rn.x.planner.Plan(&live, cat, plan.RequestFor(rn.t))
	if err != nil {
		return nil, task.Fail(task.CodePlanRefused, "", err.Error(), err)
	}
	return p, nil
}

func (rn *run) readInventory(ctx context.Context) error {
	dev, err := rn.sess.Inventory(ctx)
	if err != nil {
		return err
	}
	rn.live = liveComponents(rn.srv, dev)
	return nil
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
		if err := rn.r.Progress(ctx, prev); err != nil {
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
// entry of the same instance unless given.
func (rn *run) progress(ctx context.Context, st task.Step, p task.Progress) error {
	k := keyOf(st.Component, st.Serial)
	last := rn.cur[k]
	p.Component, p.Serial = st.Component, st.Serial
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
	if err := rn.r.Progress(ctx, p); err != nil {
		return err
	}
	rn.cur[k] = p
	rn.written[k] = time.Now()
	return nil
}

// progressEvery bounds how often a running job's percentage is written to the task.
const progressEvery = 2 * time.Second

// image is a fetched image held until its last upload really returned.
type image struct {
	mu   sync.Mutex
	refs int
	art  *artifact.Artifact
}

func (im *image) hold() { im.mu.Lock(); im.refs++; im.mu.Unlock() }
func (im *image) release() {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.refs--
	if im.refs == 0 {
		im.art.Release()
	}
}

// step flashes one component instance and verifies it.
func (rn *run) step(ctx context.Context, st task.Step) error {
	name := stepName(st)
	to := rn.x.cfg.Policy.For(rn.srv.Vendor, st.Component)
	rn.sess.to = to
	defer func() { rn.sess.to = rn.to }()

	if prev := rn.prev[keyOf(st.Component, st.Serial)]; prev.State == task.StepRunning && prev.JobID != "" {
		// The job was started before a restart: ask the BMC about it instead of uploading again.
		if err := rn.progress(ctx, st, task.Progress{Step: "install-status", Percent: prev.Percent, JobID: prev.JobID,
			Message: "resumed after a restart: polling BMC job " + prev.JobID}); err != nil {
			return err
		}
		if err := rn.wait(ctx, st, to, prev.JobID); err != nil && !errors.Is(err, errJobGone) {
			return err
		}
		return rn.verify(ctx, st, to)
	}

	// One image often updates every matching instance (both NICs of a model): a later step for
	// an instance the same image already brought to version is done.
	if rn.applied[st.Checksum] {
		if c := findComponent(rn.live, st.Component, st.Serial); c != nil && c.Version == st.ToVersion {
			rn.done = append(rn.done, fmt.Sprintf("%s %s→%s", name, st.FromVersion, st.ToVersion))
			return rn.progress(ctx, st, task.Progress{State: task.StepSucceeded, Step: "verified", Percent: 100,
				Message: fmt.Sprintf("at %s: the image installed for an earlier step of this task updated it too", st.ToVersion)})
		}
	}

	if rn.r.CancelRequested() {
		return &task.CancelledError{Where: "before " + name + " upload"}
	}
	if err := rn.progress(ctx, st, task.Progress{Step: "download", Message: "fetching and verifying " + st.URL}); err != nil {
		return err
	}
	art, err := rn.x.cfg.Images.Fetch(ctx, st.URL, st.Checksum)
	if err != nil {
		return rn.imageFailure(ctx, st, err)
	}
	im := &image{refs: 1, art: art}
	defer im.release()

	for _, a := range st.PreActions {
		if err := rn.action(ctx, st, to, a); err != nil {
			return err
		}
	}
	steps, err := rn.sess.InstallSteps(ctx, st.Component)
	if err != nil {
		if c := classify(err); c == classOther || c == classStatus {
			return task.Fail(task.CodeUnsupported, name, "the BMC does not install "+st.Component+" out-of-band: "+bmcMessage(err), err)
		}
		return rn.failure(ctx, name, "list install steps", err)
	}
	jobID := ""
	for _, s := range steps {
		switch s {
		case "power-off-host":
			if err := rn.setPower(ctx, st, "off", "the BMC flashes "+st.Component+" only with the host off"); err != nil {
				return err
			}
		case "upload-initiate-install":
			if rn.r.CancelRequested() {
				return &task.CancelledError{Where: "before " + name + " upload"}
			}
			if jobID, err = rn.upload(ctx, st, to, im); err != nil {
				return err
			}
		case "install-status":
			if err := rn.wait(ctx, st, to, jobID); err != nil && !errors.Is(err, errJobGone) {
				return err
			}
		case "reset-bmc-post-install":
			if err := rn.resetBMC(ctx, st, to); err != nil {
				return err
			}
		case "reset-bmc-on-install-failure":
			// Only after a failed install; Flasher reports the failure instead.
		default:
			return task.Fail(task.CodeUnsupported, name, fmt.Sprintf("install step %q of provider %s is not supported", s, rn.sess.Provider()), nil)
		}
	}
	return rn.verify(ctx, st, to)
}

// upload sends the image and records the job id before anything waits on it.
func (rn *run) upload(ctx context.Context, st task.Step, to Timeouts, im *image) (string, error) {
	name := stepName(st)
	var last error
	for attempt := 1; attempt <= to.UploadAttempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, backoff(to, attempt-1)); err != nil {
				return "", err
			}
		}
		msg := fmt.Sprintf("uploading %s %s (%d of %d)", st.Component, st.ToVersion, attempt, to.UploadAttempts)
		if err := rn.progress(ctx, st, task.Progress{Step: "upload-initiate-install", Attempt: attempt, Message: msg}); err != nil {
			return "", err
		}
		f, err := im.art.Open()
		if err != nil {
			return "", fmt.Errorf("%s: open cached image: %w", name, err)
		}
		im.hold()
		id, err := rn.sess.Upload(ctx, st.Component, f, func() { f.Close(); im.release() })
		if err == nil {
			// Durable before polling, even when a shutdown began during the upload: a restarted
			// executor polls this job instead of uploading again.
			wctx := context.WithoutCancel(ctx)
			if err := rn.progress(wctx, st, task.Progress{Step: "install-status", JobID: id, Attempt: attempt,
				Message: "the BMC accepted the image as job " + id}); err != nil {
				return "", err
			}
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return id, nil
		}
		last = err
		var ce *connectError
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case errors.As(err, &ce):
			return "", rn.failure(ctx, name, "reconnect for the upload", err)
		case classify(err) == classTimeout:
			return "", task.Fail(task.CodeTimeout, name, fmt.Sprintf("upload of %s: %v", st.ToVersion, err), err)
		case classify(err) != classUnreachable:
			return "", task.Fail(task.CodeUploadRejected, name, "the BMC refused the image: "+bmcMessage(err), err)
		}
		rn.log.Warn("upload lost", "component", name, "attempt", attempt, "err", err)
	}
	return "", task.Fail(task.CodeUploadRejected, name, fmt.Sprintf("upload failed %d time(s), last: %s", to.UploadAttempts, bmcMessage(last)), last)
}

// errJobGone says the BMC no longer knows the job (OpenBMC forgets tasks when it reboots);
// the installed version decides.
var errJobGone = errors.New("the BMC no longer knows the job")

var percentRe = regexp.MustCompile(`(\d{1,3})%`)

// wait polls a job until it ends, power-cycling the host once when the BMC asks for it.
func (rn *run) wait(ctx context.Context, st task.Step, to Timeouts, jobID string) error {
	name := stepName(st)
	start := time.Now()
	tick := time.NewTicker(to.PollInterval)
	defer tick.Stop()
	errs, cycled, pct := 0, false, 0
	for {
		state, status, err := rn.sess.TaskStatus(ctx, st.Component, jobID)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, bmclibErrs.ErrTaskNotFound) {
				return errJobGone
			}
			if isBMC(st.Component) && pct > 0 {
				if c := classify(err); c == classUnreachable || c == classTimeout {
					// The BMC went down while flashing itself: it is rebooting into the new image.
					return errJobGone
				}
			}
			errs++
			if err := rn.progress(ctx, st, task.Progress{Step: "install-status", Percent: pct, Attempt: errs,
				Message: fmt.Sprintf("status poll %d of %d failed: %s", errs, to.PollErrors, bmcMessage(err))}); err != nil {
				return err
			}
			if errs >= to.PollErrors {
				return rn.failure(ctx, name, "poll job "+jobID, err)
			}
		case state == "complete":
			return rn.progress(ctx, st, task.Progress{Step: "install-status", Percent: 100, Message: status})
		case state == "failed":
			return task.Fail(task.CodeInstallFailed, name, fmt.Sprintf("BMC job %s failed: %s", jobID, status), nil)
		case state == "powercycle-host":
			errs = 0
			if !cycled {
				if err := rn.powerCycle(ctx, st, "the BMC applies "+st.Component+" at the next host boot"); err != nil {
					return err
				}
				cycled = true
			}
			if err := rn.progress(ctx, st, task.Progress{Step: "install-status", Percent: pct, Message: status}); err != nil {
				return err
			}
		default:
			errs = 0
			if m := percentRe.FindStringSubmatch(status); m != nil {
				pct, _ = strconv.Atoi(m[1])
			} else if pct == 0 {
				pct = 1 // running, amount unknown
			}
			if err := rn.progress(ctx, st, task.Progress{Step: "install-status", Percent: pct, Message: status}); err != nil {
				return err
			}
		}
		if time.Since(start) > to.Install {
			return task.Fail(task.CodeTimeout, name, fmt.Sprintf("BMC job %s not finished after %s (last state %q): %s", jobID, to.Install, state, status), nil)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// verify re-reads the inventory until the instance reports the new version, then runs the
// post-actions. A BMC flashing itself reboots: the wait then covers its reboot.
func (rn *run) verify(ctx context.Context, st task.Step, to Timeouts) error {
	name := stepName(st)
	limit := to.Verify
	if isBMC(st.Component) {
		limit = max(limit, to.BMCReboot)
	}
	start := time.Now()
	tick := time.NewTicker(to.PollInterval)
	defer tick.Stop()
	var lastErr error
	got, found := "", false
	for {
		lastErr = rn.readInventory(ctx)
		if lastErr == nil {
			c := findComponent(rn.live, st.Component, st.Serial)
			found = c != nil
			if found {
				got = c.Version
				if strings.TrimSpace(got) == strings.TrimSpace(st.ToVersion) {
					break
				}
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > limit {
			switch {
			case lastErr != nil:
				return rn.failure(ctx, name, fmt.Sprintf("verify (waited %s)", limit), lastErr)
			case !found:
				return task.Fail(task.CodeVerifyMismatch, name, "the BMC inventory no longer lists this component", nil)
			default:
				return task.Fail(task.CodeVerifyMismatch, name, fmt.Sprintf("the install ended but the BMC reports %s, want %s", got, st.ToVersion), nil)
			}
		}
		msg := fmt.Sprintf("waiting for %s to report %s (now %s)", name, st.ToVersion, got)
		if lastErr != nil {
			msg = fmt.Sprintf("waiting for the BMC to answer: %s", bmcMessage(lastErr))
		}
		if err := rn.progress(ctx, st, task.Progress{Step: "verify", Percent: 100, Message: msg}); err != nil {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, a := range st.PostActions {
		if err := rn.action(ctx, st, to, a); err != nil {
			return err
		}
	}
	rn.applied[st.Checksum] = true
	rn.done = append(rn.done, fmt.Sprintf("%s %s→%s", name, st.FromVersion, st.ToVersion))
	if rec := rn.x.cfg.Recorder; rec != nil {
		if err := rec.SetInstalledVersion(ctx, rn.t.ServerID, st.Component, st.Serial, st.ToVersion); err != nil {
			rn.log.Warn("record the verified version in the inventory", "component", name, "version", st.ToVersion, "err", err)
		}
	}
	return rn.progress(ctx, st, task.Progress{State: task.StepSucceeded, Step: "verified", Percent: 100,
		Message: fmt.Sprintf("the BMC reports %s", st.ToVersion)})
}

// action runs a pre- or post-action.
func (rn *run) action(ctx context.Context, st task.Step, to Timeouts, a task.Action) error {
	switch a {
	case task.ActionResetBMC:
		return rn.resetBMC(ctx, st, to)
	case task.ActionResetHost, task.ActionPowerCycleHost:
		return rn.powerCycle(ctx, st, "action "+string(a))
	case task.ActionPowerOffHost:
		return rn.setPower(ctx, st, "off", "action "+string(a))
	}
	return task.Fail(task.CodeUnsupported, stepName(st), "unknown action "+string(a), nil)
}

// setPower sets the host power state unless it already is in it.
func (rn *run) setPower(ctx context.Context, st task.Step, state, why string) error {
	cur, err := rn.hostPower(ctx)
	if err != nil {
		return rn.failure(ctx, stepName(st), "read the host power state", err)
	}
	if strings.EqualFold(cur, state) {
		return nil
	}
	if err := rn.progress(ctx, st, task.Progress{Step: "power-" + state, Message: "powering the host " + state + ": " + why}); err != nil {
		return err
	}
	rn.hostNow = ""
	if err := rn.sess.SetPower(ctx, state); err != nil {
		return rn.powerFailure(ctx, stepName(st), "power "+state, err)
	}
	rn.hostNow = map[string]string{"on": "On", "off": "Off"}[state]
	return nil
}

// hostPower returns the host power state, read from the BMC unless this run knows it from its
// own last read or action (saving a Redfish round trip per component).
func (rn *run) hostPower(ctx context.Context) (string, error) {
	if rn.hostNow != "" {
		return rn.hostNow, nil
	}
	s, err := rn.sess.PowerState(ctx)
	if err == nil {
		rn.hostNow = s
	}
	return s, err
}

// powerCycle restarts the host, or powers it on when it is off.
func (rn *run) powerCycle(ctx context.Context, st task.Step, why string) error {
	for attempt := 1; ; attempt++ {
		cur, err := rn.hostPower(ctx)
		if err != nil {
			return rn.failure(ctx, stepName(st), "read the host power state", err)
		}
		action := "cycle"
		if strings.EqualFold(cur, "off") {
			action = "on"
		}
		if err := rn.progress(ctx, st, task.Progress{Step: "powercycle-host", Message: "host power " + action + ": " + why}); err != nil {
			return err
		}
		known := rn.hostNow != ""
		rn.hostNow = ""
		err = rn.sess.SetPower(ctx, action)
		if err == nil {
			rn.hostNow = "On"
			return nil
		}
		if attempt > 1 || !known || ctx.Err() != nil {
			return rn.powerFailure(ctx, stepName(st), "power "+action, err)
		}
		// The state this run remembered may be stale (someone else changed it): read it and retry once.
	}
}

// resetBMC restarts the BMC and waits until it answers again.
func (rn *run) resetBMC(ctx context.Context, st task.Step, to Timeouts) error {
	name := stepName(st)
	if err := rn.progress(ctx, st, task.Progress{Step: "reset-bmc", Message: "resetting the BMC"}); err != nil {
		return err
	}
	if err := rn.sess.ResetBMC(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return task.Fail(task.CodeBMCResetFailed, name, "the BMC refused the reset: "+bmcMessage(err), err)
	}
	// Wait to see it go down (bounded: a quick reset may never be seen), then for a login.
	down := time.Now().Add(to.Call)
	for time.Now().Before(down) && dialable(rn.sess.Target()) {
		if err := sleep(ctx, min(to.PollInterval, 200*time.Millisecond)); err != nil {
			return err
		}
	}
	start := time.Now()
	for {
		_, err := rn.sess.PowerState(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > to.BMCReboot {
			return rn.failure(ctx, name, fmt.Sprintf("wait for the BMC after its reset (%s)", to.BMCReboot), err)
		}
		if err := sleep(ctx, to.PollInterval); err != nil {
			return err
		}
	}
}

// finish restores the host's power state (unless the process is shutting down: the resumed
// task does it) and completes failure messages with what changed.
func (rn *run) finish(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	restoreErr := rn.restorePower(ctx)
	var fe *task.FailureError
	if errors.As(err, &fe) {
		fe.Message += rn.changes(ctx)
		if restoreErr != nil {
			fe.Message += "; restoring host power failed: " + bmcMessage(restoreErr)
		}
		return fe
	}
	if err == nil && restoreErr != nil {
		return rn.powerFailure(ctx, "", "restore the host power state "+rn.power, restoreErr)
	}
	return err
}

func (rn *run) restorePower(ctx context.Context) error {
	if rn.sess == nil || rn.power == "" {
		return nil
	}
	want := strings.ToLower(rn.power)
	if want != "on" && want != "off" {
		return nil
	}
	cur, err := rn.sess.PowerState(ctx)
	if err != nil {
		return err
	}
	if strings.EqualFold(cur, want) {
		return nil
	}
	rn.log.Info("restoring host power", "state", want)
	return rn.sess.SetPower(ctx, want)
}

// changes says what changed on the server before a failure, from a fresh inventory read
// compared with the plan's snapshot (or, if the BMC cannot be read, from the verified steps).
func (rn *run) changes(ctx context.Context) string {
	if rn.plan == nil {
		return ""
	}
	var changed []string
	if rn.sess != nil && rn.readInventory(ctx) == nil {
		for _, s := range rn.plan.Snapshot {
			if c := findComponent(rn.live, s.Component, s.Serial); c != nil && c.Version != s.Version {
				n := s.Component
				if s.Serial != "" {
					n += " " + s.Serial
				}
				changed = append(changed, fmt.Sprintf("%s %s→%s", n, s.Version, c.Version))
			}
		}
	} else {
		changed = rn.done
	}
	if len(changed) == 0 {
		return "; nothing was changed on the server"
	}
	return "; partially applied, changed on the server: " + strings.Join(changed, ", ")
}

func (rn *run) imageFailure(ctx context.Context, st task.Step, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	name := stepName(st)
	if errors.Is(err, artifact.ErrChecksumMismatch) {
		return task.Fail(task.CodeChecksumMismatch, name, "image rejected before upload: "+err.Error(), err)
	}
	return task.Fail(task.CodeImageUnavailable, name, err.Error(), err)
}

func (rn *run) powerFailure(ctx context.Context, component, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch classify(err) {
	case classTimeout:
		return task.Fail(task.CodeTimeout, component, what+": "+err.Error(), err)
	case classUnreachable:
		return task.Fail(task.CodeBMCUnreachable, component, what+": "+bmcMessage(err), err)
	}
	return task.Fail(task.CodePowerFailed, component, what+": "+bmcMessage(err), err)
}

// failure turns a session error into the task's failure.
func (rn *run) failure(ctx context.Context, component, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ce *connectError
	if errors.As(err, &ce) {
		return task.Fail(ce.code(), component, what+": "+bmcMessage(ce.err)+fmt.Sprintf(" (%d attempt(s))", ce.attempts), err)
	}
	switch classify(err) {
	case classTimeout:
		return task.Fail(task.CodeTimeout, component, what+": "+err.Error(), err)
	case classUnreachable:
		return task.Fail(task.CodeBMCUnreachable, component, what+": "+bmcMessage(err), err)
	case classAuth:
		return task.Fail(task.CodeLoginFailed, component, what+": "+bmcMessage(err), err)
	case classShutdown:
		return err
	}
	if component == "" {
		return task.Fail(task.CodeInventoryError, component, what+": "+bmcMessage(err), err)
	}
	return task.Fail(task.CodeInstallFailed, component, what+": "+bmcMessage(err), err)
}
