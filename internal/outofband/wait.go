package outofband

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// errJobGone says the BMC no longer knows the job (OpenBMC forgets tasks when it reboots, and a
// BMC flashing itself goes away): the installed version decides, never the lost handle.
var errJobGone = errors.New("the BMC no longer knows the job")

// pollWait spaces the reads of a wait: it starts at PollInterval and grows by half at every read
// that shows no change, up to MaxPollInterval, so a long job costs a few requests a minute; a
// change brings it back to PollInterval.
type pollWait struct {
	to  Timeouts
	cur time.Duration
}

func (p *pollWait) next(changed bool) time.Duration {
	if changed || p.cur == 0 {
		p.cur = p.to.PollInterval
		return p.cur
	}
	p.cur = min(p.cur+p.cur/2, max(p.to.MaxPollInterval, p.to.PollInterval))
	return p.cur
}

// wait polls one job (one request per poll) until it ends, power-cycling the host once when the
// job waits for a host reboot. Every state maps to a phase: an unknown one fails after
// UnknownState with the BMC's words. as is the progress step it is recorded under
// (install-status; upload-status for the verify task of a staged image).
func (rn *run) wait(ctx context.Context, st task.Step, to Timeouts, jobID, as string) error {
	name := stepName(st)
	start := time.Now()
	var (
		pw          = pollWait{to: to}
		errs        int
		cycled      bool
		seenRunning bool
		last        Job
		unknownAt   time.Time
	)
	for {
		j, err := rn.sess.Job(ctx, jobID)
		changed := false
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, errJobNotFound) {
				return rn.jobGone(st, jobID, "the BMC no longer lists it")
			}
			if isBMC(st.Component) && seenRunning {
				if c := classify(err); c == classUnreachable || c == classTimeout {
					return rn.jobGone(st, jobID, "the BMC went down while flashing itself")
				}
			}
			errs++
			if err := rn.progress(st, task.Progress{Step: as, Percent: last.Percent, Attempt: errs,
				Message: fmt.Sprintf("status poll %d of %d failed: %s", errs, to.PollErrors, bmcMessage(err))}); err != nil {
				return err
			}
			if errs >= to.PollErrors {
				return rn.failure(ctx, name, "poll job "+jobID, err)
			}
		default:
			errs = 0
			changed = j.State != last.State || j.Percent != last.Percent
			last = j
			switch PhaseOf(j.State) {
			case PhaseSucceeded:
				rn.closeJob(jobID)
				return rn.progress(st, task.Progress{Step: as, Percent: 100, Message: j.describe()})
			case PhaseFailed:
				rn.closeJob(jobID)
				return task.Fail(task.CodeInstallFailed, name, j.describe(), nil)
			case PhaseScheduled:
				if !cycled {
					if err := rn.powerCycle(ctx, st, "the BMC applies "+st.Component+" at the next host boot"); err != nil {
						return err
					}
					cycled, changed = true, true
				}
			case PhaseActive:
				seenRunning = seenRunning || j.Percent > 0 || !strings.EqualFold(j.State, "new")
				unknownAt = time.Time{}
			case PhaseUnknown:
				if unknownAt.IsZero() {
					unknownAt = time.Now()
				} else if time.Since(unknownAt) > to.UnknownState {
					return task.Fail(task.CodeInstallFailed, name, fmt.Sprintf("%s: a state Flasher does not know, for more than %s", j.describe(), to.UnknownState), nil)
				}
			}
			pct := j.Percent
			if pct == 0 && PhaseOf(j.State) == PhaseActive {
				pct = 1 // running, amount unknown
			}
			if err := rn.progress(st, task.Progress{Step: as, Percent: min(pct, 99), Message: j.describe()}); err != nil {
				return err
			}
		}
		if time.Since(start) > to.Install {
			return task.Fail(task.CodeTimeout, name, fmt.Sprintf("BMC job %s not finished after %s (last state %q)", jobID, to.Install, last.State), nil)
		}
		d := pw.next(changed)
		if !unknownAt.IsZero() {
			d = min(d, to.UnknownState/2+time.Millisecond)
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// jobGone records that the job handle is lost; the installed version decides.
func (rn *run) jobGone(st task.Step, jobID, why string) error {
	rn.closeJob(jobID)
	if err := rn.progress(st, task.Progress{Step: stepStatus, Percent: 100,
		Message: fmt.Sprintf("BMC job %s: %s; confirming by reading the installed version", jobID, why)}); err != nil {
		return err
	}
	return errJobGone
}

// closeJob notes that a job ended (or is gone): it is no longer pending at a failure.
func (rn *run) closeJob(id string) {
	kept := rn.open[:0]
	for _, o := range rn.open {
		if o.id != id {
			kept = append(kept, o)
		}
	}
	rn.open = kept
}

// verify waits until the instance reports the new version, then runs the post-actions. A BMC
// flashing itself reboots: the wait then covers its reboot. BMC and BIOS versions are read
// from their one Redfish resource; other components need bmclib's inventory.
func (rn *run) verify(ctx context.Context, st task.Step, to Timeouts) error {
	name := stepName(st)
	limit := to.Verify
	if isBMC(st.Component) {
		limit = max(limit, to.BMCReboot)
	}
	start := time.Now()
	var (
		pw      = pollWait{to: to}
		lastErr error
		got     string
		found   bool
	)
	wentAway := false
	for {
		prevGot, prevErr := got, lastErr
		got, found, lastErr = rn.readVersion(ctx, st)
		wentAway = wentAway || lastErr != nil
		if lastErr == nil && found && firmware.Same(firmware.Scheme(st.Scheme), got, st.ToVersion) {
			break
		}
		if lastErr != nil && ctx.Err() != nil {
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
		if err := rn.progress(st, task.Progress{Step: "verify", Percent: 100, Message: msg}); err != nil {
			return err
		}
		if err := sleep(ctx, pw.next(got != prevGot || (lastErr == nil) != (prevErr == nil))); err != nil {
			return err
		}
	}
	if wentAway || isBMC(st.Component) {
		// The BMC rebooted (or was away): its bmclib session is gone; log in again when needed.
		rn.sess.drop()
	}
	for _, a := range st.PostActions {
		if err := rn.action(ctx, st, to, a); err != nil {
			return err
		}
	}
	rn.applied[st.Checksum] = true
	rn.done = append(rn.done, fmt.Sprintf("%s %s→%s", name, st.FromVersion, st.ToVersion))
	rn.observe([]inventory.Component{{Slug: st.Component, Serial: st.Serial, Vendor: st.Vendor, Model: st.Model,
		Version: st.ToVersion, VersionSource: "bmc", VersionAt: time.Now()}})
	if err := rn.progress(st, task.Progress{State: task.StepSucceeded, Step: "verified", Percent: 100,
		Message: fmt.Sprintf("the BMC reports %s", st.ToVersion)}); err != nil {
		return err
	}
	return rn.writeBack(st)
}

// writeBack records a verified version in the inventory source (fleetdb), retrying within
// bounds. A failure leaves the hardware as verified, so the task goes on, but it is shown on
// the component as a warning: the inventory still states the old version.
func (rn *run) writeBack(st task.Step) error {
	rec := rn.x.cfg.Recorder
	if rec == nil {
		return nil
	}
	err := inventory.WriteBack(rn.wctx, rec, rn.x.cfg.WriteBack, rn.t.ServerID, st.Component, st.Serial, st.ToVersion)
	if err == nil {
		return nil
	}
	rn.log.Warn("record the verified version in the inventory", "component", stepName(st), "version", st.ToVersion, "err", err)
	return rn.progress(st, task.Progress{State: task.StepSucceeded, Step: "inventory-write-back", Percent: 100,
		Message: "warning: verified at " + st.ToVersion + ", but " + err.Error()})
}

// readVersion reads the installed version of one instance: BMC and BIOS from their own Redfish
// resource (one or two requests), others from bmclib's inventory.
func (rn *run) readVersion(ctx context.Context, st task.Step) (string, bool, error) {
	if st.Serial == "" && (isBMC(st.Component) || strings.EqualFold(st.Component, "BIOS")) {
		v, err := rn.sess.Version(ctx, st.Component)
		if err == nil {
			if c := findComponent(rn.live, st.Component, ""); c != nil {
				c.Version = v
			}
			return v, v != "", nil
		}
		if ctx.Err() != nil || !errors.Is(err, errNoVersionResource) {
			return "", false, err
		}
	}
	if err := rn.readInventory(ctx); err != nil {
		return "", false, err
	}
	if c := findComponent(rn.live, st.Component, st.Serial); c != nil {
		return c.Version, true, nil
	}
	return "", false, nil
}
