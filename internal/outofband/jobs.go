package outofband

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/stmcginnis/gofish"
)

// Job is a firmware job as the BMC lists it: an iDRAC job queue entry or a Redfish task.
type Job struct {
	ID string
	// Component is the slug the job updates, when the BMC says (iDRAC job names); "" otherwise.
	Component string
	// State is the BMC's own word (iDRAC JobState, else Redfish TaskState).
	State   string
	Message string
	Percent int
	// Start and End are on the BMC's clock; zero when the BMC does not say.
	Start, End time.Time
}

// Phase is what a job state means to the executor. Every state a BMC may report maps to one;
// states Flasher does not know map to PhaseUnknown, which fails after a short bound with the
// BMC's own text instead of being polled as running.
type Phase int

// Job phases.
const (
	PhaseUnknown   Phase = iota
	PhaseActive          // queued, downloading or running
	PhaseScheduled       // waits for a host reboot (apply time OnReset)
	PhaseSucceeded       // ended well
	PhaseFailed          // ended badly
)

func (p Phase) String() string {
	return [...]string{"unknown", "active", "scheduled", "succeeded", "failed"}[p]
}

// PhaseOf maps an iDRAC JobState or a Redfish TaskState (DMTF Task.v1 TaskState) to a phase.
func PhaseOf(state string) Phase {
	switch strings.ToLower(strings.TrimSpace(state)) {
	case "new", "starting", "running", "pending", "downloading", "downloaded", "scheduling", "waiting",
		"readyforexecution", "stopping", "cancelling", "service":
		return PhaseActive
	case "scheduled":
		return PhaseScheduled
	case "completed":
		return PhaseSucceeded
	case "failed", "completedwitherrors", "exception", "killed", "cancelled", "interrupted", "aborted":
		return PhaseFailed
	}
	return PhaseUnknown
}

// Final reports whether the job ended.
func (j Job) Final() bool {
	p := PhaseOf(j.State)
	return p == PhaseSucceeded || p == PhaseFailed
}

// describe is a job in the BMC's words, for task messages.
func (j Job) describe() string {
	s := fmt.Sprintf("BMC job %s %s", j.ID, j.State)
	if m := strings.TrimSpace(j.Message); m != "" {
		s += ` ("` + strings.TrimSuffix(m, ".") + `")`
	}
	return s
}

// dellJobNames are the iDRAC job names of firmware updates (the names bmclib's queue check
// knows), by component slug.
var dellJobNames = map[string]string{
	"BIOS":              "Firmware Update: BIOS",
	"BMC":               "Firmware Update: iDRAC with Lifecycle Controller",
	"NIC":               "Firmware Update: Network",
	"DRIVE":             "Firmware Update: Serial ATA",
	"STORAGECONTROLLER": "Firmware Update: SAS RAID",
}

func componentOfJob(name string) string {
	for slug, n := range dellJobNames {
		if strings.EqualFold(n, name) {
			if slug == "DRIVE" {
				return "Drive"
			}
			if slug == "STORAGECONTROLLER" {
				return "StorageController"
			}
			return slug
		}
	}
	return ""
}

// dellJobs is where iDRAC keeps its job queue; jobs stay there after their Redfish task is gone.
const dellJobs = "/redfish/v1/Managers/iDRAC.Embedded.1/Jobs"

// redfishClient returns a plain Redfish client for reads bmclib does not offer (the job queue,
// one job, one resource). It uses HTTP basic authentication, so it opens no extra session, over
// the same kind of verified transport as the session's bmclib client.
func (ss *Session) redfishClient(ctx context.Context) (*gofish.APIClient, error) {
	if ss.rf != nil {
		return ss.rf, nil
	}
	creds, err := ss.creds(ctx)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	hc, err := ss.target.httpClient(ss.held)
	if err != nil {
		return nil, err
	}
	hc.Timeout = ss.to.Call
	endpoint := ss.target.Scheme + "://" + ss.target.Key()
	c, err := within(ctx, ss, "connect to Redfish", ss.to.Call, func(context.Context) (*gofish.APIClient, error) {
		return gofish.ConnectContext(context.Background(), gofish.ClientConfig{
			Endpoint: endpoint, Username: creds.Username, Password: creds.Password, BasicAuth: true, HTTPClient: hc})
	})
	if err != nil {
		hc.CloseIdleConnections()
		return nil, err
	}
	ss.rf, ss.rfHTTP = c, hc
	return c, nil
}

// getJSON reads one Redfish resource into v.
func (ss *Session) getJSON(ctx context.Context, uri string, v any) error {
	c, err := ss.redfishClient(ctx)
	if err != nil {
		return err
	}
	_, err = within(ctx, ss, "GET "+uri, ss.to.Call, func(context.Context) (struct{}, error) {
		resp, err := c.Get(uri)
		if err != nil {
			return struct{}{}, err
		}
		defer resp.Body.Close()
		return struct{}{}, json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
	})
	if err != nil && classify(err) != classStatus {
		ss.dropRedfish()
	}
	return err
}

func (ss *Session) dropRedfish() {
	if ss.rfHTTP != nil {
		ss.rfHTTP.CloseIdleConnections()
	}
	ss.rf, ss.rfHTTP = nil, nil
}

type rawJob struct {
	ID              string `json:"Id"`
	Name            string
	JobState        string
	TaskState       string
	Message         string
	PercentComplete int
	StartTime       string
	EndTime         string
	CompletionTime  any
	Messages        []struct{ Message string }
	Oem             struct {
		Dell struct {
			JobState string
			Message  string
		}
	}
}

func (r rawJob) job() Job {
	j := Job{ID: r.ID, Component: componentOfJob(r.Name), Percent: r.PercentComplete, Start: parseBMCTime(r.StartTime)}
	switch {
	case r.JobState != "": // an iDRAC job
		j.State, j.Message = r.JobState, r.Message
		if s, ok := r.CompletionTime.(string); ok {
			j.End = parseBMCTime(s)
		}
	case r.Oem.Dell.JobState != "": // an iDRAC task
		j.State, j.Message = r.Oem.Dell.JobState, r.Oem.Dell.Message
		j.End = parseBMCTime(r.EndTime)
	default: // a Redfish task
		j.State = r.TaskState
		j.End = parseBMCTime(r.EndTime)
		var msgs []string
		for _, m := range r.Messages {
			if m.Message != "" {
				msgs = append(msgs, m.Message)
			}
		}
		j.Message = strings.Join(msgs, " ")
	}
	if !j.Final() {
		j.End = time.Time{}
	}
	return j
}

func parseBMCTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t
}

// Jobs lists the BMC's firmware jobs (iDRAC: the whole job queue, running, scheduled and
// finished; others: the Redfish tasks) and the BMC's clock offset from ours (TaskService
// DateTime minus our time; zero when the BMC does not say).
func (ss *Session) Jobs(ctx context.Context) ([]Job, time.Duration, error) {
	var svc struct{ DateTime string }
	if err := ss.getJSON(ctx, "/redfish/v1/TaskService", &svc); err != nil {
		return nil, 0, err
	}
	var offset time.Duration
	if t := parseBMCTime(svc.DateTime); !t.IsZero() {
		offset = time.Until(t)
	}
	coll := "/redfish/v1/TaskService/Tasks"
	if ss.provider == dell.ProviderName {
		coll = dellJobs
	}
	var list struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	if err := ss.getJSON(ctx, coll, &list); err != nil {
		return nil, 0, err
	}
	jobs := make([]Job, 0, len(list.Members))
	for _, m := range list.Members {
		var r rawJob
		if err := ss.getJSON(ctx, m.ID, &r); err != nil {
			if httpStatus(err) == http.StatusNotFound {
				continue // it went away between the two reads
			}
			return nil, 0, err
		}
		jobs = append(jobs, r.job())
	}
	return jobs, offset, nil
}

// errJobNotFound says the BMC does not know the job (anymore).
var errJobNotFound = errors.New("the BMC does not know the job")

// Job reads one job: on iDRAC from its job queue (which keeps finished jobs), elsewhere its
// Redfish task. One request.
func (ss *Session) Job(ctx context.Context, id string) (Job, error) {
	uri := "/redfish/v1/TaskService/Tasks/" + id
	switch {
	case strings.HasPrefix(id, "/"):
		uri = id // a task outside the TaskService collection
	case ss.provider == dell.ProviderName:
		uri = dellJobs + "/" + id
	}
	var r rawJob
	if err := ss.getJSON(ctx, uri, &r); err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return Job{}, errJobNotFound
		}
		return Job{}, err
	}
	j := r.job()
	if j.ID == "" {
		j.ID = id
	}
	return j, nil
}

// errNotDeletable says the BMC offers no way to delete a job (Redfish tasks cannot be deleted).
var errNotDeletable = errors.New("this BMC does not delete firmware jobs")

// DeleteJob deletes a job that has not run yet from the iDRAC job queue. Other BMCs offer no
// delete: errNotDeletable.
func (ss *Session) DeleteJob(ctx context.Context, id string) error {
	if ss.provider != dell.ProviderName {
		return errNotDeletable
	}
	c, err := ss.redfishClient(ctx)
	if err != nil {
		return err
	}
	_, err = within(ctx, ss, "delete job "+id, ss.to.Call, func(context.Context) (struct{}, error) {
		resp, err := c.Delete(dellJobs + "/" + id)
		if err == nil {
			resp.Body.Close()
		}
		return struct{}{}, err
	})
	return err
}

// errNoVersionResource says the BMC does not report the component's version in its own
// resource; the inventory is read instead.
var errNoVersionResource = errors.New("no version in the component's own Redfish resource")

// Version reads the running version of the BMC (Manager FirmwareVersion) or the BIOS (System
// BiosVersion) from its one Redfish resource: what verification polls, instead of the whole
// inventory.
func (ss *Session) Version(ctx context.Context, component string) (string, error) {
	coll, field := "/redfish/v1/Systems", "BiosVersion"
	if strings.EqualFold(component, "BMC") {
		coll, field = "/redfish/v1/Managers", "FirmwareVersion"
	}
	uri, err := ss.member(ctx, coll)
	if err != nil {
		return "", err
	}
	var res map[string]any
	if err := ss.getJSON(ctx, uri, &res); err != nil {
		return "", err
	}
	v, _ := res[field].(string)
	if strings.TrimSpace(v) == "" {
		return "", errNoVersionResource
	}
	return v, nil
}

// member returns the one member of a collection (Systems, Managers), read once per session;
// errNoVersionResource when it has none or several.
func (ss *Session) member(ctx context.Context, coll string) (string, error) {
	if uri := ss.members[coll]; uri != "" {
		return uri, nil
	}
	var list struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	if err := ss.getJSON(ctx, coll, &list); err != nil {
		return "", err
	}
	if len(list.Members) != 1 {
		return "", errNoVersionResource
	}
	if ss.members == nil {
		ss.members = map[string]string{}
	}
	ss.members[coll] = list.Members[0].ID
	return list.Members[0].ID, nil
}
