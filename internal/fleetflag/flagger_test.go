package fleetflag_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/fleetflag"
	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/testenv"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

const token = "flag-token"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// installer stands in for the out-of-band and in-band executors: once its gate opens it
// "installs" each planned step by writing the new version back to fleetdb, as a verified
// install does, or fails for the servers named in fail.
type installer struct {
	src  *fleetdb.Source
	gate chan struct{}
	fail map[string]bool
}

func (e *installer) Execute(ctx context.Context, t *task.Task, _ task.Reporter) error {
	select {
	case <-e.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	if e.fail[t.ServerID] {
		return task.Fail("INSTALL_FAILED", "BIOS", "BMC rejected the image", nil)
	}
	if t.Plan == nil {
		return task.Fail("NO_PLAN", "", "task has no plan", nil)
	}
	for _, s := range t.Plan.Steps {
		if err := e.src.SetInstalledVersion(ctx, t.ServerID, s.Component, s.Serial, s.ToVersion); err != nil {
			return task.Fail("WRITE_BACK", s.Component, err.Error(), err)
		}
	}
	return nil
}

type fixture struct {
	sim   *simfleetdb.Server
	src   *fleetdb.Source
	env   *testenv.Env
	clk   *clock
	exec  *installer
	flags func(worker string) *fleetflag.Flagger
}

func setup(t *testing.T) *fixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	sim, err := simfleetdb.New(simfleetdb.Config{Token: token, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	src, err := fleetdb.New(fleetdb.Config{URL: sim.URL(), Token: token, ServerTTL: -1, CatalogTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	exec := &installer{src: src, gate: make(chan struct{}), fail: map[string]bool{}}
	env := testenv.Start(t, testenv.Config{
		Inventory: src,
		Executors: map[task.Method]scheduler.Executor{task.MethodOutOfBand: exec, task.MethodInBand: exec},
	})
	f := &fixture{sim: sim, src: src, env: env, clk: clk, exec: exec}
	f.flags = func(worker string) *fleetflag.Flagger {
		fl, err := fleetflag.New(fleetflag.Config{Fleetdb: src.Client(), Tasks: env.Tasks, Worker: worker, Now: clk.Now, StaleAfter: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return fl
	}
	return f
}

func (f *fixture) server(name string) uuid.UUID {
	return f.sim.AddServer(simfleetdb.ServerSeed{
		Name: name, Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "SN" + name, BMCAddress: "127.0.0.1:1",
		Username: "root", Password: "calvin",
		Components: []simfleetdb.ComponentSeed{
			{Slug: "bmc", Vendor: "Dell Inc.", Serial: "bmc-" + name, Installed: "6.10.30.00"},
			{Slug: "bios", Vendor: "Dell Inc.", Serial: "bios-" + name, Installed: "2.11.4"},
			{Slug: "nic", Vendor: "Broadcom", Model: "BCM57414", Serial: "nic-" + name, Installed: "21.80.16.95"},
		},
	})
}

func (f *fixture) catalog() {
	no, yes := false, true
	fw := func(component, version, vendor string, inband *bool) uuid.UUID {
		return f.sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{
			Vendor: vendor, Model: []string{"poweredge r6515", "BCM57414"}, Component: component, Version: version,
			Filename: component + ".bin", Checksum: "md5sum:" + strings.Repeat("ab", 16),
			RepositoryURL: "http://127.0.0.1:1/" + component + ".bin", InstallInband: inband, OEM: &no,
		})
	}
	bmc := fw("bmc", "7.00.00.171", "dell", &no)
	bios := fw("bios", "2.19.1", "dell", &no)
	fw("nic", "22.31.6", "broadcom", &yes)
	f.sim.AddFirmwareSet(uuid.Nil, "dell-r6515", map[string]string{"vendor": "dell", "model": "poweredge r6515", "default": "true"}, bmc, bios)
}

func (f *fixture) attr(t *testing.T, id uuid.UUID) *fleetflag.Payload {
	t.Helper()
	a, ok := f.sim.Attribute(id, fleetflag.Namespace)
	if !ok {
		t.Fatalf("server %s has no %s attribute", id, fleetflag.Namespace)
	}
	p, err := fleetflag.ParsePayload(a.Data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) tasksOf(t *testing.T, id uuid.UUID) []*flasherv1.Task {
	t.Helper()
	r, err := f.env.Tasks.ListTasks(context.Background(), &flasherv1.ListTasksRequest{Filter: &flasherv1.TaskFilter{ServerId: id.String()}})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetTasks()
}

func poll(t *testing.T, fl *fleetflag.Flagger) fleetflag.Result {
	t.Helper()
	res, err := fl.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		t.Errorf("poll: %v", e)
	}
	return res
}

func TestWorkflowEndToEnd(t *testing.T) {
	f := setup(t)
	f.catalog()
	oob, inband, resolve, failing := f.server("oob"), f.server("inband"), f.server("resolve"), f.server("failing")
	f.exec.fail[failing.String()] = true
	f.sim.SetAttribute(oob, fleetflag.Namespace, json.RawMessage(`{"namespace":"sh.hollow.flasher.task","method":"out-of-band","status":"","priority":2,"requester":"alice",
		"Firmware":{"bmc":{"version":"7.00.00.171","postActions":["resetBMC"]}}}`))
	f.sim.SetAttribute(inband, fleetflag.Namespace, map[string]any{"method": "in-band", "status": "", "requester": "bob",
		"Firmware": []map[string]any{{"component": "nic", "version": "22.31.6"}}})
	f.sim.SetAttribute(resolve, fleetflag.Namespace, map[string]any{"status": "", "requester": "carol"})
	f.sim.SetAttribute(failing, fleetflag.Namespace, map[string]any{"status": "", "firmwareSet": "dell-r6515"})

	fl := f.flags("flasher-0")
	res := poll(t, fl)
	// each request: a claim, then the task's state
	if res.Flagged != 4 || res.Created != 4 || res.Updated != 8 {
		t.Fatalf("first poll = %+v, want 4 flagged and created, 8 writes", res)
	}
	for _, id := range []uuid.UUID{oob, inband, resolve, failing} {
		p := f.attr(t, id)
		if p.Status != fleetflag.StatusQueued && p.Status != fleetflag.StatusActive || p.TaskID == "" || p.Worker == "" || p.QueuedAt == nil {
			t.Errorf("%s after pickup: %+v", id, p)
		}
	}
	// resolve mode wrote the set and the firmware it resolved
	if p := f.attr(t, resolve); p.FirmwareSet == "" || len(p.Firmware) != 2 {
		t.Errorf("resolve attribute = set %q firmware %+v, want the resolved set with BMC and BIOS", p.FirmwareSet, p.Firmware)
	}
	// extra fields of the operator's payload are kept
	if a, _ := f.sim.Attribute(oob, fleetflag.Namespace); !strings.Contains(string(a.Data), `"namespace":"sh.hollow.flasher.task"`) {
		t.Errorf("namespace field lost: %s", a.Data)
	}

	// tasks are ACTIVE, blocked at the gate: the attributes follow
	for _, id := range []uuid.UUID{oob, inband, resolve, failing} {
		f.env.WaitState(t, f.attr(t, id).TaskID, 5*time.Second, task.StateActive)
	}
	poll(t, fl)
	if p := f.attr(t, oob); p.Status != fleetflag.StatusActive || p.StartedAt == nil {
		t.Errorf("oob while running: %+v", p)
	}

	close(f.exec.gate)
	for _, id := range []uuid.UUID{oob, inband, resolve, failing} {
		f.env.WaitState(t, f.attr(t, id).TaskID, 5*time.Second, task.StateSucceeded, task.StateFailed)
	}
	poll(t, fl)
	want := map[uuid.UUID]string{oob: "success", inband: "success", resolve: "success", failing: "failed"}
	for id, st := range want {
		p := f.attr(t, id)
		if p.Status != st || p.FinishedAt == nil {
			t.Errorf("%s = %s (finished %v), want %s", id, p.Status, p.FinishedAt, st)
		}
	}
	if p := f.attr(t, failing); p.FailureCode != "INSTALL_FAILED" || !strings.Contains(p.Reason, "BMC rejected the image") {
		t.Errorf("failing attribute: code %q reason %q", p.FailureCode, p.Reason)
	}
	// installed versions were written back to fleetdb
	checks := []struct {
		id         uuid.UUID
		slug, want string
	}{
		{oob, "bmc", "7.00.00.171"}, {inband, "nic", "22.31.6"}, {resolve, "bmc", "7.00.00.171"},
		{resolve, "bios", "2.19.1"}, {failing, "bios", "2.11.4"},
	}
	for _, c := range checks {
		if v, _ := f.sim.InstalledVersion(c.id, c.slug); v != c.want {
			t.Errorf("%s %s = %s, want %s", c.id, c.slug, v, c.want)
		}
	}
	// finished attributes are left alone
	if res := poll(t, fl); res.Updated != 0 || res.Created != 0 {
		t.Errorf("idle poll = %+v", res)
	}
}

// crashingTasks is the real TaskService client of a replica that stops right after a call
// has been answered: the call took effect, the replica never saw the answer.
type crashingTasks struct {
	fleetflag.Tasks
	calls int
}

func (c *crashingTasks) CreateTask(ctx context.Context, in *flasherv1.CreateTaskRequest, opts ...grpc.CallOption) (*flasherv1.CreateTaskResponse, error) {
	c.calls++
	if _, err := c.Tasks.CreateTask(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unavailable, "replica stopped")
}

func TestIdempotentAcrossReplicasAndRestarts(t *testing.T) {
	f := setup(t)
	f.catalog()
	afterCreate, afterClaim := f.server("a"), f.server("b")
	f.sim.SetAttribute(afterCreate, fleetflag.Namespace, map[string]any{"status": "", "firmwareSet": "dell-r6515"})

	// a replica stops after CreateTask, before writing the task back
	crash := &crashingTasks{Tasks: f.env.Tasks}
	fl, err := fleetflag.New(fleetflag.Config{Fleetdb: f.src.Client(), Tasks: crash, Worker: "flasher-0", Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := fl.Poll(context.Background()); err != nil || crash.calls != 1 || len(res.Errors) != 1 {
		t.Fatalf("poll of the stopping replica = %+v, %v (%d CreateTask calls)", res, err, crash.calls)
	}
	if n := len(f.tasksOf(t, afterCreate)); n != 1 {
		t.Fatalf("%d tasks after the first CreateTask", n)
	}
	if p := f.attr(t, afterCreate); p.Status != fleetflag.StatusQueued || p.RequestID == "" || p.TaskID != "" {
		t.Fatalf("claim before CreateTask: %+v", p)
	}

	// a replica stops after its claim, before CreateTask: the claim is written, no task
	f.sim.SetAttribute(afterClaim, fleetflag.Namespace, map[string]any{"status": "", "firmwareSet": "dell-r6515"})
	remove := f.sim.InjectFault(simfleetdb.Fault{Method: "GET", Path: "/servers/" + afterClaim.String() + "/attributes/", Status: 503})
	if res, err := f.flags("flasher-0").Poll(context.Background()); err != nil || len(res.Errors) != 1 {
		t.Fatalf("poll with the claim unconfirmed = %+v, %v", res, err)
	}
	remove()
	if n := len(f.tasksOf(t, afterClaim)); n != 0 {
		t.Fatalf("%d tasks created before the claim was confirmed", n)
	}

	// the restarted replica and a second replica both see the unanswered requests
	for _, worker := range []string{"flasher-0", "flasher-1"} {
		poll(t, f.flags(worker))
	}
	for _, id := range []uuid.UUID{afterCreate, afterClaim} {
		if n := len(f.tasksOf(t, id)); n != 1 {
			t.Errorf("%s: %d tasks for one request, want 1", id, n)
		}
		if p := f.attr(t, id); p.TaskID == "" || p.Status != fleetflag.StatusQueued && p.Status != fleetflag.StatusActive {
			t.Errorf("%s: attribute = %+v", id, p)
		}
	}
}

func TestRefusalsAndStale(t *testing.T) {
	f := setup(t)
	f.catalog()
	bad, refused, stale, fresh := f.server("bad"), f.server("refused"), f.server("stale"), f.server("fresh")
	f.sim.SetAttribute(bad, fleetflag.Namespace, map[string]any{"status": "", "method": "sideways"})
	f.sim.SetAttribute(refused, fleetflag.Namespace, map[string]any{"status": "", "firmwareSet": "no-such-set"})
	f.sim.SetAttribute(stale, fleetflag.Namespace, map[string]any{"status": "active", "taskID": uuid.NewString(), "worker": "gone"})
	f.clk.Advance(9 * time.Minute)
	f.sim.SetAttribute(fresh, fleetflag.Namespace, map[string]any{"status": "queued", "taskID": uuid.NewString(), "worker": "other"})

	fl := f.flags("flasher-0")
	res := poll(t, fl)
	if res.Failed != 2 || res.Created != 0 {
		t.Errorf("poll = %+v, want the two bad requests failed", res)
	}
	if p := f.attr(t, bad); p.Status != fleetflag.StatusFailed || !strings.Contains(p.Reason, "sideways") {
		t.Errorf("bad method: %+v", p)
	}
	if p := f.attr(t, refused); p.Status != fleetflag.StatusFailed || p.FailureCode != "SET_NOT_FOUND" || p.Reason == "" {
		t.Errorf("refused: %+v", p)
	}
	if p := f.attr(t, stale); p.Status != fleetflag.StatusActive {
		t.Errorf("stale judged before StaleAfter: %+v", p)
	}
	f.clk.Advance(2 * time.Minute) // stale is 11 minutes old, fresh 2
	poll(t, fl)
	if p := f.attr(t, stale); p.Status != fleetflag.StatusFailed || p.FailureCode != "STALE" {
		t.Errorf("stale after StaleAfter: %+v", p)
	}
	if p := f.attr(t, fresh); p.Status != fleetflag.StatusQueued {
		t.Errorf("fresh queued attribute reconciled too early: %+v", p)
	}
	if n := len(f.tasksOf(t, bad)) + len(f.tasksOf(t, refused)); n != 0 {
		t.Errorf("%d tasks created for refused requests", n)
	}
}

func TestPayload(t *testing.T) {
	tests := []struct {
		name, in string
		want     fleetflag.Items
		status   string
	}{
		{"object keyed by component", `{"status":"sucess","Firmware":{"bios":{"version":"2"},"bmc":{"version":"1","force":true}}}`,
			fleetflag.Items{{Component: "bios", Version: "2"}, {Component: "bmc", Version: "1", Force: true}}, "success"},
		{"list", `{"status":"Queued","Firmware":[{"component":"nic","version":"3","preActions":["resetBMC"]}]}`,
			fleetflag.Items{{Component: "nic", Version: "3", PreActions: []string{"resetBMC"}}}, "queued"},
		{"none", `{"status":""}`, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := fleetflag.ParsePayload([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if p.Status != tt.status || len(p.Firmware) != len(tt.want) {
				t.Fatalf("payload = %+v", p)
			}
			for i := range tt.want {
				if p.Firmware[i].Component != tt.want[i].Component || p.Firmware[i].Version != tt.want[i].Version || p.Firmware[i].Force != tt.want[i].Force {
					t.Errorf("item %d = %+v, want %+v", i, p.Firmware[i], tt.want[i])
				}
			}
		})
	}
	if _, err := fleetflag.ParsePayload([]byte(`"just a string"`)); err == nil {
		t.Error("a non-object attribute parsed")
	}
	in := func(s string) *fleetflag.Payload {
		p, err := fleetflag.ParsePayload([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	v := fleetflag.Version{AttributeCreated: time.Unix(1, 0), AttributeUpdated: time.Unix(1, 0), ServerUpdated: time.Unix(2, 0)}
	moved := v
	moved.ServerUpdated = time.Unix(3, 0)
	a := fleetflag.RequestID(v, in(`{"status":"","method":"in-band"}`))
	if b := fleetflag.RequestID(moved, in(`{"status":"","method":"in-band"}`)); a == b {
		t.Errorf("a re-flag (server updated_at moved) kept request id %s", a)
	}
	if b := fleetflag.RequestID(v, in(`{"method": "in-band", "status":"queued","taskID":"x","reason":"y"}`)); a != b {
		t.Errorf("Flasher's keys or formatting changed the request id: %s, %s", a, b)
	}
	if b := fleetflag.RequestID(v, in(`{"status":"","method":"out-of-band"}`)); a == b {
		t.Errorf("another request kept request id %s", a)
	}
}

func TestInventoryUnavailableDefers(t *testing.T) {
	f, id := setupOne(t, map[string]any{"status": ""})
	before, _ := f.sim.Attribute(id, fleetflag.Namespace)
	fl := f.flags("flasher-0")

	// fleetdb fails the planner's server read: CreateTask is UNAVAILABLE and nothing is written
	remove := f.sim.InjectFault(simfleetdb.Fault{Path: "/servers/" + id.String(), Status: 503})
	res, err := fl.Poll(context.Background())
	remove()
	if err != nil || res.Deferred != 1 || res.Created != 0 || res.Updated != 0 {
		t.Fatalf("poll with fleetdb failing = %+v, %v", res, err)
	}
	if after, _ := f.sim.Attribute(id, fleetflag.Namespace); string(after.Data) != string(before.Data) || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("attribute changed while deferred: %s", after.Data)
	}
	if n := len(f.tasksOf(t, id)); n != 0 {
		t.Fatalf("%d tasks created while the inventory was unavailable", n)
	}
	if res := poll(t, fl); res.Created != 1 {
		t.Errorf("poll after recovery = %+v, want the task created", res)
	}
}

func TestRunPollsUntilCancelled(t *testing.T) {
	f, id := setupOne(t, map[string]any{"status": "", "firmwareSet": "dell-r6515"})
	fl, err := fleetflag.New(fleetflag.Config{Fleetdb: f.src.Client(), Tasks: f.env.Tasks, Worker: "w", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fl.Run(ctx) }()

	// Run polls at once, before its first tick
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for f.attr(t, id).Status == fleetflag.StatusRequested {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("Run did not pick up the request")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-deadline.C:
		t.Fatal("Run did not return after cancel")
	}
}
