package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// Failure codes the agent reports.
const (
	CodeInstallFailed      = "INSTALL_FAILED"
	CodeInstallInterrupted = "INSTALL_INTERRUPTED"
	CodeVerifyFailed       = "VERIFY_FAILED"
	CodeImageUnavailable   = "IMAGE_UNAVAILABLE"
	CodeRebootFailed       = "REBOOT_FAILED"
	CodeAssignmentChanged  = "ASSIGNMENT_CHANGED"
	CodeAgentState         = "AGENT_STATE"
)

// taskRun is a task the agent is working on.
type taskRun struct {
	cancel atomic.Bool
}

// assigned starts (or, when it runs already, only acknowledges) an assigned task. The task runs
// under the agent's context, not the stream's: a dropped connection does not stop an install.
func (a *Agent) assigned(ctx context.Context, stream flasherv1.AgentService_ConnectClient, as *flasherv1.Assignment) {
	a.mu.Lock()
	if _, running := a.tasks[as.GetTaskId()]; !running {
		tr := &taskRun{}
		a.tasks[as.GetTaskId()] = tr
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() {
				a.mu.Lock()
				delete(a.tasks, as.GetTaskId())
				a.mu.Unlock()
			}()
			a.runTask(ctx, as, tr)
		}()
	}
	a.mu.Unlock()
	_ = a.sendOn(stream, &flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Ack{Ack: &flasherv1.AssignmentAck{TaskId: as.GetTaskId()}}})
}

// run is one task being applied: the assignment, its record in the state dir and the cancel
// flag. Each of its methods is one step of runTask; a method that returns false has ended the
// task (with a result) or stopped it (ctx ended: the next agent process continues from the
// state dir).
type run struct {
	a   *Agent
	as  *flasherv1.Assignment
	tr  *taskRun
	rec *TaskRecord
	log *slog.Logger
}

// runTask applies an assignment, step by step, recording each install in the state dir before
// and after it runs. It returns without a result only when ctx ends (or the host is rebooting):
// the next agent process continues from the state dir.
func (a *Agent) runTask(ctx context.Context, as *flasherv1.Assignment, tr *taskRun) {
	r := &run{a: a, as: as, tr: tr, log: a.log.With("task", as.GetTaskId())}
	if !r.open() {
		return
	}
	for i, st := range as.GetSteps() {
		if !r.step(ctx, i, st) {
			return
		}
	}
	r.conclude(ctx)
}

// open loads the task's record, or creates it from the assignment. A task that ended here
// already is reported again; an assignment that differs from the record is refused.
func (r *run) open() bool {
	id := r.as.GetTaskId()
	rec, err := r.a.state.Load(id)
	if err != nil {
		r.a.sendResult(&TaskRecord{TaskID: id}, &Result{Outcome: "failed", Code: CodeAgentState, Message: err.Error()})
		return false
	}
	if rec == nil {
		rec = &TaskRecord{TaskID: id}
		for _, st := range r.as.GetSteps() {
			rec.Steps = append(rec.Steps, StepRecord{Component: st.GetComponent(), Serial: st.GetSerial(), Checksum: st.GetChecksum(), ToVersion: st.GetToVersion(), State: stepPending})
		}
		r.rec = rec
		return r.save() // without a record the agent cannot promise not to install twice
	}
	r.rec = rec
	if !sameSteps(rec, r.as) {
		r.a.finish(rec, &Result{Outcome: "failed", Code: CodeAssignmentChanged, Message: "the assignment differs from the one recorded for this task"})
		return false
	}
	if rec.Result != nil {
		r.log.Info("task already ended here; reporting its result again", "outcome", rec.Result.Outcome)
		r.a.sendResult(rec, rec.Result)
		return false
	}
	return true
}

// save records the task; a task whose record cannot be written stops.
func (r *run) save() bool {
	if err := r.a.state.Save(r.rec); err != nil {
		r.log.Error("state dir", "err", err)
		return false
	}
	return true
}

func (r *run) fail(code, component, msg string) bool {
	r.a.finish(r.rec, &Result{Outcome: "failed", Code: code, Component: component, Message: msg})
	return false
}

func (r *run) cancelled(at string) bool {
	r.a.finish(r.rec, &Result{Outcome: "cancelled", CancelledAt: at})
	return false
}

// step applies step i: it waits for any vendor tool still running, settles an interrupted
// install, downloads the image and installs it.
func (r *run) step(ctx context.Context, i int, st *flasherv1.AssignedStep) bool {
	sr := &r.rec.Steps[i]
	if sr.State == stepApplied {
		r.a.progress(r.rec.TaskID, sr, flasherv1.StepState_STEP_STATE_SUCCEEDED, "done", 100, "applied earlier: "+sr.Message)
		return true
	}
	name := strings.TrimSpace(st.GetComponent() + " " + st.GetSerial())
	if r.tr.cancel.Load() {
		return r.cancelled("before " + name)
	}
	lock, err := r.a.lockApply(ctx, func(pids []int, prev *ApplyRecord) { r.waitingForTool(sr, pids, prev) })
	if err != nil {
		if ctx.Err() == nil {
			return r.fail(CodeAgentState, st.GetComponent(), err.Error())
		}
		return false
	}
	defer lock.close()
	if sr.State == stepStarted {
		applied, ok := r.settleInterrupted(ctx, sr, st)
		if !ok || applied {
			return ok
		}
	}
	r.a.progress(r.rec.TaskID, sr, flasherv1.StepState_STEP_STATE_RUNNING, "download", 0, fmt.Sprintf("downloading %s (%d bytes)", st.GetFilename(), st.GetSize()))
	path, err := r.a.fetchImage(ctx, st.GetChecksum(), st.GetFilename(), st.GetSize())
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		return r.fail(CodeImageUnavailable, st.GetComponent(), fmt.Sprintf("%s: %v", name, err))
	}
	if r.tr.cancel.Load() {
		return r.cancelled("before " + name + " install (image downloaded)")
	}
	return r.install(ctx, i, st, sr, name, path, lock)
}

// waitingForTool reports that the step waits for vendor tools an earlier agent process left
// running: starting another tool now could flash the component twice at once.
func (r *run) waitingForTool(sr *StepRecord, pids []int, prev *ApplyRecord) {
	msg := fmt.Sprintf("waiting for the vendor tool still running from an earlier install (pids %v) to exit", pids)
	if prev != nil {
		msg = fmt.Sprintf("waiting for the vendor tool of install %s (%s %s, started %s by agent pid %d; pids %v) to exit",
			prev.InstallID, prev.Component, prev.Serial, prev.StartedAt.Format(time.RFC3339), prev.AgentPID, pids)
	}
	r.log.Warn(msg)
	r.a.progress(r.rec.TaskID, sr, flasherv1.StepState_STEP_STATE_RUNNING, "wait", 0, msg)
}

// settleInterrupted decides a step that was interrupted (crash, kill, power loss) while its tool
// ran, now that no tool runs: the host says whether it took the image. Applied → never run
// again. ok is false when the task ended or stopped.
func (r *run) settleInterrupted(ctx context.Context, sr *StepRecord, st *flasherv1.AssignedStep) (applied, ok bool) {
	done, err := r.a.checkInterrupted(ctx, sr, st)
	if ctx.Err() != nil {
		return false, false
	}
	if err != nil {
		return false, r.fail(CodeInstallInterrupted, st.GetComponent(), err.Error())
	}
	if !done {
		return false, true
	}
	if !r.save() {
		return false, false
	}
	r.a.progress(r.rec.TaskID, sr, flasherv1.StepState_STEP_STATE_SUCCEEDED, "verify", 100, sr.Message)
	return true, true
}

// install runs the vendor tool under the apply lock, recorded as started before it runs and
// as applied or failed after, then verifies the version when no reboot is needed.
func (r *run) install(ctx context.Context, i int, st *flasherv1.AssignedStep, sr *StepRecord, name, path string, lock *applyLock) bool {
	sr.State = stepStarted
	sr.Attempts++
	sr.InstallID = fmt.Sprintf("%s/%d/%d", r.rec.TaskID, i, sr.Attempts)
	sr.StartedAt = time.Now().UTC()
	if !r.save() {
		return false
	}
	if err := r.a.state.writeApplyRecord(ApplyRecord{TaskID: r.rec.TaskID, InstallID: sr.InstallID, Component: sr.Component,
		Serial: sr.Serial, AgentPID: r.a.pid, StartedAt: sr.StartedAt}); err != nil {
		return r.fail(CodeAgentState, st.GetComponent(), err.Error())
	}
	if err := lock.inheritable(); err != nil {
		return r.fail(CodeAgentState, st.GetComponent(), err.Error())
	}
	r.a.progress(r.rec.TaskID, sr, flasherv1.StepState_STEP_STATE_RUNNING, "install", 20, fmt.Sprintf("installing %s %s → %s", name, st.GetFromVersion(), st.GetToVersion()))
	reboot, err := r.a.host.Install(ctx, Install{
		Slug: st.GetComponent(), Vendor: st.GetVendor(), Model: st.GetModel(), Serial: st.GetSerial(),
		File: path, Force: st.GetForce(),
	})
	if ctx.Err() != nil {
		// Shutting down: the tool was stopped or abandoned (it keeps the apply lock while it
		// runs). The record stays "started" and the next process asks the host what happened.
		r.log.Warn("stopped during install", "target", name, "err", err)
		return false
	}
	sr.FinishedAt = time.Now().UTC()
	if err != nil {
		sr.State, sr.Message = stepFailed, err.Error()
		return r.fail(CodeInstallFailed, st.GetComponent(), fmt.Sprintf("%s: %v", name, err))
	}
	sr.State, sr.RebootRequired = stepApplied, reboot
	sr.Message = "applied"
	if reboot {
		sr.Message = "applied; active after a host reboot"
	}
	if !r.save() {
		return false
	}
	if !reboot {
		if err := r.a.verify(ctx, sr); err != nil {
			if ctx.Err() != nil {
				return false
			}
			return r.fail(CodeVerifyFailed, st.GetComponent(), fmt.Sprintf("%s: %v", name, err))
		}
	}
	r.a.progress(r.rec.TaskID, sr, flasherv1.StepState_STEP_STATE_SUCCEEDED, "install", 100, sr.Message)
	return true
}

// conclude ends a task whose steps all ran: it verifies after the reboot this task asked for,
// reboots when the task allows it, or reports the pending reboot, then reports the result.
func (r *run) conclude(ctx context.Context) {
	var pending []string
	for _, sr := range r.rec.Steps {
		if sr.RebootRequired {
			pending = append(pending, strings.TrimSpace(sr.Component+" "+sr.Serial))
		}
	}
	switch {
	case len(pending) == 0:
	case r.rec.RebootStarted:
		if !r.verifyAfterReboot(ctx) {
			return
		}
	case r.as.GetAllowReboot() && r.a.cfg.Reboot != nil:
		r.reboot(ctx, pending)
		return // the host goes down; the next agent process verifies and reports
	default:
		r.a.report(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_RebootRequired{RebootRequired: &flasherv1.RebootRequired{TaskId: r.rec.TaskID, Components: pending}}})
	}
	r.a.finish(r.rec, &Result{Outcome: "succeeded"})
}

// verifyAfterReboot checks the versions in the agent process that started after the reboot
// this task asked for.
func (r *run) verifyAfterReboot(ctx context.Context) bool {
	for i := range r.rec.Steps {
		sr := &r.rec.Steps[i]
		if !sr.RebootRequired {
			continue
		}
		if err := r.a.verify(ctx, sr); err != nil {
			if ctx.Err() != nil {
				return false
			}
			return r.fail(CodeVerifyFailed, sr.Component, fmt.Sprintf("after reboot: %v", err))
		}
		sr.Message = "applied; active after reboot"
	}
	return true
}

// reboot records that the reboot started, tells the server and reboots the host.
func (r *run) reboot(ctx context.Context, pending []string) {
	r.rec.RebootStarted = true
	if !r.save() {
		return
	}
	r.a.report(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_RebootRequired{RebootRequired: &flasherv1.RebootRequired{TaskId: r.rec.TaskID, Components: pending, Rebooting: true}}})
	r.log.Info("rebooting the host", "components", pending)
	if err := r.a.cfg.Reboot(ctx); err != nil {
		r.rec.RebootStarted = false
		r.fail(CodeRebootFailed, "", err.Error())
	}
}

// checkInterrupted decides an interrupted step from the host's inventory: at the target version
// it was applied; otherwise it may run again while attempts remain.
func (a *Agent) checkInterrupted(ctx context.Context, sr *StepRecord, st *flasherv1.AssignedStep) (applied bool, err error) {
	inv, err := a.host.Inventory(ctx)
	if err != nil {
		return false, fmt.Errorf("interrupted install of %s: inventory: %w", st.GetComponent(), err)
	}
	if c, ok := inv.Find(sr.Component, sr.Serial); ok && sameVersion(c.Version, sr.ToVersion) && !st.GetForce() {
		sr.State, sr.Version = stepApplied, c.Version
		sr.Message = "the interrupted install had applied it"
		return true, nil
	}
	if sr.Attempts >= a.cfg.MaxAttempts {
		return false, fmt.Errorf("install of %s %s was interrupted %d time(s); not trying again", sr.Component, sr.Serial, sr.Attempts)
	}
	return false, nil
}

// verify checks that the host reports the step's target version.
func (a *Agent) verify(ctx context.Context, sr *StepRecord) error {
	inv, err := a.host.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	c, ok := inv.Find(sr.Component, sr.Serial)
	if !ok {
		return fmt.Errorf("%s %s is no longer in the host's inventory", sr.Component, sr.Serial)
	}
	sr.Version = c.Version
	if !sameVersion(c.Version, sr.ToVersion) {
		return fmt.Errorf("the host reports version %q after the install, want %q", c.Version, sr.ToVersion)
	}
	return nil
}

func sameVersion(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

func sameSteps(rec *TaskRecord, as *flasherv1.Assignment) bool {
	if len(rec.Steps) != len(as.GetSteps()) {
		return false
	}
	for i, st := range as.GetSteps() {
		if rec.Steps[i].Checksum != st.GetChecksum() || rec.Steps[i].Component != st.GetComponent() || rec.Steps[i].Serial != st.GetSerial() {
			return false
		}
	}
	return true
}

func (a *Agent) progress(taskID string, sr *StepRecord, state flasherv1.StepState, step string, pct int32, msg string) {
	a.report(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Progress{Progress: &flasherv1.AgentProgress{
		TaskId: taskID, Component: sr.Component, Serial: sr.Serial, State: state, Step: step, Percent: pct,
		Message: truncate(msg, 4000), Attempt: int32(sr.Attempts), InstallId: sr.InstallID,
	}}})
}

// finish records the task's result durably, then reports it.
func (a *Agent) finish(rec *TaskRecord, res *Result) {
	rec.Result = res
	if err := a.state.Save(rec); err != nil {
		a.log.Error("state dir: result not recorded", "task", rec.TaskID, "err", err)
	}
	a.sendResult(rec, res)
}

func (a *Agent) sendResult(rec *TaskRecord, res *Result) {
	out := &flasherv1.AgentResult{TaskId: rec.TaskID, FailureCode: res.Code, FailureComponent: res.Component,
		Message: truncate(res.Message, 4000), CancelledAt: res.CancelledAt}
	switch res.Outcome {
	case "succeeded":
		out.Outcome = flasherv1.AgentResult_OUTCOME_SUCCEEDED
	case "cancelled":
		out.Outcome = flasherv1.AgentResult_OUTCOME_CANCELLED
	default:
		out.Outcome = flasherv1.AgentResult_OUTCOME_FAILED
	}
	for _, sr := range rec.Steps {
		st := flasherv1.StepState_STEP_STATE_PENDING
		switch sr.State {
		case stepApplied:
			st = flasherv1.StepState_STEP_STATE_SUCCEEDED
		case stepFailed:
			st = flasherv1.StepState_STEP_STATE_FAILED
		}
		out.Components = append(out.Components, &flasherv1.ComponentOutcome{Component: sr.Component, Serial: sr.Serial, State: st,
			Version: sr.Version, RebootRequired: sr.RebootRequired, Message: truncate(sr.Message, 4000),
			Attempt: int32(sr.Attempts), InstallId: sr.InstallID})
	}
	a.report(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Result{Result: out}})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
