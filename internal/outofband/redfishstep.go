package outofband

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/bmc-toolbox/bmclib/v2/providers/openbmc"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/task"
)

// stepActivate is the progress step of a BMC reset that activates a staged BMC image.
const stepActivate = "activate"

// redfishStep sends one image through the BMC's standard Redfish UpdateService, pushed to
// MultipartHttpPushUri. Then it follows the task, activates a staged BMC image and verifies, as the
// bmclib path does.
func (rn *run) redfishStep(ctx context.Context, st task.Step, to Timeouts, im *image) error {
	name := stepName(st)
	svc, err := rn.updateService(ctx)
	if err != nil {
		return rn.failure(ctx, name, "read the UpdateService", err)
	}
	if svc.MaxImageSize > 0 && im.art.Size() > svc.MaxImageSize {
		return task.Fail(task.CodeImageTooLarge, name, fmt.Sprintf("the image of %d bytes is larger than the BMC accepts (MaxImageSizeBytes %d); nothing was uploaded",
			im.art.Size(), svc.MaxImageSize), nil)
	}
	var jobID string
	switch {
	case svc.PushURI != "":
		jobID, err = rn.push(ctx, st, to, im, svc)
	case svc.SimpleUpdate != "":
		// Pulling needs an image endpoint BMCs can reach with a per-task token; Flasher has none
		// yet, so such BMCs (iLO 5) are refused before anything is sent.
		return task.Fail(task.CodeUnsupported, name, "the BMC takes images only by SimpleUpdate (it pulls them), and Flasher does not serve images to BMCs yet; nothing was sent", nil)
	default:
		return task.Fail(task.CodeUnsupported, name, errNoUpdateMethod.Error(), errNoUpdateMethod)
	}
	if err != nil {
		return err
	}
	return rn.afterInstall(ctx, st, to, jobID)
}

// afterInstall follows the job (when the BMC named one), activates a staged BMC image, and
// verifies.
func (rn *run) afterInstall(ctx context.Context, st task.Step, to Timeouts, jobID string) error {
	if jobID != "" {
		if err := rn.wait(ctx, st, to, jobID, stepStatus); err != nil && !errors.Is(err, errJobGone) {
			return err
		}
	}
	if isBMC(st.Component) && rn.activation(st) == task.ActivationResetBMC {
		if err := rn.activate(ctx, st, to); err != nil {
			return err
		}
	}
	return rn.verify(ctx, st, to)
}

// updateService reads the BMC's UpdateService once per run.
func (rn *run) updateService(ctx context.Context) (UpdateService, error) {
	if rn.svc != nil {
		return *rn.svc, nil
	}
	svc, err := rn.sess.UpdateService(ctx)
	if err != nil {
		return svc, err
	}
	rn.svc = &svc
	return svc, nil
}

// applyTime is what a push asks for: Immediate where the BMC offers it, else OnReset (a BMC
// image is then activated by a BMC reset, a host component at the next host boot).
func applyTime(svc UpdateService) string {
	if svc.Immediate() {
		return "Immediate"
	}
	return "OnReset"
}

// push sends the image to MultipartHttpPushUri. The intent is durable before the image leaves;
// a 503 is waited out as the BMC asks (Retry-After, else backoff) while the install deadline
// allows; a lost reply is resolved against the BMC's tasks before anything is sent again.
func (rn *run) push(ctx context.Context, st task.Step, to Timeouts, im *image, svc UpdateService) (string, error) {
	name := stepName(st)
	params := PushParams{ApplyTime: applyTime(svc), Targets: rn.targets(ctx, st)}
	start := time.Now()
	wait := newBackoff(to)
	for attempt := 1; attempt <= to.UploadAttempts; {
		msg := fmt.Sprintf("pushing %s %s to the BMC's MultipartHttpPushUri (apply time %s; %d of %d)", st.Component, st.ToVersion, params.ApplyTime, attempt, to.UploadAttempts)
		id, sent, err := rn.send(st, attempt, msg, im, func(f *os.File, done func()) (string, error) {
			return rn.sess.Push(ctx, svc.PushURI, params, f, done)
		})
		if errors.Is(err, errNotSent) {
			return "", err
		}
		if err == nil {
			return rn.accepted(ctx, st, id, attempt)
		}
		var busy *busyError
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case errors.As(err, &busy):
			d := busy.after
			if d <= 0 {
				d = wait.NextBackOff()
			}
			if time.Since(start)+d > to.Install {
				return "", task.Fail(task.CodeBMCBusy, name, fmt.Sprintf("the BMC is busy and took no image (%s); it asked to retry after %s, past the install deadline %s",
					bmcMessage(err), d.Round(time.Second), to.Install), err)
			}
			// Its own step: the BMC refused the image, so no upload is in doubt after a restart.
			if err := rn.progress(st, task.Progress{Step: "busy", Attempt: attempt,
				Message: fmt.Sprintf("the BMC is busy (%s): retrying after %s as it asked", bmcMessage(err), d.Round(time.Second))}); err != nil {
				return "", err
			}
			if err := sleep(ctx, d); err != nil {
				return "", err
			}
			continue // a refused request is not an attempt
		case httpStatus(err) == http.StatusRequestEntityTooLarge || strings.Contains(err.Error(), "413"):
			return "", task.Fail(task.CodeImageTooLarge, name, "the BMC refused the image as too large: "+bmcMessage(err), err)
		case classify(err) == classTLS:
			return "", rn.failure(ctx, name, "upload", err)
		case classify(err) != classUnreachable && classify(err) != classTimeout:
			return "", task.Fail(task.CodeUploadRejected, name, "the BMC refused the image: "+bmcMessage(err), err)
		}
		rn.log.Warn("push lost", "component", name, "attempt", attempt, "err", err)
		id, rerr := rn.resolveIntent(ctx, st, to, sent, "after the upload's reply was lost")
		if rerr != nil || id != "" {
			return id, rerr
		}
		attempt++
		if attempt <= to.UploadAttempts {
			if err := sleep(ctx, wait.NextBackOff()); err != nil {
				return "", err
			}
		}
	}
	return "", task.Fail(task.CodeUploadRejected, name, fmt.Sprintf("upload failed %d time(s)", to.UploadAttempts), nil)
}

// accepted records the BMC's task for an image before anything waits on it.
func (rn *run) accepted(ctx context.Context, st task.Step, id string, attempt int) (string, error) {
	msg := "the BMC accepted the image as task " + id
	if id == "" {
		msg = "the BMC accepted the image and named no task: the installed version decides"
	}
	if err := rn.progress(st, task.Progress{Step: stepStatus, JobID: id, Attempt: attempt, Message: msg}); err != nil {
		return "", err
	}
	if id != "" {
		rn.open = append(rn.open, openJob{step: st, id: id})
	}
	return id, ctx.Err()
}

// targets are the UpdateParameters Targets of a push: the resource the image is for when the
// component has one of its own (the Manager for the BMC, the System for the BIOS); empty lets
// the BMC choose from the image, as DMTF allows.
func (rn *run) targets(ctx context.Context, st task.Step) []string {
	coll := ""
	switch {
	case st.Serial != "":
	case isBMC(st.Component):
		coll = "/redfish/v1/Managers"
	case strings.EqualFold(st.Component, "BIOS"):
		coll = "/redfish/v1/Systems"
	}
	if coll == "" {
		return nil
	}
	if uri, err := rn.sess.member(ctx, coll); err == nil {
		return []string{uri}
	}
	return nil
}

// activation is how a step's image starts running: the plan's word, else what the BMC's
// provider is known to do.
func (rn *run) activation(st task.Step) string {
	if st.Activation != "" {
		return st.Activation
	}
	return rn.activationOf(context.Background(), st, false)
}

// activationOf says how an out-of-band step's image starts running on this BMC. read allows
// one read of the UpdateService (redfish-update path).
func (rn *run) activationOf(ctx context.Context, st task.Step, read bool) string {
	if rn.sess.Target().Path == task.PathRedfishUpdate {
		if rn.svc == nil && !read {
			return ""
		}
		svc, err := rn.updateService(ctx)
		if err != nil {
			return ""
		}
		switch {
		case svc.PushURI == "" || svc.Immediate():
			// Pulled images and Immediate pushes: the BMC activates them itself.
			return task.ActivationImmediate
		case isBMC(st.Component):
			return task.ActivationResetBMC
		}
		return task.ActivationHostReboot
	}
	switch rn.sess.Provider() {
	case dell.ProviderName:
		if isBMC(st.Component) {
			return task.ActivationImmediate
		}
		return task.ActivationHostReboot // iDRAC applies host firmware at the next boot
	case openbmc.ProviderName:
		if isBMC(st.Component) {
			return task.ActivationResetBMC // bmclib sends OnReset: bmcweb only stages the image
		}
		return task.ActivationImmediate
	}
	return ""
}

// annotate writes into the live plan how each out-of-band step's image will start running, so
// the plan says it before anything is sent.
func (rn *run) annotate(ctx context.Context, p *task.Plan) {
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.Method != task.MethodOutOfBand {
			continue
		}
		if s.Path == "" {
			s.Path = rn.sess.Target().Path
		}
		if s.Activation == "" {
			s.Activation = rn.activationOf(ctx, *s, true)
		}
	}
}

// activate runs a staged BMC image: the BMC took it with apply time OnReset and keeps running
// the old firmware until it is reset. The BMC is reset once (not again after a restart that
// already asked for it), unless it already runs the new version or is already rebooting.
func (rn *run) activate(ctx context.Context, st task.Step, to Timeouts) error {
	if p := rn.prev[keyOf(st.Component, st.Serial)]; p.Step == stepActivate || p.Step == "reset-bmc" {
		return nil // reset asked before a restart: verify waits for it
	}
	got, found, err := rn.readVersion(ctx, st)
	switch {
	case err == nil && found && firmware.Same(firmware.Scheme(st.Scheme), got, st.ToVersion):
		return nil
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil && (classify(err) == classUnreachable || classify(err) == classTimeout):
		return nil // the BMC is rebooting into it by itself
	}
	if err := rn.progress(st, task.Progress{Step: stepActivate, Percent: 100,
		Message: fmt.Sprintf("the BMC staged %s %s (apply time OnReset) and still runs %s: resetting the BMC to activate it", st.Component, st.ToVersion, got)}); err != nil {
		return err
	}
	if err := rn.resetBMC(ctx, st, to); err != nil {
		var f *task.FailureError
		if errors.As(err, &f) && f.Code == task.CodeBMCResetFailed && rebooting(rn.sess.Target(), f.Err) {
			return nil // it went down by itself between the read and the reset: verify waits for it
		}
		if errors.As(err, &f) && f.Code == task.CodeBMCResetFailed {
			return task.Fail(task.CodeBMCResetFailed, stepName(st), fmt.Sprintf("%s; %s %s is staged on the BMC and runs after its next reset", f.Message, st.Component, st.ToVersion), err)
		}
		return err
	}
	return nil
}

// rebooting reports whether a failed call met a BMC that is going away: no connection now, or
// the call's own cause was a refused or lost connection (bmclib flattens it into text).
func rebooting(t Target, err error) bool {
	if c := classify(err); c == classUnreachable || c == classTimeout {
		return true
	}
	return (err != nil && strings.Contains(err.Error(), "connection refused")) || !dialable(t)
}
