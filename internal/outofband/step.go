package outofband

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/task"
)

// image is a fetched image held until its last upload really returned.
type image struct {
	mu   sync.Mutex
	refs int
	art  *artifact.Artifact
}

func (im *image) hold() { im.mu.Lock(); im.refs++; im.mu.Unlock() }

// openImage opens the image for one upload, held until done is called (when the upload really
// returned); it marks the run as having touched the BMC.
func (rn *run) openImage(name string, im *image) (f *os.File, done func(), err error) {
	if f, err = im.art.Open(); err != nil {
		return nil, nil, fmt.Errorf("%s: open cached image: %w", name, err)
	}
	im.hold()
	rn.touched = true
	return f, func() { f.Close(); im.release() }, nil
}
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

	if prev := rn.prev[keyOf(st.Component, st.Serial)]; prev.State == task.StepRunning {
		switch {
		case prev.JobID == webJob:
			// A web flash (X11) was running before a restart: follow it on the BMC's page.
			if err := rn.progress(st, task.Progress{Step: stepStatus, JobID: webJob, Message: "resumed after a restart: following the BMC's flash"}); err != nil {
				return err
			}
			rn.touched = true
			if err := rn.waitLib(ctx, st, to); err != nil && !errors.Is(err, errJobGone) {
				return err
			}
			return rn.verify(ctx, st, to)
		case prev.JobID != "":
			// The job was started before a restart: ask the BMC about it instead of uploading again.
			if err := rn.progress(st, task.Progress{Step: stepStatus, Percent: prev.Percent, JobID: prev.JobID,
				Message: "resumed after a restart: polling BMC job " + prev.JobID}); err != nil {
				return err
			}
			return rn.follow(ctx, st, to, prev.JobID)
		case prev.Step == stepStage || prev.Step == stepStageStatus || prev.Step == stepInstallUploaded:
			// A staged flow (supermicro) stopped between upload and install: the BMC may hold
			// the image in update mode; resuming it half way is not safe to guess.
			return task.Fail(task.CodeUploadUnknown, stepName(st), fmt.Sprintf("restarted during %s (%s): the image may be staged on the BMC, which may be in update mode; nothing is uploaded again", prev.Step, prev.Message), nil)
		case prev.Step == stepUpload:
			// The process stopped during an upload: the BMC may have accepted it. Find out
			// before anything is uploaded again.
			id, err := rn.resolveIntent(ctx, st, to, prev.UpdatedAt, "after a restart")
			if err != nil || id != "" {
				if err != nil {
					return err
				}
				return rn.follow(ctx, st, to, id)
			}
		}
	}

	// One image often updates every matching instance (both NICs of a model): a later step for
	// an instance the same image already brought to version is done.
	if rn.applied[st.Checksum] {
		if c := findComponent(rn.live, st.Component, st.Serial); c != nil && firmware.Same(firmware.Scheme(st.Scheme), c.Version, st.ToVersion) {
			rn.done = append(rn.done, fmt.Sprintf("%s %s→%s", name, st.FromVersion, st.ToVersion))
			if err := rn.progress(st, task.Progress{State: task.StepSucceeded, Step: "verified", Percent: 100,
				Message: fmt.Sprintf("at %s: the image installed for an earlier step of this task updated it too", st.ToVersion)}); err != nil {
				return err
			}
			return rn.writeBack(st)
		}
	}

	if rn.r.CancelRequested() {
		return &task.CancelledError{Where: "before " + name + " upload"}
	}
	if err := rn.progress(st, task.Progress{Step: "download", Message: "fetching and verifying " + st.URL}); err != nil {
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
	if rn.sess.Target().Path == task.PathRedfishUpdate {
		return rn.redfishStep(ctx, st, to, im)
	}
	steps, err := rn.sess.InstallSteps(ctx, st.Component)
	if err != nil {
		if c := classify(err); c == classOther || c == classStatus {
			return task.Fail(task.CodeUnsupported, name, "the BMC does not install "+st.Component+" out-of-band: "+bmcMessage(err), err)
		}
		return rn.failure(ctx, name, "list install steps", err)
	}
	jobID, uploadID, staged := "", "", false
	for _, s := range steps {
		switch s {
		case "power-off-host":
			if err := rn.setPower(ctx, st, "off", "the BMC flashes "+st.Component+" only with the host off"); err != nil {
				return err
			}
		case stepUpload:
			if rn.r.CancelRequested() {
				return &task.CancelledError{Where: "before " + name + " upload"}
			}
			if jobID, err = rn.upload(ctx, st, to, im); err != nil {
				return err
			}
		case stepStage:
			if rn.r.CancelRequested() {
				return &task.CancelledError{Where: "before " + name + " upload"}
			}
			if uploadID, err = rn.stage(ctx, st, im); err != nil {
				return err
			}
			staged = true
		case stepStageStatus:
			// The BMC checks the staged image in a task of its own (X12 "BIOS Verify").
			if uploadID != "" {
				if err := rn.wait(ctx, st, to, uploadID, stepStageStatus); err != nil {
					return err
				}
			}
		case stepInstallUploaded:
			if jobID, err = rn.installUploaded(ctx, st, uploadID); err != nil {
				return err
			}
		case stepStatus:
			var err error
			if staged && jobID == "" {
				err = rn.waitLib(ctx, st, to)
			} else {
				err = rn.wait(ctx, st, to, jobID, stepStatus)
			}
			if err != nil && !errors.Is(err, errJobGone) {
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
	return rn.afterInstall(ctx, st, to, "")
}

// follow waits for a job started before (a restart, or an upload whose reply was lost), then
// verifies.
func (rn *run) follow(ctx context.Context, st task.Step, to Timeouts, jobID string) error {
	rn.touched = true
	return rn.afterInstall(ctx, st, to, jobID)
}

// upload sends the image and records the job id before anything waits on it. The intent (step
// upload-initiate-install, no job id) is durable before the image leaves: a restart in between
// resolves it against the BMC instead of uploading blindly.
func (rn *run) upload(ctx context.Context, st task.Step, to Timeouts, im *image) (string, error) {
	name := stepName(st)
	var last error
	wait := newBackoff(to)
	for attempt := 1; attempt <= to.UploadAttempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, wait.NextBackOff()); err != nil {
				return "", err
			}
		}
		msg := fmt.Sprintf("uploading %s %s (%d of %d)", st.Component, st.ToVersion, attempt, to.UploadAttempts)
		id, sent, err := rn.send(st, attempt, msg, im, func(f *os.File, done func()) (string, error) {
			return rn.sess.Upload(ctx, st.Component, f, done)
		})
		if errors.Is(err, errNotSent) {
			return "", err
		}
		if err == nil {
			// Durable before polling, even when a shutdown began during the upload: a restarted
			// executor polls this job instead of uploading again.
			if err := rn.progress(st, task.Progress{Step: stepStatus, JobID: id, Attempt: attempt,
				Message: "the BMC accepted the image as job " + id}); err != nil {
				return "", err
			}
			rn.open = append(rn.open, openJob{step: st, id: id})
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
		case httpStatus(err) == 503:
			return "", task.Fail(task.CodeBMCBusy, name, "the BMC is busy and took no image: "+bmcMessage(err), err)
		case classify(err) == classTLS:
			return "", rn.failure(ctx, name, "upload", err)
		case classify(err) != classUnreachable && classify(err) != classTimeout:
			return "", task.Fail(task.CodeUploadRejected, name, "the BMC refused the image: "+bmcMessage(err), err)
		}
		// The reply was lost or late: the BMC may have accepted the image all the same. Follow
		// its job rather than upload again (a second job would flash twice, or be refused).
		rn.log.Warn("upload lost", "component", name, "attempt", attempt, "err", err)
		id, rerr := rn.resolveIntent(ctx, st, to, sent, "after the upload's reply was lost")
		if rerr != nil || id != "" {
			return id, rerr
		}
		if classify(err) == classTimeout {
			return "", task.Fail(task.CodeTimeout, name, fmt.Sprintf("upload of %s: %v; the BMC lists no job for it", st.ToVersion, err), err)
		}
	}
	return "", task.Fail(task.CodeUploadRejected, name, fmt.Sprintf("upload failed %d time(s), last: %s", to.UploadAttempts, bmcMessage(last)), last)
}

// errNotSent marks a failure before the image left (intent not recorded, image unreadable).
var errNotSent = errors.New("the image was not sent")

// send records the upload intent (durable before the image leaves), then sends the image once
// with f, which must call done once its request really returned.
func (rn *run) send(st task.Step, attempt int, msg string, im *image, f func(*os.File, func()) (string, error)) (string, time.Time, error) {
	if err := rn.progress(st, task.Progress{Step: stepUpload, Attempt: attempt, Message: msg}); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", errNotSent, err)
	}
	file, err := im.art.Open()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %s: open cached image: %w", errNotSent, stepName(st), err)
	}
	im.hold()
	rn.touched = true
	sent := time.Now()
	id, err := f(file, func() { file.Close(); im.release() })
	return id, sent, err
}
