// Package fleetflag runs the v0.1 design's attribute workflow on fleetdb: operators flag a
// server for a firmware update by setting its sh.hollow.flasher.task attribute; fleetflag
// finds flagged servers, creates one Flasher task per request through the TaskService API, and
// reflects the task's status (queued, active, success, failed), worker, timestamps and failure
// reason back into the attribute, keeping every field the operator set. Every attribute in the
// namespace gets a status: invalid ones fail with the field named. A request is claimed in the
// attribute under an id derived from the attribute's version before its task is created, so
// restarts and several replicas find the same task, and a re-flag (even of an identical
// payload) is a new request. It never plans or flashes anything itself.
package fleetflag

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
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
	// Waiting is the requests kept until the server's running task ends.
	Waiting int
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
			res.Errors = append(res.Errors, fmt.Errorf("server %s: %w", fl.version.Server, err))
		}
	}
	return res, nil
}

// Version identifies one version of a server's attribute as fleetdb shows it. fleetdb v1.20.3
// never moves an attribute's updated_at on PUT; it moves the server's updated_at instead, so
// that is what tells an operator's re-flag of an identical payload from the request before.
type Version struct {
	Server           uuid.UUID
	AttributeCreated time.Time
	AttributeUpdated time.Time
	ServerUpdated    time.Time
}

// flag is one server's attribute.
type flag struct {
	version  Version
	data     json.RawMessage
	payload  *Payload
	parseErr error
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
				out = append(out, flag{
					version: Version{Server: r.UUID, AttributeCreated: a.CreatedAt, AttributeUpdated: a.UpdatedAt, ServerUpdated: r.UpdatedAt},
					data:    a.Data, payload: p, parseErr: err,
				})
			}
		}
		if len(recs) == 0 || resp == nil || !resp.HasNextPage() || (resp.TotalPages > 0 && page >= resp.TotalPages) {
			break
		}
	}
	return out, nil
}

// RequestID is the task request id of one request: the attribute's version and the operator's
// request fields (every key but Flasher's own). Every replica and every restart that reads the
// same version derives the same id, and CreateTask is idempotent on it; an operator's re-flag
// is a PUT, which moves the server's updated_at, so it gets a new id even when the payload is
// the same as before.
func RequestID(v Version, p *Payload) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\x00", v.Server, v.AttributeCreated.UnixNano(), v.AttributeUpdated.UnixNano(), v.ServerUpdated.UnixNano())
	req := p.request()
	keys := make([]string, 0, len(req))
	for k := range req {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, canonical(req[k]))
	}
	return "fleetflag-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// handle gives every attribute in the namespace a status: requests are started or kept
// waiting, running ones followed, invalid ones failed with the field named. Finished ones
// (success, failed) are left alone until the operator sets status "" again.
func (f *Flagger) handle(ctx context.Context, fl flag, res *Result) error {
	if fl.parseErr != nil {
		res.Failed++
		return f.rejectNonObject(ctx, fl, res)
	}
	p := fl.payload
	switch {
	case p.HasStatus && (p.Status == StatusSuccess || p.Status == StatusFailed):
		return nil
	case !p.HasStatus:
		res.Failed++
		return f.fail(ctx, fl, "INVALID_REQUEST", `status: missing; set "status": "" to request an update`, res)
	case p.Invalid != nil:
		res.Failed++
		return f.fail(ctx, fl, "INVALID_REQUEST", p.Invalid.Error(), res)
	case p.Status == StatusRequested:
		return f.request(ctx, fl, RequestID(fl.version, p), res)
	case p.Status == StatusQueued || p.Status == StatusActive:
		if p.TaskID != "" {
			return f.follow(ctx, fl, res)
		}
		// queued with no task: the design's initial resolve-mode attribute, or a request
		// claimed by a replica that stopped before CreateTask. Either way it is picked up,
		// under the claimed id when there is one.
		rid := p.RequestID
		if rid == "" {
			rid = RequestID(fl.version, p)
		}
		return f.request(ctx, fl, rid, res)
	}
	res.Failed++
	return f.fail(ctx, fl, "INVALID_REQUEST", fmt.Sprintf(`status: %q is not one of "", queued, active, success, failed`, p.Status), res)
}

// request starts the task of a request. The attribute is claimed first (status queued, its
// request id, Flasher's old keys cleared), so a replica that stops between the claim and
// CreateTask, or after CreateTask and before the write-back, is followed by one that creates
// or finds the same task. While another task is live on the server the request waits in the
// attribute and starts when that task ends.
func (f *Flagger) request(ctx context.Context, fl flag, rid string, res *Result) error {
	p := fl.payload
	spec, err := spec(fl.version.Server.String(), p.requestPayload())
	if err != nil {
		res.Failed++
		return f.fail(ctx, fl, "INVALID_REQUEST", err.Error(), res)
	}
	if !(p.Status == StatusQueued && p.RequestID == rid && p.TaskID == "") {
		claim := edit{set: map[string]any{keyStatus: StatusQueued, keyRequestID: rid, keyWorker: f.cfg.Worker,
			keyReason: "request accepted; starting its task"}, clear: flasherKeys}
		if fields, ok := p.resolvedFields(); ok {
			claim.clear = append(claim.clear, fields...)
		}
		data, err := f.write(ctx, fl, claim, res)
		if err != nil {
			res.Deferred++
			return err
		}
		if ours, err := f.claimed(ctx, fl.version.Server, rid); err != nil || !ours {
			return err // another replica's claim, or the operator's new flag: the next poll follows it
		}
		fl.data = data
		if fl.payload, err = ParsePayload(data); err != nil {
			return err
		}
	}
	live, err := f.liveTask(ctx, fl.version.Server.String())
	if err != nil {
		res.Deferred++
		return err
	}
	if live != nil && live.GetRequestId() != rid {
		res.Waiting++
		_, err := f.write(ctx, fl, edit{set: map[string]any{
			keyReason: "waiting: task " + live.GetId() + " from an earlier request is " + stateWord(live.GetState()) + " on this server; this request starts when it ends",
		}}, res)
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	resp, err := f.cfg.Tasks.CreateTask(cctx, &flasherv1.CreateTaskRequest{RequestId: rid, Task: spec})
	cancel()
	if err != nil {
		switch status.Code(err) {
		case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
			res.Failed++
			return f.fail(ctx, fl, refusalCode(err), status.Convert(err).Message(), res)
		}
		// Unavailable (Flasher or its inventory), deadlines, ...: the claim stays, so the next
		// poll asks again with the same request id.
		res.Deferred++
		return fmt.Errorf("create task: %w", err)
	}
	if resp.GetCreated() {
		res.Created++
	} else {
		res.Joined++
	}
	return f.reflect(ctx, fl, resp.GetTask(), res)
}

// claimed re-reads the attribute and reports whether it carries this claim.
func (f *Flagger) claimed(ctx context.Context, server uuid.UUID, rid string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	defer cancel()
	a, _, err := f.cfg.Fleetdb.GetAttributes(cctx, server, Namespace)
	if err != nil {
		return false, fmt.Errorf("re-read %s attribute: %w", Namespace, err)
	}
	p, err := ParsePayload(a.Data)
	return err == nil && p.RequestID == rid && p.Status == StatusQueued && p.TaskID == "", nil
}

// follow syncs a queued or active attribute with its task, and reconciles stale ones.
func (f *Flagger) follow(ctx context.Context, fl flag, res *Result) error {
	p := fl.payload
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	r, err := f.cfg.Tasks.GetTask(cctx, &flasherv1.GetTaskRequest{Id: p.TaskID})
	cancel()
	switch {
	case err == nil:
		return f.reflect(ctx, fl, r.GetTask(), res)
	case status.Code(err) != codes.NotFound && status.Code(err) != codes.InvalidArgument:
		return fmt.Errorf("get task %s: %w", p.TaskID, err)
	}
	// Flasher's own updatedAt dates its last write; fleetdb's attribute updated_at does not
	// move on PUT, so it only dates the attribute's creation.
	last := fl.version.AttributeUpdated
	if p.UpdatedAt != nil {
		last = *p.UpdatedAt
	}
	if f.cfg.Now().Sub(last) < f.cfg.StaleAfter {
		return nil // another replica with another store may own it; judge it when it is old
	}
	res.Failed++
	return f.fail(ctx, fl, "STALE", "stale: task "+p.TaskID+" no longer exists", res)
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

func stateWord(s flasherv1.TaskState) string {
	if s == flasherv1.TaskState_TASK_STATE_ACTIVE {
		return StatusActive
	}
	return StatusQueued
}

// reflect writes a task's status into the attribute when anything changed.
func (f *Flagger) reflect(ctx context.Context, fl flag, t *flasherv1.Task, res *Result) error {
	worker := t.GetWorker()
	if worker == "" {
		worker = f.cfg.Worker
	}
	e := edit{set: map[string]any{
		keyTaskID: t.GetId(), keyRequestID: t.GetRequestId(), keyWorker: worker,
		keyQueuedAt: ts(t.GetCreateTime().AsTime(), t.GetCreateTime() != nil), keyStartedAt: ts(t.GetStartTime().AsTime(), t.GetStartTime() != nil),
		keyFinishedAt: ts(t.GetFinishTime().AsTime(), t.GetFinishTime() != nil), keyFailureCode: nil,
	}}
	switch t.GetState() {
	case flasherv1.TaskState_TASK_STATE_QUEUED:
		e.set[keyStatus], e.set[keyReason] = StatusQueued, "task "+t.GetId()+" is queued"
	case flasherv1.TaskState_TASK_STATE_ACTIVE:
		e.set[keyStatus], e.set[keyReason] = StatusActive, "task "+t.GetId()+" is running"
	case flasherv1.TaskState_TASK_STATE_SUCCEEDED:
		e.set[keyStatus], e.set[keyReason] = StatusSuccess, "task "+t.GetId()+" succeeded"
	case flasherv1.TaskState_TASK_STATE_FAILED, flasherv1.TaskState_TASK_STATE_CANCELLED:
		e.set[keyStatus], e.set[keyFailureCode], e.set[keyReason] = StatusFailed, "CANCELLED", "task "+t.GetId()+" cancelled"
		if fl := t.GetFailure(); fl != nil {
			e.set[keyFailureCode], e.set[keyReason] = fl.GetCode(), fl.GetMessage()
			if fl.GetComponent() != "" {
				e.set[keyReason] = fl.GetComponent() + ": " + fl.GetMessage()
			}
		}
	}
	f.resolve(fl.payload, t, &e)
	_, err := f.write(ctx, fl, e, res)
	return err
}

// resolve fills firmwareSet and Firmware with what Flasher resolved, as the design asks, but
// only where the operator set nothing: an operator's Firmware list (with its actions, force
// and any field Flasher does not know) is never rewritten. What Flasher filled is recorded
// under "resolved" so that a re-flag asks for the same mode again.
func (f *Flagger) resolve(p *Payload, t *flasherv1.Task, e *edit) {
	req := p.request()
	var fields []string
	values := map[string]json.RawMessage{}
	set := t.GetPlan().GetFirmwareSet()
	if set == "" {
		set = t.GetFirmwareSet()
	}
	if _, ok := req[keyFirmwareSet]; !ok && set != "" {
		if _, explicit := req[keyFirmware]; !explicit {
			fields = append(fields, keyFirmwareSet)
			e.set[keyFirmwareSet] = set
			values[keyFirmwareSet], _ = json.Marshal(set)
		}
	}
	if _, ok := req[keyFirmware]; !ok && len(t.GetPlan().GetSteps()) > 0 {
		items := make(Items, 0, len(t.GetPlan().GetSteps()))
		for _, s := range t.GetPlan().GetSteps() {
			items = append(items, Item{Component: s.GetComponent(), Version: s.GetToVersion(), URL: s.GetUrl(), Checksum: s.GetChecksum(), Force: s.GetForce(), Reinstall: s.GetReinstall()})
		}
		fields = append(fields, keyFirmware)
		e.set[keyFirmware] = items
		values[keyFirmware], _ = json.Marshal(items)
	}
	if len(fields) == 0 {
		return
	}
	e.set[keyResolved] = resolved{Fields: fields, Digest: digest(values, fields)}
}

func ts(t time.Time, ok bool) any {
	if !ok {
		return nil
	}
	return t.UTC()
}

// fail marks a request failed with a reason.
func (f *Flagger) fail(ctx context.Context, fl flag, code, reason string, res *Result) error {
	worker := fl.payload.Worker
	if worker == "" {
		worker = f.cfg.Worker
	}
	_, err := f.write(ctx, fl, edit{set: map[string]any{keyStatus: StatusFailed, keyFailureCode: code, keyReason: reason,
		keyWorker: worker, keyFinishedAt: f.cfg.Now().UTC()}}, res)
	return err
}

// rejectNonObject answers an attribute whose data is not a JSON object: it cannot be edited
// in place, so the original is kept under "request" beside the failure.
func (f *Flagger) rejectNonObject(ctx context.Context, fl flag, res *Result) error {
	p := &Payload{raw: map[string]json.RawMessage{keyRequest: fl.data}}
	fl.payload = p
	return f.fail(ctx, fl, "INVALID_REQUEST", ErrNotObject.Error()+`; set it to an object such as {"status": ""}`, res)
}

// write applies an edit to the attribute and writes it, unless only updatedAt would change:
// an unchanged task costs no fleetdb write. It returns the data as written.
func (f *Flagger) write(ctx context.Context, fl flag, e edit, res *Result) (json.RawMessage, error) {
	next, err := fl.payload.apply(e)
	if err != nil {
		return nil, err
	}
	if sameIgnoringUpdatedAt(fl.data, next) {
		return fl.data, nil
	}
	if e.set == nil {
		e.set = map[string]any{}
	}
	e.set[keyUpdatedAt] = f.cfg.Now().UTC()
	if next, err = fl.payload.apply(e); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	defer cancel()
	if _, err := f.cfg.Fleetdb.UpdateAttributes(cctx, fl.version.Server, Namespace, next); err != nil {
		return nil, fmt.Errorf("write %s attribute: %w", Namespace, err)
	}
	res.Updated++
	return next, nil
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
			fw := &flasherv1.Firmware{Component: it.Component, Version: it.Version, Url: it.URL, Checksum: it.Checksum, Force: it.Force, Reinstall: it.Reinstall}
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
		s.Install = &flasherv1.TaskSpec_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: p.FirmwareSet, Force: p.Force, Reinstall: p.Reinstall}}
	default:
		s.Install = &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: p.Force, Reinstall: p.Reinstall}}
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
