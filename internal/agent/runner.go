package agent

import (
	"context"
	"fmt"
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

// runTask applies an assignment, step by step, recording each install in the state dir before
// and after it runs. It returns without a result only when ctx ends (or the host is rebooting):
// the next agent process continues from the state dir.
func (a *Agent) runTask(ctx context.Context, as *flasherv1.Assignment, tr *taskRun) {
	id := as.GetTaskId()
	log := a.log.With("task", id)
	rec, err := a.state.Load(id)
	if err != nil {
		a.sendResult(&TaskRecord{TaskID: id}, &Result{Outcome: "failed", Code: CodeAgentState, Message: err.Error()})
		return
	}
	if rec == nil {
		rec = &TaskRecord{TaskID: id}
		for _, st := range as.GetSteps() {
			rec.Steps = append(rec.Steps, StepRecord{Component: st.GetComponent(), Serial: st.GetSerial(), Checksum: st.GetChecksum(), ToVersion: st.GetToVersion(), State: stepPending})
		}
		if err := a.state.Save(rec); err != nil {
			log.Error("state dir", "err", err)
			return // without a record the agent cannot promise not to install twice
		}
	} else if !sameSteps(rec, as) {
		a.finish(rec, &Result{Outcome: "failed", Code: CodeAssignmentChanged, Message: "the assignment differs from the one recorded for this task"})
		return
	}
	if rec.Result != nil {
		log.Info("task already ended here; reporting its result again", "outcome", rec.Result.Outcome)
		a.sendResult(rec, rec.Result)
		return
	}

	for i, st := range as.GetSteps() {
		sr := &rec.Steps[i]
		if sr.State == stepApplied {
			a.progress(id, sr, flasherv1.StepState_STEP_STATE_SUCCEEDED, "done", 100, "applied earlier: "+sr.Message)
			continue
		}
		name := strings.TrimSpace(st.GetComponent() + " " + st.GetSerial())
		if tr.cancel.Load() {
			a.finish(rec, &Result{Outcome: "cancelled", CancelledAt: "before " + name})
			return
		}
		if sr.State == stepStarted {
			// Interrupted (crash, kill, power loss) while the tool ran: the host says whether it
			// took the image. Applied → never run again.
			done, err := a.checkInterrupted(ctx, sr, st)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.finish(rec, &Result{Outcome: "failed", Code: CodeInstallInterrupted, Component: st.GetComponent(), Message: err.Error()})
				return
			}
			if done {
				if err := a.state.Save(rec); err != nil {
					log.Error("state dir", "err", err)
					return
				}
				a.progress(id, sr, flasherv1.StepState_STEP_STATE_SUCCEEDED, "verify", 100, sr.Message)
				continue
			}
		}

		a.progress(id, sr, flasherv1.StepState_STEP_STATE_RUNNING, "download", 0, fmt.Sprintf("downloading %s (%d bytes)", st.GetFilename(), st.GetSize()))
		path, err := a.fetchImage(ctx, st.GetChecksum(), st.GetFilename(), st.GetSize())
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.finish(rec, &Result{Outcome: "failed", Code: CodeImageUnavailable, Component: st.GetComponent(), Message: fmt.Sprintf("%s: %v", name, err)})
			return
		}
		if tr.cancel.Load() {
			a.finish(rec, &Result{Outcome: "cancelled", CancelledAt: "before " + name + " install (image downloaded)"})
			return
		}

		sr.State = stepStarted
		sr.Attempts++
		sr.InstallID = fmt.Sprintf("%s/%d/%d", id, i, sr.Attempts)
		sr.StartedAt = time.Now().UTC()
		if err := a.state.Save(rec); err != nil {
			log.Error("state dir", "err", err)
			return
		}
		a.progress(id, sr, flasherv1.StepState_STEP_STATE_RUNNING, "install", 20, fmt.Sprintf("installing %s %s → %s", name, st.GetFromVersion(), st.GetToVersion()))
		reboot, err := a.host.Install(ctx, Install{
			Slug: st.GetComponent(), Vendor: st.GetVendor(), Model: st.GetModel(), Serial: st.GetSerial(),
			File: path, Force: st.GetForce(),
		})
		if ctx.Err() != nil {
			// Shutting down: the tool was stopped or abandoned. The record stays "started" and
			// the next process asks the host what happened.
			log.Warn("stopped during install", "component", name, "err", err)
			return
		}
		sr.FinishedAt = time.Now().UTC()
		if err != nil {
			sr.State, sr.Message = stepFailed, err.Error()
			a.finish(rec, &Result{Outcome: "failed", Code: CodeInstallFailed, Component: st.GetComponent(), Message: fmt.Sprintf("%s: %v", name, err)})
			return
		}
		sr.State, sr.RebootRequired = stepApplied, reboot
		sr.Message = "applied"
		if reboot {
			sr.Message = "applied; active after a host reboot"
		}
		if err := a.state.Save(rec); err != nil {
			log.Error("state dir", "err", err)
			return
		}
		if !reboot {
			if err := a.verify(ctx, sr); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.finish(rec, &Result{Outcome: "failed", Code: CodeVerifyFailed, Component: st.GetComponent(), Message: fmt.Sprintf("%s: %v", name, err)})
				return
			}
		}
		a.progress(id, sr, flasherv1.StepState_STEP_STATE_SUCCEEDED, "install", 100, sr.Message)
	}

	var pending []string
	for _, sr := range rec.Steps {
		if sr.RebootRequired {
			pending = append(pending, strings.TrimSpace(sr.Component+" "+sr.Serial))
		}
	}
	if len(pending) > 0 {
		if rec.RebootStarted {
			// This process started after the reboot this task asked for: check the versions.
			for i := range rec.Steps {
				sr := &rec.Steps[i]
				if !sr.RebootRequired {
					continue
				}
				if err := a.verify(ctx, sr); err != nil {
					if ctx.Err() != nil {
						return
					}
					a.finish(rec, &Result{Outcome: "failed", Code: CodeVerifyFailed, Component: sr.Component, Message: fmt.Sprintf("after reboot: %v", err)})
					return
				}
				sr.Message = "applied; active after reboot"
			}
		} else if as.GetAllowReboot() && a.cfg.Reboot != nil {
			rec.RebootStarted = true
			if err := a.state.Save(rec); err != nil {
				log.Error("state dir", "err", err)
				return
			}
			a.report(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_RebootRequired{RebootRequired: &flasherv1.RebootRequired{TaskId: id, Components: pending, Rebooting: true}}})
			log.Info("rebooting the host", "components", pending)
			if err := a.cfg.Reboot(ctx); err != nil {
				rec.RebootStarted = false
				a.finish(rec, &Result{Outcome: "failed", Code: CodeRebootFailed, Message: err.Error()})
			}
			// The host goes down; the next agent process verifies and reports.
			return
		} else {
			a.report(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_RebootRequired{RebootRequired: &flasherv1.RebootRequired{TaskId: id, Components: pending}}})
		}
	}
	a.finish(rec, &Result{Outcome: "succeeded"})
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
