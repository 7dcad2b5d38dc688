package outofband

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/constants"
	bmclibErrs "github.com/bmc-toolbox/bmclib/v2/errors"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/bmc-toolbox/bmclib/v2/providers/openbmc"
	"github.com/bmc-toolbox/bmclib/v2/providers/supermicro"

	"github.com/flasher-dev/flasher/internal/task"
)

// stillHeld checks the task's lease before a bmclib call. Requests through Flasher's own HTTP
// client are checked one by one (keepAlive); the supermicro provider builds its own client,
// so for it the check bounds each call (login, upload, status), not each request in it.
func (ss *Session) stillHeld() error {
	if ss.held == nil {
		return nil
	}
	if err := ss.held(); err != nil {
		return fmt.Errorf("BMC call not made: %w", err)
	}
	return nil
}

// Providers Flasher drives. bmclib's generic gofish provider has no firmware methods;
// asrockrack is not registered yet (its web API is not simulated). A server the inventory
// says is a Supermicro is opened with the supermicro provider only, any other with dell and
// openbmc: probing every vendor's login on every BMC would cost each first login several
// connections and send the credentials to login pages the BMC does not have.
var (
	providerNames           = []string{dell.ProviderName, openbmc.ProviderName}
	supermicroProviderNames = []string{supermicro.ProviderName}
)

// providersFor returns the bmclib providers to try for a server of vendor.
func providersFor(vendor string) []string {
	if strings.Contains(strings.ToLower(vendor), "supermicro") {
		return supermicroProviderNames
	}
	return providerNames
}

// Stage uploads an image without installing it (bmclib FirmwareUpload: the first step of the
// supermicro flows), under the same rules as Upload. It returns the BMC's verify task id, ""
// when the BMC has none (X11 web upload).
func (ss *Session) Stage(ctx context.Context, component string, f *os.File, done func()) (string, error) {
	return ss.upload(ctx, component, f, done, (*bmclib.Client).FirmwareUpload)
}

// Install steps of bmclib's staged flows (supermicro): the image is uploaded first, then its
// install is started, each a call of its own.
const (
	stepStage           = "upload"
	stepStageStatus     = "upload-status"
	stepInstallUploaded = "install-uploaded"
)

// InstallUploaded starts the install of a staged image and returns the install job id, ""
// when the BMC has none (X11: the flash is followed through its web progress page).
func (ss *Session) InstallUploaded(ctx context.Context, component, uploadID string) (string, error) {
	return do(ctx, ss, "start the install", ss.to.Call, func(c context.Context, cl *bmclib.Client) (string, error) {
		return cl.FirmwareInstallUploaded(c, component, uploadID)
	})
}

// LibStatus asks bmclib for the state of an install it cannot name by a Redfish task (the
// X11 web flash): bmclib reads the BMC's progress page, or compares the installed version
// with version.
func (ss *Session) LibStatus(ctx context.Context, component, jobID, version string) (constants.TaskState, string, error) {
	type res struct {
		state  constants.TaskState
		status string
	}
	r, err := do(ctx, ss, "firmware install status", ss.to.Call, func(c context.Context, cl *bmclib.Client) (res, error) {
		st, msg, err := cl.FirmwareTaskStatus(c, constants.FirmwareInstallStepInstallStatus, component, jobID, version)
		return res{st, msg}, err
	})
	if errors.Is(err, bmclibErrs.ErrSessionExpired) {
		ss.drop() // the BMC forgot the web session (it rebooted): log in again next time
	}
	return r.state, r.status, err
}

// checkTLS verifies the BMC's certificate on a connection of its own. bmclib's supermicro
// provider builds its own HTTP client (it ignores the one Flasher would give it), so its
// certificate is checked here, the same way as for the other providers, just before it logs
// in; with system roots the provider verifies it itself as well (WithSecureTLS).
func (t Target) checkTLS(ctx context.Context, d time.Duration) error {
	if t.Scheme != "https" || t.TLSUnverified() {
		return nil
	}
	tc, err := t.tlsConfig()
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn, err := (&tls.Dialer{Config: tc}).DialContext(dctx, "tcp", t.Key())
	if err != nil {
		return fmt.Errorf("TLS check of the BMC: %w", err)
	}
	return conn.Close()
}

// licenseRequired reports whether the BMC refused for want of a licence (Supermicro answers
// 403 SMC.1.0.OemLicenseNotPassed without the DCMS licence).
func licenseRequired(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "OemLicenseNotPassed") || strings.Contains(msg, "Not licensed to perform")
}

// stage uploads the image of a staged flow. Its intent is durable first, like upload's; a
// lost reply is not resolved against the job queue (a staged image is not a job), it fails
// UPLOAD_UNKNOWN and nothing is uploaded again.
func (rn *run) stage(ctx context.Context, st task.Step, im *image) (string, error) {
	name := stepName(st)
	if err := rn.progress(st, task.Progress{Step: stepStage, Attempt: 1, Message: fmt.Sprintf("uploading %s %s to stage it", st.Component, st.ToVersion)}); err != nil {
		return "", err
	}
	f, done, err := rn.openImage(name, im)
	if err != nil {
		return "", err
	}
	id, err := rn.sess.Stage(ctx, st.Component, f, done)
	if err != nil {
		var ce *connectError
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case licenseRequired(err):
			return "", task.Fail(task.CodeBMCLicenseRequired, name, "the BMC needs a licence to update "+st.Component+": "+bmcMessage(err), err)
		case errors.As(err, &ce):
			return "", rn.failure(ctx, name, "reconnect for the upload", err)
		case httpStatus(err) == 503:
			return "", task.Fail(task.CodeBMCBusy, name, "the BMC is busy and took no image: "+bmcMessage(err), err)
		case classify(err) == classUnreachable || classify(err) == classTimeout:
			return "", task.Fail(task.CodeUploadUnknown, name, fmt.Sprintf("upload of %s: %s; the BMC may hold the image in update mode; nothing is uploaded again", st.ToVersion, bmcMessage(err)), err)
		}
		return "", task.Fail(task.CodeUploadRejected, name, "the BMC refused the image: "+bmcMessage(err), err)
	}
	msg := "the BMC took the image"
	if id != "" {
		msg += "; its verify task is " + id
	}
	return id, rn.progress(st, task.Progress{Step: stepStageStatus, JobID: id, Message: msg})
}

// installUploaded starts the install of the staged image and records its job before anything
// waits on it. A BMC may power the host off to flash its BIOS: the remembered power state is
// dropped.
func (rn *run) installUploaded(ctx context.Context, st task.Step, uploadID string) (string, error) {
	name := stepName(st)
	if rn.r.CancelRequested() {
		return "", &task.CancelledError{Where: "before " + name + " install (the image is staged on the BMC)"}
	}
	if err := rn.progress(st, task.Progress{Step: stepInstallUploaded, JobID: uploadID, Message: "starting the install of the staged image"}); err != nil {
		return "", err
	}
	rn.hostNow = ""
	id, err := rn.sess.InstallUploaded(ctx, st.Component, uploadID)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if licenseRequired(err) {
			return "", task.Fail(task.CodeBMCLicenseRequired, name, "the BMC needs a licence to install "+st.Component+": "+bmcMessage(err), err)
		}
		return "", task.Fail(task.CodeInstallFailed, name, "the BMC did not start the install: "+bmcMessage(err), err)
	}
	msg := "the BMC is flashing " + st.Component
	if id != "" {
		msg = "the BMC started the install as job " + id
		rn.open = append(rn.open, openJob{step: st, id: id})
	}
	// The job id is "" for a web flash: "" in JobID would inherit the verify task's id.
	return id, rn.progress(st, task.Progress{Step: stepStatus, JobID: orNone(id), Message: msg})
}

// webJob stands for an install the BMC names by no job (X11 web flash) in Progress.JobID.
const webJob = "web-flash"

func orNone(id string) string {
	if id == "" {
		return webJob
	}
	return id
}

// waitLib follows an install that only bmclib can read (X11 web flash), one status call per
// poll, with the same phases, bounds and cancel points as wait.
func (rn *run) waitLib(ctx context.Context, st task.Step, to Timeouts) error {
	name := stepName(st)
	start := time.Now()
	var (
		pw          = pollWait{to: to}
		errs        int
		cycled      bool
		seenRunning bool
		last        string
		unknownAt   time.Time
	)
	for {
		state, status, err := rn.sess.LibStatus(ctx, st.Component, "", st.ToVersion)
		changed := false
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			gone := errors.Is(err, bmclibErrs.ErrSessionExpired) || classify(err) == classUnreachable || classify(err) == classTimeout
			if isBMC(st.Component) && seenRunning && gone {
				return rn.jobGone(st, webJob, "the BMC went away while flashing itself")
			}
			errs++
			if err := rn.progress(st, task.Progress{Step: stepStatus, Attempt: errs,
				Message: fmt.Sprintf("status poll %d of %d failed: %s", errs, to.PollErrors, bmcMessage(err))}); err != nil {
				return err
			}
			if errs >= to.PollErrors {
				return rn.failure(ctx, name, "poll the install", err)
			}
		default:
			errs = 0
			changed = string(state)+status != last
			last = string(state) + status
			words := fmt.Sprintf("BMC install %s (%s)", state, strings.TrimSpace(status))
			switch state {
			case constants.Complete:
				return rn.progress(st, task.Progress{Step: stepStatus, Percent: 100, Message: words})
			case constants.Failed:
				return task.Fail(task.CodeInstallFailed, name, words, nil)
			case constants.PowerCycleHost:
				if !cycled {
					if err := rn.powerCycle(ctx, st, "the BMC wrote "+st.Component+"; it runs after a host power cycle"); err != nil {
						return err
					}
					cycled, changed = true, true
				}
			case constants.Initializing, constants.Queued, constants.Running:
				seenRunning, unknownAt = true, time.Time{}
			default:
				if unknownAt.IsZero() {
					unknownAt = time.Now()
				} else if time.Since(unknownAt) > to.UnknownState {
					return task.Fail(task.CodeInstallFailed, name, fmt.Sprintf("%s: a state Flasher does not know, for more than %s", words, to.UnknownState), nil)
				}
			}
			if err := rn.progress(st, task.Progress{Step: stepStatus, Percent: 1, Message: words}); err != nil {
				return err
			}
		}
		if time.Since(start) > to.Install {
			return task.Fail(task.CodeTimeout, name, fmt.Sprintf("the BMC's install not finished after %s (last: %s)", to.Install, last), nil)
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
