// Package fleetflag runs the v0.1 design's attribute workflow on fleetdb: operators flag a
// server for a firmware update by setting its sh.hollow.flasher.task attribute; fleetflag
// finds flagged servers, creates one Flasher task per request through the TaskService API, and
// reflects the task's status (queued, active, success, failed), worker, resolved firmware set
// and firmware, timestamps and failure reason back into the attribute. Requests are idempotent
// (the task's request id is derived from the server and the attribute version), so restarts and
// several replicas never create two tasks from one request; attributes left queued or active
// with no live task are reconciled. It never plans or flashes anything itself.
package fleetflag

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// Tasks is the part of the TaskService client fleetflag uses.
type Tasks interface {
	CreateTask(ctx context.Context, in *flasherv1.CreateTaskRequest, opts ...grpc.CallOption) (*flasherv1.CreateTaskResponse, error)
	GetTask(ctx context.Context, in *flasherv1.GetTaskRequest, opts ...grpc.CallOption) (*flasherv1.GetTaskResponse, error)
	ListTasks(ctx context.Context, in *flasherv1.ListTasksRequest, opts ...grpc.CallOption) (*flasherv1.ListTasksResponse, error)
}

var _ Tasks = flasherv1.TaskServiceClient(nil)

// Config configures a Flagger.
type Config struct {
	// Fleetdb is the fleetdb client (inventory/fleetdb Source.Client gives one).
	Fleetdb *fleetdbapi.Client
	Tasks   Tasks
	// Worker is written into attributes as the worker name (the pod or host name).
	Worker string
	// Interval is the poll interval of Run; default 30s.
	Interval time.Duration
	// StaleAfter is how long an attribute may stay queued or active without a live task before
	// it is marked failed; default 15m.
	StaleAfter time.Duration
	// RequestTimeout bounds each fleetdb and TaskService call; default 10s.
	RequestTimeout time.Duration
	// PageSize of the flagged-server listing; default 1000.
	PageSize int
	// Now is the clock for staleness and timestamps; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// Flagger turns flagged servers into tasks.
type Flagger struct {
	cfg Config
}

// New returns a Flagger.
func New(cfg Config) (*Flagger, error) {
	if cfg.Fleetdb == nil || cfg.Tasks == nil {
		return nil, errors.New("fleetflag: a fleetdb client and a task client are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 15 * time.Minute
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.PageSize <= 0 || cfg.PageSize > fleetdbapi.MaxPaginationSize {
		cfg.PageSize = fleetdbapi.MaxPaginationSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Flagger{cfg: cfg}, nil
}

// Run polls until ctx ends. A failed poll is logged and retried at the next tick.
func (f *Flagger) Run(ctx context.Context) error {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		if res, err := f.Poll(ctx); err != nil {
			f.cfg.Logger.WarnContext(ctx, "fleetflag poll failed", "err", err)
		} else if res.Created+res.Updated+res.Failed > 0 {
			f.cfg.Logger.InfoContext(ctx, "fleetflag poll", "flagged", res.Flagged, "created", res.Created, "updated", res.Updated, "failed", res.Failed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Result counts what one poll did.
type Result struct {
	// Flagged is the servers carrying the attribute.
	Flagged int
	// Created is the tasks created; Joined the requests that matched an existing task.
	Created, Joined int
	// Updated is the attributes written back.
	Updated int
	// Failed is the requests marked failed (invalid, refused, or stale).
	Failed int
	// Deferred is the requests left for the next poll (Flasher or its inventory unavailable).
	Deferred int
	// Errors are the per-server errors; the poll carries on past them.
	Errors []error
}

// Poll runs one cycle: list the flagged servers, then handle each attribute.
func (f *Flagger) Poll(ctx context.Context) (Result, error) {
	var res Result
	flagged, err := f.flagged(ctx)
	if err != nil {
		return res, err
	}
	res.Flagged = len(flagged)
	for _, fl := range flagged {
		if err := f.handle(ctx, fl, &res); err != nil {
			res.Errors = append(res.Errors, fmt.Errorf("server %s: %w", fl.server, err))
		}
	}
	return res, nil
}

// flag is one server's attribute.
type flag struct {
	server    uuid.UUID
	attr      fleetdbapi.Attributes
	payload   *Payload
	parseErr  error
	createdAt time.Time
	updatedAt time.Time
}

// flagged lists the servers with the attribute, attributes included, page by page.
func (f *Flagger) flagged(ctx context.Context) ([]flag, error) {
	var out []flag
	for page := 1; page <= 100000; page++ {
		cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
		recs, resp, err := f.cfg.Fleetdb.List(cctx, &fleetdbapi.ServerListParams{
			AttributeListParams: []fleetdbapi.AttributeListParams{{Namespace: Namespace}},
			PaginationParams:    &fleetdbapi.PaginationParams{Limit: f.cfg.PageSize, Page: page, Preload: true},
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("fleetflag: list flagged servers (page %d): %w", page, err)
		}
		for _, r := range recs {
			for _, a := range r.Attributes {
				if a.Namespace != Namespace {
					continue
				}
				p, err := ParsePayload(a.Data)
				out = append(out, flag{server: r.UUID, attr: a, payload: p, parseErr: err, createdAt: a.CreatedAt, updatedAt: a.UpdatedAt})
			}
		}
		if len(recs) == 0 || resp == nil || !resp.HasNextPage() || (resp.TotalPages > 0 && page >= resp.TotalPages) {
			break
		}
	}
	return out, nil
}

// RequestID is the task request id of one attribute version: the server, the attribute's
// created and updated times and the request fields. Every replica and every restart derives
// the same id from the same request, and CreateTask is idempotent on it.
func RequestID(server uuid.UUID, createdAt, updatedAt time.Time, p *Payload) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%d\x00%s\x00%t\x00", server, createdAt.UnixNano(), updatedAt.UnixNano(),
		strings.ToLower(p.Method), p.Priority, p.FirmwareSet, p.Force)
	for _, it := range p.Firmware {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%t\x00%v\x00%v\x00", it.Component, it.Version, it.URL, it.Checksum, it.Force, it.PreActions, it.PostActions)
	}
	return "fleetflag-" + hex.EncodeToString(h.Sum(nil))[:40]
}

func (f *Flagger) handle(ctx context.Context, fl flag, res *Result) error {
	if fl.parseErr != nil {
		// an attribute that is not a JSON object cannot be answered in place; leave it
		return fl.parseErr
	}
	p := fl.payload
	switch p.Status {
	case StatusRequested:
		return f.request(ctx, fl, res)
	case StatusQueued, StatusActive:
		return f.follow(ctx, fl, res)
	default:
		// success, failed or unknown: done until the operator asks again (status "")
		return nil
	}
}

// request creates the task of a new request, unless the server already has a live task.
func (f *Flagger) request(ctx context.Context, fl flag, res *Result) error {
	p := fl.payload
	if live, err := f.liveTask(ctx, fl.server.String()); err != nil {
		res.Deferred++
		return err
	} else if live != nil && live.GetRequestId() != RequestID(fl.server, fl.createdAt, fl.updatedAt, p) {
		// a duplicate flag while a task is running: report that task, start none
		res.Joined++
		return f.reflect(ctx, fl, live, "duplicate request while task "+live.GetId()+" is live; no second task started", res)
	}
	spec, err := spec(fl.server.String(), p)
	if err != nil {
		res.Failed++
		return f.fail(ctx, fl, "INVALID_REQUEST", err.Error(), res)
	}
	rid := RequestID(fl.server, fl.createdAt, fl.updatedAt, p)
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	resp, err := f.cfg.Tasks.CreateTask(cctx, &flasherv1.CreateTaskRequest{RequestId: rid, Task: spec})
	cancel()
	if err != nil {
		switch status.Code(err) {
		case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
			res.Failed++
			return f.fail(ctx, fl, refusalCode(err), status.Convert(err).Message(), res)
		}
		// Unavailable (Flasher or its inventory), deadlines, ...: the attribute is left as it
		// is, so the next poll derives the same request id.
		res.Deferred++
		return fmt.Errorf("create task: %w", err)
	}
	if resp.GetCreated() {
		res.Created++
	} else {
		res.Joined++
	}
	p.RequestID = rid
	return f.reflect(ctx, fl, resp.GetTask(), "", res)
}

// follow syncs a queued or active attribute with its task, and reconciles stale ones.
func (f *Flagger) follow(ctx context.Context, fl flag, res *Result) error {
	p := fl.payload
	var t *flasherv1.Task
	if p.TaskID != "" {
		cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
		r, err := f.cfg.Tasks.GetTask(cctx, &flasherv1.GetTaskRequest{Id: p.TaskID})
		cancel()
		switch {
		case err == nil:
			t = r.GetTask()
		case status.Code(err) != codes.NotFound && status.Code(err) != codes.InvalidArgument:
			return fmt.Errorf("get task %s: %w", p.TaskID, err)
		}
	}
	if t == nil {
		if f.cfg.Now().Sub(fl.updatedAt) < f.cfg.StaleAfter {
			return nil // another replica may be writing it; judge it when it is old
		}
		res.Failed++
		reason := "stale: no live Flasher task for this request"
		if p.TaskID != "" {
			reason = "stale: task " + p.TaskID + " no longer exists"
		}
		return f.fail(ctx, fl, "STALE", reason, res)
	}
	return f.reflect(ctx, fl, t, "", res)
}

// liveTask returns the server's queued or active task, if any.
func (f *Flagger) liveTask(ctx context.Context, server string) (*flasherv1.Task, error) {
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	defer cancel()
	r, err := f.cfg.Tasks.ListTasks(cctx, &flasherv1.ListTasksRequest{
		Filter:   &flasherv1.TaskFilter{ServerId: server, States: []flasherv1.TaskState{flasherv1.TaskState_TASK_STATE_QUEUED, flasherv1.TaskState_TASK_STATE_ACTIVE}},
		PageSize: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("list live tasks: %w", err)
	}
	if len(r.GetTasks()) == 0 {
		return nil, nil
	}
	return r.GetTasks()[0], nil
}

// reflect writes a task's status into the attribute when anything changed.
func (f *Flagger) reflect(ctx context.Context, fl flag, t *flasherv1.Task, note string, res *Result) error {
	p := *fl.payload
	p.TaskID = t.GetId()
	if p.RequestID == "" || note == "" {
		p.RequestID = t.GetRequestId()
	}
	if t.GetWorker() != "" {
		p.Worker = t.GetWorker()
	} else {
		p.Worker = f.cfg.Worker
	}
	switch t.GetState() {
	case flasherv1.TaskState_TASK_STATE_QUEUED:
		p.Status = StatusQueued
	case flasherv1.TaskState_TASK_STATE_ACTIVE:
		p.Status = StatusActive
	case flasherv1.TaskState_TASK_STATE_SUCCEEDED:
		p.Status = StatusSuccess
	case flasherv1.TaskState_TASK_STATE_FAILED, flasherv1.TaskState_TASK_STATE_CANCELLED:
		p.Status = StatusFailed
		p.FailureCode, p.Reason = "CANCELLED", "task cancelled"
		if fl := t.GetFailure(); fl != nil {
			p.FailureCode, p.Reason = fl.GetCode(), fl.GetMessage()
			if fl.GetComponent() != "" {
				p.Reason = fl.GetComponent() + ": " + p.Reason
			}
		}
	}
	if note != "" {
		p.Reason = note
	}
	// the resolved set and firmware, from the plan
	if pl := t.GetPlan(); pl != nil {
		if pl.GetFirmwareSet() != "" {
			p.FirmwareSet = pl.GetFirmwareSet()
		}
		if len(pl.GetSteps()) > 0 {
			items := make(Items, 0, len(pl.GetSteps()))
			for _, s := range pl.GetSteps() {
				items = append(items, Item{Component: s.GetComponent(), Version: s.GetToVersion(), URL: s.GetUrl(), Checksum: s.GetChecksum(), Force: s.GetForce()})
			}
			p.Firmware = items
		}
	} else if t.GetFirmwareSet() != "" {
		p.FirmwareSet = t.GetFirmwareSet()
	}
	p.QueuedAt = ts(t.GetCreateTime().AsTime(), t.GetCreateTime() != nil)
	p.StartedAt = ts(t.GetStartTime().AsTime(), t.GetStartTime() != nil)
	p.FinishedAt = ts(t.GetFinishTime().AsTime(), t.GetFinishTime() != nil)
	return f.write(ctx, fl, &p, res)
}

func ts(t time.Time, ok bool) *time.Time {
	if !ok {
		return nil
	}
	t = t.UTC()
	return &t
}

// fail marks a request failed with a reason.
func (f *Flagger) fail(ctx context.Context, fl flag, code, reason string, res *Result) error {
	p := *fl.payload
	p.Status, p.FailureCode, p.Reason = StatusFailed, code, reason
	if p.Worker == "" {
		p.Worker = f.cfg.Worker
	}
	now := f.cfg.Now().UTC()
	p.FinishedAt = &now
	return f.write(ctx, fl, &p, res)
}

// write updates the attribute unless nothing Flasher reports changed, so an unchanged task
// costs no fleetdb write and the attribute's updated time keeps meaning "last change".
func (f *Flagger) write(ctx context.Context, fl flag, p *Payload, res *Result) error {
	old := *fl.payload
	old.UpdatedAt, p.UpdatedAt = nil, nil
	a, errA := old.Marshal()
	b, errB := p.Marshal()
	if errA == nil && errB == nil && jsonEqual(a, b) {
		return nil
	}
	now := f.cfg.Now().UTC()
	p.UpdatedAt = &now
	data, err := p.Marshal()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	defer cancel()
	if _, err := f.cfg.Fleetdb.UpdateAttributes(cctx, fl.server, Namespace, data); err != nil {
		return fmt.Errorf("write %s attribute: %w", Namespace, err)
	}
	res.Updated++
	return nil
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// refusalCode is the first precondition violation type of a refusal (IMAGE_MISSING, ...).
func refusalCode(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.GetViolations()) > 0 {
			return pf.GetViolations()[0].GetType()
		}
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return "INVALID_REQUEST"
	case codes.NotFound:
		return "NOT_FOUND"
	}
	return "REFUSED"
}

// spec builds the task of a payload.
func spec(server string, p *Payload) (*flasherv1.TaskSpec, error) {
	s := &flasherv1.TaskSpec{ServerId: server, Priority: int32(p.Priority)}
	switch strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(p.Method)) {
	case "", "outofband", "oob":
		s.Method = flasherv1.Method_METHOD_OUT_OF_BAND
	case "inband":
		s.Method = flasherv1.Method_METHOD_IN_BAND
	default:
		return nil, fmt.Errorf("method %q is neither out-of-band nor in-band", p.Method)
	}
	if p.Priority < 0 || p.Priority > 3 {
		return nil, fmt.Errorf("priority %d is outside 0 to 3", p.Priority)
	}
	switch {
	case len(p.Firmware) > 0:
		items := make([]*flasherv1.Firmware, 0, len(p.Firmware))
		for _, it := range p.Firmware {
			fw := &flasherv1.Firmware{Component: it.Component, Version: it.Version, Url: it.URL, Checksum: it.Checksum, Force: it.Force}
			for _, a := range it.PreActions {
				act, err := action(a)
				if err != nil {
					return nil, fmt.Errorf("%s preActions: %w", it.Component, err)
				}
				fw.PreActions = append(fw.PreActions, act)
			}
			for _, a := range it.PostActions {
				act, err := action(a)
				if err != nil {
					return nil, fmt.Errorf("%s postActions: %w", it.Component, err)
				}
				fw.PostActions = append(fw.PostActions, act)
			}
			items = append(items, fw)
		}
		s.Install = &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: items}}
	case p.FirmwareSet != "":
		s.Install = &flasherv1.TaskSpec_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: p.FirmwareSet, Force: p.Force}}
	default:
		s.Install = &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: p.Force}}
	}
	return s, nil
}

// action maps the payload's action names ("resetBMC", "RESET_BMC", "reset-bmc") onto the API's.
func action(a string) (flasherv1.Action, error) {
	switch strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(a)) {
	case "resetbmc":
		return flasherv1.Action_ACTION_RESET_BMC, nil
	case "resethost":
		return flasherv1.Action_ACTION_RESET_HOST, nil
	case "poweroffhost":
		return flasherv1.Action_ACTION_POWER_OFF_HOST, nil
	case "powercyclehost":
		return flasherv1.Action_ACTION_POWER_CYCLE_HOST, nil
	}
	return 0, fmt.Errorf("unknown action %q", a)
}
