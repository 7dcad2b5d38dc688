package outofband

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

// intentMargin widens the instant of an upload intent when jobs are dated: a job that ended
// more than this before the intent is an older one. A job inside the margin is taken as this
// upload's; its version is then checked like any other, so a wrong guess can fail the task but
// never flash twice.
const intentMargin = 2 * time.Second

// resolveIntent finds out what became of an upload whose outcome is unknown (the process stopped
// during it, or its reply was lost) from the BMC's own records, before anything is uploaded
// again: its job queue (running, scheduled and finished jobs) and the installed version. It
// returns the job to follow (recorded in the task), "" when the BMC holds no trace of the upload
// (uploading is safe), or a failure: the job failed, or the BMC cannot tell (UPLOAD_UNKNOWN,
// nothing is uploaded).
//
// since is when the intent was recorded (our clock); why says how its outcome was lost.
func (rn *run) resolveIntent(ctx context.Context, st task.Step, to Timeouts, since time.Time, why string) (string, error) {
	name := stepName(st)
	var (
		jobs   []Job
		offset time.Duration
		err    error
	)
	wait := newBackoff(to)
	for attempt := 1; ; attempt++ {
		if jobs, offset, err = rn.sess.Jobs(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if attempt >= to.PollErrors {
			return "", task.Fail(task.CodeUploadUnknown, name, fmt.Sprintf("an upload of %s %s may have reached the BMC %s, and its job queue cannot be read (%s): not uploading again",
				st.Component, st.ToVersion, why, bmcMessage(err)), err)
		}
		if err := sleep(ctx, wait.NextBackOff()); err != nil {
			return "", err
		}
	}
	cutoff := since.Add(offset).Add(-intentMargin)
	var pick *Job
	for i := range jobs {
		j := &jobs[i]
		if (j.Component != "" && !strings.EqualFold(j.Component, st.Component)) || rn.knownJob(j.ID) {
			continue
		}
		if j.Final() {
			if j.End.IsZero() {
				return "", task.Fail(task.CodeUploadUnknown, name, fmt.Sprintf("an upload of %s %s may have reached the BMC %s; %s has no end time, so whether it is that upload cannot be told: not uploading again",
					st.Component, st.ToVersion, why, j.describe()), nil)
			}
			if since.IsZero() || j.End.Before(cutoff) {
				continue // an older job
			}
		}
		if pick == nil || (pick.Final() && !j.Final()) {
			pick = j
		}
	}
	if pick == nil {
		rn.log.Info("no trace of the upload on the BMC: uploading", "component", name)
		return "", nil
	}
	if err := rn.progress(st, task.Progress{Step: stepStatus, JobID: pick.ID,
		Message: fmt.Sprintf("%s found on the BMC %s: following it instead of uploading again", pick.describe(), why)}); err != nil {
		return "", err
	}
	rn.touched = true
	if PhaseOf(pick.State) == PhaseFailed {
		return "", task.Fail(task.CodeInstallFailed, name, fmt.Sprintf("%s, created by the upload %s, failed", pick.describe(), why), nil)
	}
	rn.open = append(rn.open, openJob{step: st, id: pick.ID})
	return pick.ID, nil
}

// knownJob reports whether a job id is recorded for another step of this task.
func (rn *run) knownJob(id string) bool {
	for _, o := range rn.open {
		if o.id == id {
			return true
		}
	}
	for _, p := range rn.prev {
		if p.JobID == id && p.State == task.StepSucceeded {
			return true
		}
	}
	return false
}
