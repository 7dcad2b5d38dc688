package redfish

import (
	"encoding/json"
	"fmt"
	"time"
)

// Op names the operation a fault applies to.
type Op string

// Operations faults can be attached to.
const (
	// OpAny matches every HTTP request to the BMC.
	OpAny Op = "any"
	// OpLogin is POST to the session collection.
	OpLogin Op = "login"
	// OpUpload is the firmware upload (multipart or HTTP push).
	OpUpload Op = "upload"
	// OpInstall is the install task created by an upload; its kinds change how the task ends.
	OpInstall Op = "install"
	// OpPoll is any GET of the TaskService, its tasks or the Dell job resource.
	OpPoll Op = "poll"
	// OpPower is ComputerSystem.Reset.
	OpPower Op = "power"
	// OpBMCReset is Manager.Reset.
	OpBMCReset Op = "bmc-reset"
	// OpReboot controls BMC reboots (after a BMC update or a Manager.Reset).
	OpReboot Op = "reboot"
	// OpQueue controls the BMC's job queue.
	OpQueue Op = "queue"
)

// Ops lists every Op, for validation and documentation.
var Ops = []Op{OpAny, OpLogin, OpUpload, OpInstall, OpPoll, OpPower, OpBMCReset, OpReboot, OpQueue}

// FaultKind is what goes wrong.
type FaultKind string

// Fault kinds. Which kinds make sense for which Op is checked by Fault.Validate.
const (
	// KindStatus answers with Fault.Status (default 500) and a Redfish error body.
	KindStatus FaultKind = "status"
	// KindHang accepts the request and never answers, until the fault is cleared, the client
	// gives up or the BMC is closed.
	KindHang FaultKind = "hang"
	// KindDelay waits Fault.Delay before serving the request normally.
	KindDelay FaultKind = "delay"
	// KindDrop closes the connection without an answer; on OpUpload after half the body was read.
	KindDrop FaultKind = "drop"
	// KindException ends the install task in TaskState Exception (Dell JobState Failed).
	KindException FaultKind = "exception"
	// KindKilled ends the install task in TaskState Killed.
	KindKilled FaultKind = "killed"
	// KindStuck keeps the install task Running forever.
	KindStuck FaultKind = "stuck"
	// KindUnchanged completes the install task but leaves the installed version as it was.
	KindUnchanged FaultKind = "unchanged"
	// KindReportsAs completes the install, and the component then reports its new version in
	// another form, Fault.Message ("07.00.00.171" for 7.00.00.171, "v2.19.1" for 2.19.1), as
	// firmware generations of one vendor do.
	KindReportsAs FaultKind = "reports-as"
	// KindCompletedWithErrors ends the install as iDRAC does when part of an update failed:
	// JobState CompletedWithErrors (Redfish TaskState Completed, TaskStatus Warning); nothing is
	// applied.
	KindCompletedWithErrors FaultKind = "completed-with-errors"
	// KindState holds the install, once half done, in the state Fault.Message (a state a client
	// may not know: "Paused", "UserIntervention"), never ending.
	KindState FaultKind = "state"
	// KindStaged (OpInstall, a BMC image sent with apply time OnReset) completes the task but
	// only stages the image, as bmcweb does: the BMC keeps running and reporting the old version
	// until it is reset (Manager.Reset), then boots into the new one.
	KindStaged FaultKind = "staged"
	// KindLeftover puts a Scheduled job for Fault.Component (default BIOS) in the queue, as a
	// job left behind by an earlier update that never saw a host reboot.
	KindLeftover FaultKind = "leftover"
	// KindDuration sets how long BMC reboots take (OpReboot), Fault.Delay.
	KindDuration FaultKind = "duration"
	// KindLostReply (OpUpload) accepts the image and creates its job, then closes the connection
	// before the 202 reaches the client: the reply lost in transit, or a client killed after the
	// BMC accepted.
	KindLostReply FaultKind = "lost-reply"
	// KindHangAfterAccept (OpUpload) accepts the image and creates its job, then holds the reply
	// until the fault is cleared, the client gives up or the BMC is closed.
	KindHangAfterAccept FaultKind = "hang-after-accept"
	// KindLicense (OpUpload) answers a Supermicro X12 firmware upload as a BMC without the
	// DCMS licence does: 403, MessageId SMC.1.0.OemLicenseNotPassed.
	KindLicense FaultKind = "license"
)

// Fault is one injected failure.
type Fault struct {
	Kind FaultKind `json:"kind"`
	// Status is the HTTP status for KindStatus (default 500).
	Status int `json:"status,omitempty"`
	// Delay is the wait for KindDelay, the reboot time for KindDuration, and the Retry-After
	// (whole seconds) of a KindStatus 503.
	Delay Duration `json:"delay,omitempty"`
	// Message replaces the default error or task message.
	Message string `json:"message,omitempty"`
	// Component limits OpInstall faults to one component slug and names the slug of a
	// KindLeftover job.
	Component string `json:"component,omitempty"`
	// Count is how many times the fault fires before it clears itself; 0 means until cleared.
	Count int `json:"count,omitempty"`
}

var validKinds = map[Op][]FaultKind{
	OpAny:      {KindStatus, KindHang, KindDelay, KindDrop},
	OpLogin:    {KindStatus, KindHang, KindDelay, KindDrop},
	OpUpload:   {KindStatus, KindHang, KindDelay, KindDrop, KindLostReply, KindHangAfterAccept, KindLicense},
	OpPoll:     {KindStatus, KindHang, KindDelay, KindDrop},
	OpPower:    {KindStatus, KindHang, KindDelay, KindDrop},
	OpBMCReset: {KindStatus, KindHang, KindDelay, KindDrop},
	OpInstall:  {KindException, KindKilled, KindStuck, KindUnchanged, KindReportsAs, KindCompletedWithErrors, KindState, KindStaged},
	OpReboot:   {KindDuration},
	OpQueue:    {KindLeftover},
}

// Validate reports whether f can be attached to op.
func (f Fault) Validate(op Op) error {
	kinds, ok := validKinds[op]
	if !ok {
		return fmt.Errorf("unknown fault op %q", op)
	}
	for _, k := range kinds {
		if k == f.Kind {
			if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
				return fmt.Errorf("fault %s/%s: bad status %d", op, f.Kind, f.Status)
			}
			return nil
		}
	}
	return fmt.Errorf("fault kind %q does not apply to op %q (want one of %v)", f.Kind, op, kinds)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("1.5s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}
