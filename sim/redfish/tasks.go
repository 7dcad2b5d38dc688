package redfish

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// task is one install job. Its state is not stepped by a goroutine: it is computed from the
// clock on every read (view) and made final by advanceLocked, so an idle BMC with tasks costs
// no goroutines.
type task struct {
	id       string
	slug     string
	targets  []int // indices into BMC.comps the image applies to
	version  string
	created  time.Time
	dur      time.Duration
	onReset  bool      // waits for a host boot (Dell OnReset apply time)
	staged   bool      // a BMC image applied OnReset: runs only after the next BMC reset
	bootAt   time.Time // the host boot that runs the scheduled job
	fault    FaultKind // OpInstall fault captured when the task was created
	faultMsg string
	failMsg  string // the image was not applicable: the task fails early with this message
	leftover bool
	// label replaces the task name (Supermicro: "BIOS Verify", "BMC Update").
	label string
	// stageOnly marks a task that only checks a staged image (Supermicro X12 "Verify"): it
	// installs nothing when it completes.
	stageOnly bool

	final   string // "", "Completed", "Exception", "Killed"
	endTime time.Time
	message string
}

// view is what a task looks like at one instant.
type view struct {
	taskState string // Redfish TaskState
	jobState  string // Dell Oem JobState
	percent   int
	message   string
	end       time.Time
}

var dellTaskNames = map[string]string{
	SlugBIOS:  "Firmware Update: BIOS",
	SlugBMC:   "Firmware Update: iDRAC with Lifecycle Controller",
	SlugNIC:   "Firmware Update: Network",
	SlugDrive: "Firmware Update: Serial ATA",
}

func (t *task) name(p Personality) string {
	if t.label != "" {
		return t.label
	}
	if p == Dell {
		if n, ok := dellTaskNames[t.slug]; ok {
			return n
		}
		return "Firmware Update: " + t.slug
	}
	return "Task " + t.id
}

func pct(elapsed, d time.Duration) int {
	if d <= 0 {
		return 100
	}
	p := int(elapsed * 100 / d)
	if p > 99 {
		p = 99
	}
	if p < 0 {
		p = 0
	}
	return p
}

// at computes the task's state at now, and when it becomes final.
func (b *BMC) viewAt(t *task, now time.Time) view {
	if t.final != "" {
		return finalView(t)
	}
	elapsed := now.Sub(t.created)
	running := func(p int) view {
		js := "Running"
		if b.cfg.Personality == Dell && elapsed < t.dur/2 {
			js = "Downloading"
		} else if t.onReset {
			js = "Downloaded"
		}
		return view{taskState: "Running", jobState: js, percent: p, message: "Job in progress."}
	}
	if t.failMsg != "" {
		failAt := t.dur / 10
		if elapsed < failAt {
			return running(pct(elapsed, t.dur))
		}
		return view{taskState: "Exception", jobState: "Failed", percent: 100, message: t.failMsg, end: t.created.Add(failAt)}
	}
	switch t.fault {
	case KindException, KindKilled:
		at := t.dur / 2
		if elapsed < at {
			return running(pct(elapsed, t.dur))
		}
		msg := t.faultMsg
		state := "Exception"
		if t.fault == KindKilled {
			state = "Killed"
			if msg == "" {
				msg = "The task was cancelled."
			}
		} else if msg == "" {
			msg = "Unable to complete the firmware update: the device returned an error."
		}
		return view{taskState: state, jobState: "Failed", percent: pct(at, t.dur), message: msg, end: t.created.Add(at)}
	case KindStuck:
		p := pct(elapsed, t.dur)
		if p > 50 {
			p = 50
		}
		return running(p)
	case KindState:
		if elapsed < t.dur/2 {
			return running(pct(elapsed, t.dur))
		}
		ts := "Running"
		if b.cfg.Personality == OpenBMC {
			ts = t.faultMsg
		}
		return view{taskState: ts, jobState: t.faultMsg, percent: 50, message: "Job is " + t.faultMsg + "."}
	case KindCompletedWithErrors:
		if elapsed < t.dur {
			return running(pct(elapsed, t.dur))
		}
		msg := t.faultMsg
		if msg == "" {
			msg = "Job completed with errors: the device did not accept the update."
		}
		return view{taskState: "Completed", jobState: "CompletedWithErrors", percent: 100, message: msg, end: t.created.Add(t.dur)}
	}
	if elapsed < t.dur {
		return running(pct(elapsed, t.dur))
	}
	if !t.onReset {
		return view{taskState: "Completed", jobState: "Completed", percent: 100, message: "Job completed successfully.", end: t.created.Add(t.dur)}
	}
	if t.bootAt.IsZero() {
		// iDRAC keeps the Redfish task Running while the job waits for the host reboot; only
		// the Oem JobState says Scheduled. OpenBMC has no Oem data, so its TaskState says it.
		ts := "Running"
		if b.cfg.Personality == OpenBMC {
			ts = "Scheduled"
		}
		return view{taskState: ts, jobState: "Scheduled", percent: 0, message: "Task successfully scheduled."}
	}
	doneAt := t.bootAt.Add(b.cfg.ApplyDuration)
	if now.Before(doneAt) {
		return view{taskState: "Running", jobState: "Running", percent: pct(now.Sub(t.bootAt), b.cfg.ApplyDuration), message: "Job in progress."}
	}
	return view{taskState: "Completed", jobState: "Completed", percent: 100, message: "Job completed successfully.", end: doneAt}
}

func finalView(t *task) view {
	js := "Completed"
	if t.final != "Completed" {
		js = "Failed"
	}
	if t.final == "CompletedWithErrors" {
		return view{taskState: "Completed", jobState: t.final, percent: 100, message: t.message, end: t.endTime}
	}
	return view{taskState: t.final, jobState: js, percent: 100, message: t.message, end: t.endTime}
}

// advanceLocked makes every task whose time has come final and applies what it installed.
func (b *BMC) advanceLocked(now time.Time) {
	list := b.tasks
	if b.cfg.Personality == Dell {
		list = b.jobs
	}
	purge := false
	for _, t := range list {
		if t.final != "" {
			continue
		}
		v := b.viewAt(t, now)
		switch v.taskState {
		case "Completed", "Exception", "Killed":
		default:
			continue
		}
		t.final, t.endTime, t.message = v.taskState, v.end, v.message
		if v.jobState == "CompletedWithErrors" {
			t.final = v.jobState
		}
		if t.leftover || t.stageOnly {
			continue
		}
		if t.final != "Completed" {
			b.counters.component(t.slug, func(c *ComponentCounters) { c.InstallsFailed++ })
			b.logf("%s install of %s ended %s: %s", t.slug, t.version, t.final, t.message)
			continue
		}
		b.counters.component(t.slug, func(c *ComponentCounters) { c.InstallsCompleted++ })
		purge = true
		if t.fault == KindUnchanged {
			b.logf("%s install of %s completed without changing the version (fault)", t.slug, t.version)
			continue
		}
		if t.slug == SlugBMC {
			// The new BMC firmware runs only after the BMC reboots into it. A staged image
			// (apply time OnReset) waits for a reset someone else asks for.
			b.pendingBMC = t
			if t.staged {
				b.logf("BMC image %s staged: it runs after the next BMC reset", t.version)
				continue
			}
			b.afterLocked(b.cfg.BMCRebootDelay, func() { b.Reboot(0) })
			continue
		}
		b.applyLocked(t)
	}
	if purge && b.cfg.Personality == Dell {
		// iDRAC drops the Redfish task of a completed job; the Dell job stays (bmclib then
		// reads Managers/iDRAC.Embedded.1/Oem/Dell/Jobs/<id>).
		kept := b.tasks[:0]
		for _, t := range b.tasks {
			if t.final != "Completed" {
				kept = append(kept, t)
			}
		}
		clear(b.tasks[len(kept):])
		b.tasks = kept
	}
}

func (b *BMC) applyLocked(t *task) {
	version := t.version
	if t.fault == KindReportsAs && t.faultMsg != "" {
		version = t.faultMsg
	}
	for _, i := range t.targets {
		c := &b.comps[i]
		if c.Version == version {
			continue
		}
		c.Previous, c.Version = c.Version, version
		b.counters.component(t.slug, func(cc *ComponentCounters) { cc.VersionChanges++ })
		b.logf("%s %s now at %s (was %s)", c.Slug, c.ID, c.Version, c.Previous)
	}
	b.persistLocked()
}

// hostBootLocked runs the jobs scheduled for the next host boot.
func (b *BMC) hostBootLocked(now time.Time) {
	b.advanceLocked(now)
	b.counters.HostBoots++
	list := b.tasks
	if b.cfg.Personality == Dell {
		list = b.jobs
	}
	for _, t := range list {
		if t.final == "" && t.onReset && t.bootAt.IsZero() && b.viewAt(t, now).jobState == "Scheduled" {
			t.bootAt = now
		}
	}
	b.advanceLocked(now)
}

// newTaskLocked registers a task and returns it.
func (b *BMC) newTaskLocked(t *task) {
	if b.cfg.Personality == Dell {
		b.jobSeq++
		t.id = fmt.Sprintf("JID_%012d", 700000000000+b.jobSeq)
		b.jobs = append(b.jobs, t)
		if len(b.jobs) > 64 {
			// iDRAC's job queue is bounded; drop the oldest finished jobs.
			kept := b.jobs[:0]
			for i, j := range b.jobs {
				if j.final != "" && len(b.jobs)-i > 64-len(kept) {
					continue
				}
				kept = append(kept, j)
			}
			b.jobs = kept
		}
	} else {
		t.id = fmt.Sprint(b.taskSeq)
		b.taskSeq++
	}
	b.tasks = append(b.tasks, t)
}

func (b *BMC) findTaskLocked(id string) *task {
	for _, t := range b.tasks {
		if t.id == id {
			return t
		}
	}
	return nil
}

func (b *BMC) findJobLocked(id string) *task {
	for _, t := range b.jobs {
		if t.id == id {
			return t
		}
	}
	return nil
}

// pendingForLocked returns an unfinished job for slug, if any.
func (b *BMC) pendingForLocked(slug string) *task {
	list := b.tasks
	if b.cfg.Personality == Dell {
		list = b.jobs
	}
	for _, t := range list {
		if t.final == "" && strings.EqualFold(t.slug, slug) {
			return t
		}
	}
	return nil
}

func (b *BMC) targetsLocked(slug string) []int {
	var out []int
	for i, c := range b.comps {
		if strings.EqualFold(c.Slug, slug) {
			out = append(out, i)
		}
	}
	return out
}

func (b *BMC) addLeftoverLocked(f Fault) {
	slug := f.Component
	if slug == "" {
		slug = SlugBIOS
	}
	targets := b.targetsLocked(slug)
	version := ""
	if len(targets) > 0 {
		version = b.comps[targets[0]].Version
	}
	now := b.clock.Now()
	t := &task{slug: slug, targets: targets, version: version, created: now.Add(-b.cfg.InstallDuration),
		dur: b.cfg.InstallDuration, onReset: true, leftover: true}
	b.newTaskLocked(t)
}

func (b *BMC) removeLeftoversLocked() {
	drop := func(list []*task) []*task {
		kept := list[:0]
		for _, t := range list {
			if t.leftover && t.final == "" {
				continue
			}
			kept = append(kept, t)
		}
		clear(list[len(kept):])
		return kept
	}
	b.tasks = drop(b.tasks)
	b.jobs = drop(b.jobs)
}

const timeFormat = "2006-01-02T15:04:05-07:00"

func (b *BMC) taskJSON(t *task, now time.Time) map[string]any {
	v := b.viewAt(t, now)
	uri := "/redfish/v1/TaskService/Tasks/" + t.id
	status := "OK"
	if v.taskState == "Exception" || v.taskState == "Killed" {
		status = "Critical"
	} else if v.jobState == "CompletedWithErrors" {
		status = "Warning"
	}
	end := "TIME_NA"
	if !v.end.IsZero() {
		end = v.end.Format(timeFormat)
	}
	m := map[string]any{
		"@odata.id":       uri,
		"@odata.type":     "#Task.v1_4_3.Task",
		"Id":              t.id,
		"Name":            t.name(b.cfg.Personality),
		"TaskState":       v.taskState,
		"TaskStatus":      status,
		"PercentComplete": v.percent,
		"StartTime":       t.created.Format(timeFormat),
		"EndTime":         end,
	}
	if b.cfg.Personality == Dell {
		m["@odata.context"] = "/redfish/v1/$metadata#Task.Task"
		m["Description"] = "Server Configuration and other Tasks running on iDRAC are listed here"
		m["Messages"] = []map[string]any{{"Message": v.message, "MessageArgs": []string{}, "MessageId": dellMessageID(v.jobState)}}
		m["Oem"] = map[string]any{"Dell": b.dellJobJSON(t, v)}
		return m
	}
	m["TaskMonitor"] = uri + "/Monitor"
	msgs := []map[string]any{{
		"@odata.type": "#Message.v1_1_1.Message",
		"Message":     fmt.Sprintf("The task with Id '%s' has started.", t.id),
		"MessageArgs": []string{t.id}, "MessageId": "TaskEvent.1.0.TaskStarted", "Resolution": "None.", "Severity": "OK",
	}}
	switch v.taskState {
	case "Completed":
		msgs = append(msgs, map[string]any{"@odata.type": "#Message.v1_1_1.Message",
			"Message":     fmt.Sprintf("The task with Id '%s' has Completed.", t.id),
			"MessageArgs": []string{t.id}, "MessageId": "TaskEvent.1.0.TaskCompletedOK", "Resolution": "None.", "Severity": "OK"})
	case "Exception", "Killed":
		msgs = append(msgs, map[string]any{"@odata.type": "#Message.v1_1_1.Message",
			"Message":     fmt.Sprintf("The task with Id '%s' has been aborted: %s", t.id, v.message),
			"MessageArgs": []string{t.id}, "MessageId": "TaskEvent.1.0.TaskAborted", "Resolution": "None.", "Severity": "Critical"})
	}
	m["Messages"] = msgs
	return m
}

func (b *BMC) dellJobJSON(t *task, v view) map[string]any {
	end := "TIME_NA"
	var completion any
	if !v.end.IsZero() {
		end = v.end.Format(timeFormat)
		completion = end
	}
	return map[string]any{
		"@odata.context":    "/redfish/v1/$metadata#DellJob.DellJob",
		"@odata.id":         "/redfish/v1/Managers/iDRAC.Embedded.1/Oem/Dell/Jobs/" + t.id,
		"@odata.type":       "#DellJob.v1_4_0.DellJob",
		"CompletionTime":    completion,
		"Description":       "Job Instance",
		"EndTime":           end,
		"Id":                t.id,
		"JobState":          v.jobState,
		"JobType":           "FirmwareUpdate",
		"Message":           v.message,
		"MessageArgs":       []string{},
		"MessageId":         dellMessageID(v.jobState),
		"Name":              t.name(Dell),
		"PercentComplete":   v.percent,
		"StartTime":         "TIME_NOW",
		"TargetSettingsURI": nil,
	}
}

func dellMessageID(jobState string) string {
	switch jobState {
	case "Scheduled":
		return "IDRAC.2.8.JCP001"
	case "Completed":
		return "IDRAC.2.8.RED001"
	case "Failed":
		return "IDRAC.2.8.SUP0518"
	}
	return "IDRAC.2.8.RED003"
}

// deleteDellJob deletes one job from the iDRAC job queue. Like iDRAC, it refuses a job that is
// running (it cannot be stopped half way) and deletes finished, pending and scheduled ones; a
// deleted scheduled job never runs.
func (b *BMC) deleteDellJob(w http.ResponseWriter, r *http.Request, id string) {
	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	j := b.findJobLocked(id)
	if j == nil {
		b.mu.Unlock()
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	if v := b.viewAt(j, now); j.final == "" && v.jobState != "Scheduled" && v.jobState != "Downloaded" {
		b.mu.Unlock()
		writeError(w, http.StatusBadRequest, "IDRAC.2.8.SUP0516",
			fmt.Sprintf("Unable to delete the job %s because it is in the %s state.", id, v.jobState))
		return
	}
	drop := func(list []*task) []*task {
		kept := list[:0]
		for _, t := range list {
			if t != j {
				kept = append(kept, t)
			}
		}
		clear(list[len(kept):])
		return kept
	}
	b.jobs, b.tasks = drop(b.jobs), drop(b.tasks)
	if !j.leftover && j.final == "" {
		b.counters.JobsDeleted++
	}
	b.logf("job %s (%s) deleted", id, j.slug)
	b.mu.Unlock()
	b.writeJSON(w, http.StatusOK, map[string]any{"@Message.ExtendedInfo": []any{map[string]any{
		"Message": "Successfully Completed Request", "MessageArgs": []string{}, "MessageId": "Base.1.8.Success", "Severity": "OK"}}})
}
