package outofband

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/task"
)

// finish ends a run. On shutdown it does nothing (the resumed task carries on). Otherwise it
// settles the jobs this task left on the BMC (deleted where the BMC allows, else named as
// pending), restores the host's power state unless that would boot a pending job, and completes
// a failure or cancel with what was observed on the server.
func (rn *run) finish(rctx context.Context, err error) error {
	if rn.wctx.Err() != nil {
		return rn.wctx.Err()
	}
	ctx := rn.wctx // cleanup is not stopped by the cancel request; each call has its deadline
	var ce *task.CancelledError
	cancelled := errors.Is(context.Cause(rctx), errCancelRequested) && (err == nil || errors.Is(err, context.Canceled))
	if cancelled {
		ce = &task.CancelledError{Where: "during " + rn.at}
		if rn.at == "" {
			ce.Where = "at login"
		}
	} else if !errors.As(err, &ce) {
		ce = nil
	}
	var fe *task.FailureError
	if err == nil && ce == nil {
		if rerr := rn.restorePower(ctx, false); rerr != nil {
			return rn.powerFailure(ctx, "", "restore the host power state "+rn.power, rerr)
		}
		return nil
	}
	if ce == nil && !errors.As(err, &fe) {
		return err
	}
	pending, holdBoot, still := rn.settleOpen(ctx)
	rn.pending = rn.pending || still
	restore := ""
	if rerr := rn.restorePower(ctx, holdBoot); rerr != nil {
		restore = "; restoring host power failed: " + bmcMessage(rerr)
	} else if holdBoot && strings.EqualFold(rn.power, "on") && !strings.EqualFold(rn.hostNow, "on") {
		restore = "; the host is left powered off: powering it on would run the pending job"
	}
	if ce != nil {
		// At a safe point between steps nothing is in flight: the safe point says it all.
		if cancelled || pending != "" {
			ce.Where += pending + rn.changes(ctx) + restore
		}
		return ce
	}
	tail := pending + rn.changes(ctx) + restore
	fe.Message += tail
	return fe
}

// settleOpen deletes the jobs of this task that have not run, where the BMC allows it, and says
// what is still pending otherwise. holdBoot says a job may run at the next host boot.
func (rn *run) settleOpen(ctx context.Context) (msg string, holdBoot, pending bool) {
	if rn.sess == nil {
		return "", false, false
	}
	var parts []string
	for _, o := range rn.open {
		comp := stepName(o.step)
		j, err := rn.sess.Job(ctx, o.id)
		switch {
		case errors.Is(err, errJobNotFound):
			continue
		case err != nil:
			holdBoot, pending = true, true
			parts = append(parts, fmt.Sprintf("BMC job %s state unknown (could not read it: %s): it may still change %s", o.id, bmcMessage(err), comp))
			continue
		case j.Final():
			continue
		}
		derr := rn.sess.DeleteJob(ctx, o.id)
		switch {
		case derr == nil:
			parts = append(parts, fmt.Sprintf("BMC job %s deleted (it was %s and had not applied)", o.id, j.State))
			rn.log.Info("deleted the pending BMC job of a failed task", "component", comp, "job", o.id)
			continue
		case PhaseOf(j.State) == PhaseScheduled:
			holdBoot, pending = true, true
			parts = append(parts, fmt.Sprintf("job %s scheduled; it applies %s at the next host reboot", o.id, comp))
		default:
			pending = true
			holdBoot = holdBoot || PhaseOf(j.State) == PhaseUnknown
			parts = append(parts, fmt.Sprintf("%s still on the BMC: it may still change %s", j.describe(), comp))
		}
		if !errors.Is(derr, errNotDeletable) {
			parts[len(parts)-1] += " (the BMC refused to delete it: " + bmcMessage(derr) + ")"
		}
	}
	rn.open = nil
	if len(parts) == 0 {
		return "", holdBoot, pending
	}
	return "; " + strings.Join(parts, "; "), holdBoot, pending
}

// restorePower puts the host back in the power state it had before the task. holdBoot leaves
// an off host off: a pending job would run at its boot.
func (rn *run) restorePower(ctx context.Context, holdBoot bool) error {
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
	rn.hostNow = cur
	if strings.EqualFold(cur, want) || (holdBoot && want == "on") {
		return nil
	}
	rn.log.Info("restoring host power", "state", want)
	if err := rn.sess.SetPower(ctx, want); err != nil {
		return err
	}
	rn.hostNow = rn.power
	return nil
}

// snapshot is the pre-update snapshot: the first live re-plan's, kept across restarts, so that a
// resumed task reports the changes made before the restart too; this run's re-plan on a first run.
func (rn *run) snapshot() []task.Installed {
	if len(rn.t.Replans) > 0 {
		return rn.t.PreUpdateSnapshot()
	}
	return rn.plan.Snapshot
}

// changes says what changed on the server, from a fresh read of the BMC compared with the
// plan's snapshot. It never says "nothing was changed" without that read: when the BMC cannot be
// read, it says the changes are unknown, and which steps were verified before.
func (rn *run) changes(ctx context.Context) string {
	if rn.plan == nil {
		return ""
	}
	if rn.changed != "" {
		return rn.changed
	}
	var err error = errNoSession
	if rn.sess != nil {
		wait := newBackoff(rn.to)
		for attempt := 1; attempt <= 3; attempt++ {
			if err = rn.readInventory(ctx); err == nil || ctx.Err() != nil {
				break
			}
			if sleep(ctx, wait.NextBackOff()) != nil {
				break
			}
		}
	}
	if err != nil {
		switch {
		case !rn.touched:
			rn.changed = "; nothing was changed on the server: no image was uploaded"
		case len(rn.done) > 0:
			rn.changed = fmt.Sprintf("; changes on the server unknown: could not re-read the BMC (%s); verified before: %s", bmcMessage(err), strings.Join(rn.done, ", "))
		default:
			rn.changed = fmt.Sprintf("; changes on the server unknown: could not re-read the BMC (%s)", bmcMessage(err))
		}
		return rn.changed
	}
	rn.observe(rn.live)
	var changed []string
	for _, s := range rn.snapshot() {
		if c := findComponent(rn.live, s.Component, s.Serial); c != nil && c.Version != s.Version {
			n := s.Component
			if s.Serial != "" {
				n += " " + s.Serial
			}
			changed = append(changed, fmt.Sprintf("%s %s→%s", n, s.Version, c.Version))
		}
	}
	if len(changed) == 0 && rn.pending {
		rn.changed = "; no version change seen on the server so far (re-read)"
	} else if len(changed) == 0 {
		rn.changed = "; nothing was changed on the server (re-read after the failure)"
	} else {
		rn.changed = "; partially applied, changed on the server: " + strings.Join(changed, ", ")
	}
	return rn.changed
}

var errNoSession = errors.New("no session with the BMC")

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
		if ce.class == classTLS {
			return task.Fail(task.CodeBMCTLSFailed, component, what+": "+tlsCause(ce.err)+" ("+bmcMessage(ce.err)+"); not retried", err)
		}
		return task.Fail(ce.code(), component, what+": "+bmcMessage(ce.err)+fmt.Sprintf(" (%d attempt(s))", ce.attempts), err)
	}
	if httpStatus(err) == 503 {
		return task.Fail(task.CodeBMCBusy, component, what+": the BMC is busy: "+bmcMessage(err), err)
	}
	switch classify(err) {
	case classTLS:
		return task.Fail(task.CodeBMCTLSFailed, component, what+": "+tlsCause(err)+" ("+bmcMessage(err)+")", err)
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
