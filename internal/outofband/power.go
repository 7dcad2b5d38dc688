package outofband

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

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
	if err := rn.progress(st, task.Progress{Step: "power-" + state, Message: "powering the host " + state + ": " + why}); err != nil {
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

// powerCycle restarts the host, or powers it on when it is off. A refused request is retried
// once after reading the state (the remembered one may be stale); a request that timed out is
// never repeated: a slow BMC may still carry it out, and a second one would restart the host
// twice.
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
		if err := rn.progress(st, task.Progress{Step: "powercycle-host", Message: "host power " + action + ": " + why}); err != nil {
			return err
		}
		known := rn.hostNow != ""
		rn.hostNow = ""
		err = rn.sess.SetPower(ctx, action)
		if err == nil {
			rn.hostNow = "On"
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if classify(err) == classTimeout {
			now, rerr := rn.sess.PowerState(ctx)
			if rerr == nil && action == "on" && strings.EqualFold(now, "on") {
				rn.hostNow = now
				return nil // it was carried out, late
			}
			state := "unknown"
			if rerr == nil {
				state = now
			}
			return task.Fail(task.CodeTimeout, stepName(st), fmt.Sprintf("power %s: %v; the host now reports %s; not repeated: the BMC may still carry it out", action, err, state), err)
		}
		if attempt > 1 || !known {
			return rn.powerFailure(ctx, stepName(st), "power "+action, err)
		}
		// The state this run remembered may be stale (someone else changed it): read it and retry once.
	}
}

// resetBMC restarts the BMC and waits until it answers again.
func (rn *run) resetBMC(ctx context.Context, st task.Step, to Timeouts) error {
	name := stepName(st)
	if err := rn.progress(st, task.Progress{Step: "reset-bmc", Message: "resetting the BMC"}); err != nil {
		return err
	}
	if err := rn.sess.ResetBMC(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return task.Fail(task.CodeBMCResetFailed, name, "the BMC refused the reset: "+bmcMessage(err), err)
	}
	// Wait to see it go down (bounded: a quick reset may never be seen), then until it answers
	// ReadyReads times in a row: a BMC coming up answers once before its services are ready.
	down := time.Now().Add(to.Call)
	for time.Now().Before(down) && dialable(rn.sess.Target()) {
		if err := sleep(ctx, min(to.PollInterval, 200*time.Millisecond)); err != nil {
			return err
		}
	}
	return rn.waitReady(ctx, name, to, "after its reset")
}

// waitReady waits until the BMC answers ReadyReads reads in a row, within BMCReboot.
func (rn *run) waitReady(ctx context.Context, name string, to Timeouts, why string) error {
	start := time.Now()
	good := 0
	for {
		_, err := rn.sess.PowerState(ctx)
		if err == nil {
			if good++; good >= to.ReadyReads {
				return nil
			}
		} else {
			good = 0
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Since(start) > to.BMCReboot {
				return rn.failure(ctx, name, fmt.Sprintf("wait for the BMC %s (%s)", why, to.BMCReboot), err)
			}
		}
		if err := sleep(ctx, to.PollInterval); err != nil {
			return err
		}
	}
}
