package inband

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// event is one agent report for a running task.
type event struct {
	sess *session
	msg  Message
}

// run is one Execute call waiting on its agent.
type run struct {
	events chan event
	done   chan struct{}
}

// Execute runs an IN_BAND task: wait for the server's agent, re-plan against the inventory it
// reported (first run only), bring the images into the artifact cache, assign, and relay the
// agent's reports until its result. A resumed task (ACTIVE at the previous stop, or an agent
// that reconnects) is assigned again; the agent answers from its state dir instead of
// installing twice.
//
// When the agent is connected at the start (the hot path of a burst of new tasks), the
// assignment is sent first and its "assigned" rows are committed right after, so the dispatch
// waits for no commit besides the scheduler's claim (and the plan, when the host changed it).
// A task that had to wait for its agent records so, and then records its assignment before
// sending it. See assignRecord for how a restarted server reads these records.
func (s *Service) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	ru := &run{events: make(chan event, 32), done: make(chan struct{})}
	s.mu.Lock()
	s.runs[t.ID] = ru
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.runs, t.ID)
		s.mu.Unlock()
		close(ru.done)
	}()

	// Whether an earlier process may have sent this task's assignment decides whether it may
	// be re-planned (never against a host the assignment half-updated).
	rec := assignRecord(t, s.started)
	sess, _ := s.reg.current(t.ServerID)
	if sess == nil {
		if rec == recordNone {
			// No agent yet: record that the task waits for it, not assigned, so a server
			// restarted meanwhile knows nothing was sent. Not when an earlier process may
			// have sent it (recordUnknown): that doubt must survive another restart.
			if err := r.Progress(ctx, task.Progress{Component: waitComponent, State: task.StepPending, Step: waitStep,
				Message: fmt.Sprintf("waiting up to %s for the agent to connect", s.cfg.ConnectTimeout)}); err != nil {
				return fmt.Errorf("task %s: record progress: %w", t.ID, err)
			}
			rec = recordWaiting
		}
		var err error
		sess, err = s.reg.wait(ctx, t.ServerID, s.cfg.ConnectTimeout)
		if err != nil {
			return err
		}
		if sess == nil {
			return task.Fail(task.CodeAgentUnavailable, "", fmt.Sprintf("no agent connected for server %s within %s", t.ServerID, s.cfg.ConnectTimeout), nil)
		}
	}
	resumed := rec == recordAssigned
	if !resumed && r.CancelRequested() {
		return &task.CancelledError{Where: "before assignment to the agent"}
	}
	p := t.LivePlan() // on a resume, the plan the agent may have been assigned
	if !resumed {
		// First run: plan against what the host holds now, not what the inventory source said
		// when the task was created.
		fresh, err := s.replan(ctx, t, sess)
		if err != nil {
			return err
		}
		changed := p == nil || !sameWork(p, fresh)
		if changed && rec == recordUnknown {
			// An earlier process claimed the task and stopped before recording whether it sent
			// the assignment, and the host no longer matches the plan: it may be half-updated
			// by that assignment. Re-planning could undo the guarantee; assigning the old plan
			// could install against a host it was not planned for. Stop and say why.
			return task.Fail(task.CodeAssignmentUnknown, "", fmt.Sprintf(
				"server %s: the server stopped between starting this task and recording its assignment, and the host's inventory no longer matches the plan; not re-planned, as the host may be half-updated: check the host's versions and create the task again", t.ServerID), nil)
		}
		// Record the plan only when the host changed it: one store write less per task in the
		// common case, where the inventory source was right. It is recorded before the
		// assignment is sent, so the stored plan is always the one an agent may have received.
		if changed {
			if err := r.SetPlan(ctx, fresh); err != nil {
				return fmt.Errorf("task %s: record plan: %w", t.ID, err)
			}
		}
		p = fresh
	}
	if p == nil || len(p.Steps) == 0 {
		return nil // nothing differs from the target: done
	}

	steps, release, err := s.fetchImages(ctx, t, p)
	if err != nil {
		return err
	}
	defer release()
	sums := make([]string, len(steps))
	for i, st := range steps {
		sums[i] = st.Checksum
	}
	s.allowImages(t.ServerID, sums)
	defer s.revokeImages(t.ServerID, sums)

	assign := Assignment{TaskID: t.ID, Steps: steps, AllowReboot: allowReboot(p)}
	a := &attempt{s: s, t: t, r: r, ru: ru, assign: assign, plan: p, recorded: resumed}
	if rec == recordWaiting {
		// The stored task says it waits for its agent: record the assignment before sending
		// it, or a restart in between would read "not sent". (A task without rows is recorded
		// right after the send instead, see loop: the hot path of a dispatch.)
		if err := a.recordAssigned(ctx); err != nil {
			return err
		}
	}
	return a.loop(ctx, sess)
}

// waitComponent and waitStep name the progress row of a task waiting for its agent to connect.
const (
	waitComponent = "agent"
	waitStep      = "wait"
)

// record is what the stored task says about its assignment to the agent.
type record int

const (
	// recordNone: claimed by this process, nothing sent yet.
	recordNone record = iota
	// recordWaiting: the task waited for its agent and was not assigned.
	recordWaiting
	// recordAssigned: the assignment was sent (and may have been applied).
	recordAssigned
	// recordUnknown: claimed by an earlier process that stopped before recording either; the
	// assignment may or may not have been sent.
	recordUnknown
)

// assignRecord reads t's progress rows. A task without rows that was started before this
// service was created was claimed by an earlier process, which records the assignment only
// after sending it.
func assignRecord(t *task.Task, serviceStart time.Time) record {
	for _, p := range t.Progress {
		if p.Component != waitComponent || p.Step != waitStep {
			return recordAssigned
		}
	}
	if len(t.Progress) > 0 {
		return recordWaiting
	}
	if !t.StartedAt.IsZero() && t.StartedAt.Before(serviceStart) {
		return recordUnknown
	}
	return recordNone
}

// attempt follows one assigned task across agent reconnects.
type attempt struct {
	s          *Service
	t          *task.Task
	r          task.Reporter
	ru         *run
	assign     Assignment
	plan       *task.Plan
	cancelSent bool
	rebooting  bool // the agent said it is rebooting the host
	rebooted   bool // it did, and came back
	// recorded is true once the store says the task was assigned (its "assigned" rows).
	recorded bool
}

// recordAssigned records a PENDING "assigned" row per step: from then on a restarted server
// knows it assigned the task and never re-plans it against half-updated inventory.
func (a *attempt) recordAssigned(ctx context.Context) error {
	for _, st := range a.plan.Steps {
		if err := a.r.Progress(ctx, task.Progress{Component: st.Component, Serial: st.Serial, State: task.StepPending, Step: "assigned", Message: "assigned to the agent"}); err != nil {
			return fmt.Errorf("task %s: record progress: %w", a.t.ID, err)
		}
	}
	a.recorded = true
	return nil
}

func (a *attempt) loop(ctx context.Context, sess *session) error {
	s, t := a.s, a.t
	tick := time.NewTicker(s.cfg.CancelPoll)
	defer tick.Stop()
	for {
		// (Re)assign on this stream.
		sess.assign(t.ID)
		a.cancelSent = false
		sctx, span := startAgentSpan(ctx, sess)
		err := sess.assignTask(a.assign)
		if err == nil && !a.recorded {
			// Recorded right after the send rather than before it, so the dispatch does not
			// wait for a commit. The agent's reports queue meanwhile and are applied after
			// these rows. A restart before the rows are durable finds the task claimed by an
			// earlier process without a record (recordUnknown): it is assigned again only if
			// the host still matches the plan.
			if rerr := a.recordAssigned(ctx); rerr != nil {
				if ctx.Err() != nil {
					sess.unassign(t.ID)
					return ctx.Err() // resumed by the next process
				}
				// The task fails, but the agent has it: stop it at its next safe point.
				_ = a.sendCancel(sess)
				sess.unassign(t.ID)
				return rerr
			}
		}
		if err == nil && a.r.CancelRequested() {
			err = a.sendCancel(sess)
		}
		if err == nil {
			var done bool
			done, err = a.follow(sctx, sess, tick.C)
			endAgentSpan(span, err)
			if done || ctx.Err() != nil {
				sess.unassign(t.ID)
				return err
			}
		} else {
			endAgentSpan(span, err)
		}
		sess.unassign(t.ID)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The agent went away mid-task: wait for it to come back.
		wait, code := s.cfg.LostTimeout, "went away"
		if a.rebooting {
			wait, code = s.cfg.RebootTimeout, "rebooted the host"
		}
		s.log.Info("agent gone mid-task; waiting for it", "task", t.ID, "server", t.ServerID, "wait", wait, "err", err)
		_ = a.r.Progress(ctx, task.Progress{Component: "agent", State: task.StepRunning, Step: "reconnect",
			Message: fmt.Sprintf("agent %s; waiting up to %s for it to reconnect", code, wait)})
		next, werr := s.reg.wait(ctx, t.ServerID, wait)
		if werr != nil {
			return werr
		}
		if next == nil {
			return task.Fail(task.CodeAgentLost, "", fmt.Sprintf("the agent of server %s %s and did not reconnect within %s", t.ServerID, code, wait), err)
		}
		_ = a.r.Progress(ctx, task.Progress{Component: "agent", State: task.StepSucceeded, Step: "reconnect", Percent: 100,
			Message: "the agent reconnected"})
		a.rebooted = a.rebooted || a.rebooting
		a.rebooting = false
		sess = next
	}
}

// follow relays the agent's reports until its result (done), the stream's end (retry on the
// next stream) or ctx's end.
func (a *attempt) follow(ctx context.Context, sess *session, tick <-chan time.Time) (done bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-sess.done:
			return false, fmt.Errorf("agent stream of server %s ended", sess.serverID)
		case <-tick:
			if a.r.CancelRequested() && !a.cancelSent {
				if err := a.sendCancel(sess); err != nil {
					return false, err
				}
			}
		case ev := <-a.ru.events:
			if ev.sess != sess {
				continue // a straggler from an earlier stream
			}
			if done, err := a.handle(ctx, ev.msg); done || err != nil {
				return true, err
			}
		}
	}
}

func (a *attempt) sendCancel(sess *session) error {
	a.cancelSent = true
	return sess.cancelTask(a.t.ID)
}

// handle applies one report; done is true when the task ended (err is its outcome).
func (a *attempt) handle(ctx context.Context, m Message) (done bool, err error) {
	switch x := m.(type) {
	case Ack:
		return false, nil
	case *Progress:
		if err := a.r.Progress(ctx, x.Progress); err != nil {
			return true, fmt.Errorf("task %s: record progress: %w", a.t.ID, err)
		}
		return false, nil
	case *RebootRequired:
		a.rebooting = x.Rebooting
		// Without a reboot the row is final at once (skipped: the operator reboots); with one it
		// runs until the agent reports back from the rebooted host.
		msg, state := "installed; takes effect after a host reboot (not allowed by the task: reboot it to activate)", task.StepSkipped
		if a.rebooting {
			msg, state = "installed; the agent is rebooting the host", task.StepRunning
		}
		err := a.r.Progress(ctx, task.Progress{Component: "host", State: state, Step: "reboot",
			Message: msg + ": " + strings.Join(x.Components, ", ")})
		if err != nil {
			return true, fmt.Errorf("task %s: record progress: %w", a.t.ID, err)
		}
		return false, nil
	case *Result:
		return true, a.result(ctx, x)
	}
	return false, nil
}

// writeBack records a version the agent verified in the inventory source (fleetdb), retrying
// within bounds. A failure is shown on the component as a warning, not hidden behind its
// success: the host runs the version, the inventory still states the old one.
func (a *attempt) writeBack(ctx context.Context, p task.Progress, version string) error {
	rec := a.s.cfg.Recorder
	if rec == nil {
		return nil
	}
	err := inventory.WriteBack(ctx, rec, a.s.cfg.WriteBack, a.t.ServerID, p.Component, p.Serial, version)
	if err == nil {
		return nil
	}
	a.s.log.Warn("record the verified version in the inventory", "server", a.t.ServerID, "component", p.Component, "err", err)
	p.Step, p.Message = "inventory-write-back", "warning: verified at "+version+", but "+err.Error()
	if err := a.r.Progress(ctx, p); err != nil {
		return fmt.Errorf("task %s: record progress: %w", a.t.ID, err)
	}
	return nil
}

// result turns the agent's result into Execute's return.
func (a *attempt) result(ctx context.Context, res *Result) error {
	if a.rebooted {
		if err := a.r.Progress(ctx, task.Progress{Component: "host", State: task.StepSucceeded, Step: "reboot", Percent: 100,
			Message: "the host rebooted; the agent reported back"}); err != nil {
			return fmt.Errorf("task %s: record progress: %w", a.t.ID, err)
		}
	}
	for _, c := range res.Components {
		msg := c.Message
		if c.Version != "" {
			msg = strings.TrimSpace(msg + " (reports " + c.Version + ")")
		}
		p := task.Progress{Component: c.Component, Serial: c.Serial, State: c.State,
			Step: "result", Message: msg, Attempt: c.Attempt, JobID: c.InstallID}
		if p.State == task.StepSucceeded {
			p.Percent = 100
			if c.Version != "" {
				now := a.s.cfg.Now()
				a.s.observe(ctx, inventory.Reading{ServerID: a.t.ServerID, Source: "agent", TaskID: a.t.ID, At: now,
					Components: []inventory.Component{{Slug: c.Component, Serial: c.Serial, Version: c.Version,
						VersionSource: "agent", VersionAt: now}}})
			}
		}
		if err := a.r.Progress(ctx, p); err != nil {
			return fmt.Errorf("task %s: record progress: %w", a.t.ID, err)
		}
		if p.State == task.StepSucceeded && c.Version != "" {
			if err := a.writeBack(ctx, p, c.Version); err != nil {
				return err
			}
		}
	}
	switch res.Outcome {
	case OutcomeSucceeded:
		return nil
	case OutcomeCancelled:
		return &task.CancelledError{Where: res.CancelledAt}
	default:
		code := res.FailureCode
		if code == "" {
			code = task.CodeInstallFailed
		}
		return task.Fail(code, res.FailureComponent, fmt.Sprintf("server %s: %s", a.t.ServerID, res.Message), nil)
	}
}

// sameWork reports whether two plans do the same thing, whatever their installed versions'
// provenance (where and when each was read).
func sameWork(a, b *task.Plan) bool {
	strip := func(p *task.Plan) ([]task.Step, []task.Skip) {
		steps, skips := slices.Clone(p.Steps), slices.Clone(p.Skipped)
		for i := range steps {
			steps[i].FromSource, steps[i].FromAt = "", time.Time{}
		}
		for i := range skips {
			skips[i].VersionSource, skips[i].VersionAt = "", time.Time{}
		}
		return steps, skips
	}
	as, ak := strip(a)
	bs, bk := strip(b)
	return reflect.DeepEqual(as, bs) && reflect.DeepEqual(ak, bk)
}

// replan plans t against the server's record with the components its agent reported.
func (s *Service) replan(ctx context.Context, t *task.Task, sess *session) (*task.Plan, error) {
	srv, err := s.cfg.Inventory.Server(ctx, t.ServerID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, task.Fail(task.CodeInventoryError, "", fmt.Sprintf("server %s: %v", t.ServerID, err), err)
	}
	sess.mu.Lock()
	comps := append([]inventory.Component(nil), sess.comps...)
	sess.mu.Unlock()
	return s.planner.Replan(ctx, t, srv, mergeFlags(comps, srv.Components), "the agent's inventory")
}

// mergeFlags keeps the inventory source's update methods for the components the agent reports:
// a component the source marks out-of-band only stays out of in-band plans.
func mergeFlags(agent, source []inventory.Component) []inventory.Component {
	for i, c := range agent {
		for _, sc := range source {
			if firmware.NormalizeSlug(sc.Slug) != firmware.NormalizeSlug(c.Slug) || (sc.Serial != "" && sc.Serial != c.Serial) {
				continue
			}
			if sc.InBand || sc.OutOfBand {
				agent[i].InBand, agent[i].OutOfBand = sc.InBand, sc.OutOfBand
			}
			break
		}
	}
	return agent
}

// images brings every step's image into the artifact cache and returns the assigned steps.
// The images stay pinned until release, so they are not evicted while the agent downloads.
func (s *Service) fetchImages(ctx context.Context, t *task.Task, p *task.Plan) ([]AssignedStep, func(), error) {
	var held []*artifact.Artifact
	release := func() {
		for _, h := range held {
			h.Release()
		}
	}
	steps := make([]AssignedStep, 0, len(p.Steps))
	for _, st := range p.Steps {
		h, err := s.cfg.Images.Fetch(ctx, st.URL, st.Checksum)
		if err != nil {
			release()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, task.Fail(task.CodeImageUnavailable, st.Component,
				fmt.Sprintf("server %s: image %s for %s %s: %v", t.ServerID, st.Filename, st.Component, st.ToVersion, err), err)
		}
		held = append(held, h)
		steps = append(steps, AssignedStep{
			Component: st.Component, Serial: st.Serial, Vendor: st.Vendor, Model: st.Model,
			FromVersion: st.FromVersion, ToVersion: st.ToVersion, Checksum: h.Checksum(), Size: h.Size(),
			Filename: st.Filename, Force: st.Force || st.Downgrade || st.Reinstall,
		})
	}
	return steps, release, nil
}

// allowReboot reports whether the task lets the agent reboot the host: a step asks for a host
// reset or power cycle after it.
func allowReboot(p *task.Plan) bool {
	for _, st := range p.Steps {
		for _, a := range st.PostActions {
			if a == task.ActionResetHost || a == task.ActionPowerCycleHost {
				return true
			}
		}
	}
	return false
}
