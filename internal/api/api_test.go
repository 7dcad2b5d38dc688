package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/testenv"
)

type gateExecutor struct {
	mu    sync.Mutex
	gates map[string]chan error
}

func (g *gateExecutor) gate(id string) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = map[string]chan error{}
	}
	if g.gates[id] == nil {
		g.gates[id] = make(chan error, 1)
	}
	return g.gates[id]
}

func (g *gateExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	if err := r.Progress(ctx, task.Progress{Component: "BIOS", State: task.StepRunning, Step: "upload-initiate-install", Percent: 40, Message: "Job JID_1 running"}); err != nil {
		return err
	}
	select {
	case err := <-g.gate(t.ID):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newEnv(t *testing.T, exec scheduler.Executor, hubKeep int) *testenv.Env {
	t.Helper()
	execs := map[task.Method]scheduler.Executor{}
	if exec != nil {
		execs[task.MethodOutOfBand] = exec
	}
	return testenv.Start(t, testenv.Config{Executors: execs, HubKeep: hubKeep, Heartbeat: 200 * time.Millisecond})
}

func firmwareSpec(server string, prio int32) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{
		ServerId: server, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: prio,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{{
			Component: "BIOS", Version: "2.19.1",
			Url:        "https://firmware.example.com/bios-2.19.1.bin",
			Checksum:   "sha256:" + fmt.Sprintf("%064x", 1),
			PreActions: []flasherv1.Action{flasherv1.Action_ACTION_RESET_BMC},
		}}}},
	}
}

func TestCreateGetListAndIdempotency(t *testing.T) {
	e := newEnv(t, nil, 0)
	ctx := context.Background()
	first, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{RequestId: "req-1", Task: firmwareSpec("srv-1", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.Task.State != flasherv1.TaskState_TASK_STATE_QUEUED || first.Task.Requester != "anonymous" {
		t.Fatalf("created %+v", first)
	}
	again, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{RequestId: "req-1", Task: firmwareSpec("srv-1", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Task.Id != first.Task.Id {
		t.Fatalf("repeat created a second task: %v vs %v", again.Task.Id, first.Task.Id)
	}
	if _, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{RequestId: "req-1", Task: firmwareSpec("srv-2", 2)}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("reuse of request id for another server: %v", err)
	}
	got, err := e.Tasks.GetTask(ctx, &flasherv1.GetTaskRequest{Id: first.Task.Id})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first.Task, got.Task, protocmp.Transform()); diff != "" {
		t.Fatalf("GetTask differs from CreateTask (-create +get):\n%s", diff)
	}
	if got.Task.Firmware[0].PreActions[0] != flasherv1.Action_ACTION_RESET_BMC {
		t.Fatal("pre action lost")
	}

	for i := 0; i < 7; i++ {
		if _, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: firmwareSpec(fmt.Sprintf("srv-%d", i%2+10), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := e.Tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range resp.Tasks {
			seen = append(seen, tk.Id)
		}
		token = resp.NextPageToken
		if token == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 8 {
		t.Fatalf("listed %d tasks, want 8", len(seen))
	}
	resp, err := e.Tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{Filter: &flasherv1.TaskFilter{ServerId: "srv-10"}})
	if err != nil || len(resp.Tasks) != 4 {
		t.Fatalf("filter by server: %d tasks, %v", len(resp.Tasks), err)
	}
	resp, err = e.Tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{Filter: &flasherv1.TaskFilter{States: []flasherv1.TaskState{flasherv1.TaskState_TASK_STATE_SUCCEEDED}}})
	if err != nil || len(resp.Tasks) != 0 {
		t.Fatalf("filter by state: %d tasks, %v", len(resp.Tasks), err)
	}
	if _, err := e.Tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{PageToken: "bogus"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bogus page token: %v", err)
	}
	if _, err := e.Tasks.GetTask(ctx, &flasherv1.GetTaskRequest{Id: "6f1c1f0e-0000-4000-8000-000000000000"}); status.Code(err) != codes.NotFound {
		t.Fatalf("missing task: %v", err)
	}
}

func TestValidationRejectsAndChangesNothing(t *testing.T) {
	e := newEnv(t, nil, 0)
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*flasherv1.CreateTaskRequest)
		field  string
	}{
		{"priority too high", func(r *flasherv1.CreateTaskRequest) { r.Task.Priority = 4 }, "task.priority"},
		{"negative priority", func(r *flasherv1.CreateTaskRequest) { r.Task.Priority = -1 }, "task.priority"},
		{"malformed server id", func(r *flasherv1.CreateTaskRequest) { r.Task.ServerId = "../etc" }, "task.server_id"},
		{"empty server id", func(r *flasherv1.CreateTaskRequest) { r.Task.ServerId = "" }, "task.server_id"},
		{"no method", func(r *flasherv1.CreateTaskRequest) { r.Task.Method = 0 }, "task.method"},
		{"empty firmware list", func(r *flasherv1.CreateTaskRequest) {
			r.Task.Install = &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{}}
		}, "task.firmware.items"},
		{"no install mode", func(r *flasherv1.CreateTaskRequest) { r.Task.Install = nil }, "task.install"},
		{"bad url", func(r *flasherv1.CreateTaskRequest) {
			r.Task.GetFirmware().Items[0].Url = "not a url"
		}, "task.firmware.items[0].url"},
		{"bad checksum", func(r *flasherv1.CreateTaskRequest) {
			r.Task.GetFirmware().Items[0].Checksum = "sha256:xyz"
		}, "task.firmware.items[0].checksum"},
		{"url without checksum", func(r *flasherv1.CreateTaskRequest) {
			r.Task.GetFirmware().Items[0].Checksum = ""
		}, "task.firmware.items[0]"},
		{"bad request id", func(r *flasherv1.CreateTaskRequest) { r.RequestId = "a b" }, "request_id"},
		{"no task", func(r *flasherv1.CreateTaskRequest) { r.Task = nil }, "task"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-1", 1)}
			tc.mutate(req)
			_, err := e.Tasks.CreateTask(ctx, req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code %v, want InvalidArgument (%v)", st.Code(), err)
			}
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.FieldViolations {
						fields = append(fields, v.Field)
					}
				}
			}
			found := false
			for _, f := range fields {
				found = found || f == tc.field
			}
			if !found {
				t.Fatalf("field violations %v, want %s", fields, tc.field)
			}
		})
	}
	if rev, _ := e.Store.Revision(ctx); rev != 0 {
		t.Fatalf("rejected requests changed the store: revision %d", rev)
	}
	if _, err := e.Tasks.GetTask(ctx, &flasherv1.GetTaskRequest{Id: "nope"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed task id: %v", err)
	}
}

func recvUntil(t *testing.T, stream grpc.ServerStreamingClient[flasherv1.WatchTasksResponse], pred func(*flasherv1.WatchTasksResponse) bool) []*flasherv1.WatchTasksResponse {
	t.Helper()
	var got []*flasherv1.WatchTasksResponse
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv after %d messages: %v", len(got), err)
		}
		got = append(got, m)
		if pred(m) {
			return got
		}
	}
}

func TestWatchSnapshotChangesAndResume(t *testing.T) {
	g := &gateExecutor{}
	e := newEnv(t, g, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A task that exists before the watch starts: it comes in the snapshot.
	before, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.Tasks.WatchTasks(ctx, &flasherv1.WatchTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := recvUntil(t, stream, func(m *flasherv1.WatchTasksResponse) bool {
		return m.Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED
	})
	if msgs[0].Type != flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || msgs[0].Task.Id != before.Task.Id {
		t.Fatalf("first message %v", msgs[0])
	}
	// The snapshot shows the task as it is at that moment: queued or already running.
	if st := msgs[0].Task.State; st != flasherv1.TaskState_TASK_STATE_ACTIVE && st != flasherv1.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("snapshot task %v", msgs[0].Task)
	}
	// A task created while watching: the watcher sees every step of it, in order.
	during, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-b", 1)})
	if err != nil {
		t.Fatal(err)
	}
	g.gate(before.Task.Id) <- nil
	g.gate(during.Task.Id) <- nil
	done := map[string]bool{}
	msgs = recvUntil(t, stream, func(m *flasherv1.WatchTasksResponse) bool {
		if m.Task.GetState() == flasherv1.TaskState_TASK_STATE_SUCCEEDED {
			done[m.Task.Id] = true
		}
		return len(done) == 2
	})
	var kinds []string
	var lastRev int64
	for _, m := range msgs {
		if m.Type != flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
			continue
		}
		if m.Revision <= lastRev {
			t.Fatalf("revisions not increasing: %d after %d", m.Revision, lastRev)
		}
		lastRev = m.Revision
		if m.Task.Id == during.Task.Id {
			kinds = append(kinds, m.Event.Kind)
		}
	}
	want := []string{"CREATED", "STARTED", "PROGRESS", "SUCCEEDED"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	// Disconnect; meanwhile two tasks are created and one is cancelled.
	cancel()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	var missed []string
	for _, srv := range []string{"srv-b", "srv-c"} {
		r, err := e.Tasks.CreateTask(ctx2, &flasherv1.CreateTaskRequest{Task: firmwareSpec(srv, 0)})
		if err != nil {
			t.Fatal(err)
		}
		missed = append(missed, r.Task.Id)
	}
	resumed, err := e.Tasks.WatchTasks(ctx2, &flasherv1.WatchTasksRequest{StartRevision: lastRev})
	if err != nil {
		t.Fatal(err)
	}
	msgs = recvUntil(t, resumed, func(m *flasherv1.WatchTasksResponse) bool {
		return m.Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE && m.Task.Id == missed[1] && m.Event.Kind == "CREATED"
	})
	if msgs[0].Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT || msgs[0].Revision != lastRev+1 {
		t.Fatalf("resume did not continue at %d: %v", lastRev+1, msgs[0])
	}
	// An idle stream gets heartbeats carrying the revision to resume from.
	hb := recvUntil(t, resumed, func(m *flasherv1.WatchTasksResponse) bool {
		return m.Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT
	})
	if hb[len(hb)-1].Revision < msgs[len(msgs)-1].Revision {
		t.Fatalf("heartbeat revision %d behind %d", hb[len(hb)-1].Revision, msgs[len(msgs)-1].Revision)
	}
}

func TestWatchFilterAndCompactedRevision(t *testing.T) {
	e := newEnv(t, nil, 2) // the hub keeps two changes in memory; older ones come from the store
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 6; i++ {
		if _, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: firmwareSpec(fmt.Sprintf("srv-%d", i%2), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	// Resuming from revision 1 reads older changes from the store; filter keeps srv-1 only.
	stream, err := e.Tasks.WatchTasks(ctx, &flasherv1.WatchTasksRequest{StartRevision: 1, Filter: &flasherv1.TaskFilter{ServerId: "srv-1"}})
	if err != nil {
		t.Fatal(err)
	}
	msgs := recvUntil(t, stream, func(m *flasherv1.WatchTasksResponse) bool { return m.Revision == 6 })
	for _, m := range msgs {
		if m.Task.ServerId != "srv-1" {
			t.Fatalf("filter leaked %v", m.Task.ServerId)
		}
	}
	if len(msgs) != 3 {
		t.Fatalf("%d changes, want 3 (revisions 2, 4, 6)", len(msgs))
	}
	if err := e.Store.Compact(ctx, 4); err != nil {
		t.Fatal(err)
	}
	old, err := e.Tasks.WatchTasks(ctx, &flasherv1.WatchTasksRequest{StartRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = old.Recv()
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("compacted revision: %v, want OutOfRange", err)
	}
}

func TestCancel(t *testing.T) {
	g := &gateExecutor{}
	e := newEnv(t, g, 0)
	ctx := context.Background()
	run, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-1", 0)})
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := e.Tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-1", 0)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Tasks.CancelTask(ctx, &flasherv1.CancelTaskRequest{Id: waiting.Task.Id, Reason: "wrong window"})
	if err != nil || c.Task.State != flasherv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("cancel queued: %v %v", c, err)
	}
	if _, err := e.Tasks.CancelTask(ctx, &flasherv1.CancelTaskRequest{Id: waiting.Task.Id}); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(status.Convert(err).Message(), "is CANCELLED") {
		t.Fatalf("cancel twice: %v, want FailedPrecondition naming the final state", err)
	}
	evs, err := e.Tasks.ListTaskEvents(ctx, &flasherv1.ListTaskEventsRequest{TaskId: waiting.Task.Id})
	if err != nil || len(evs.Events) != 2 || evs.Events[1].Message != "anonymous: wrong window" {
		t.Fatalf("events %v %v", evs, err)
	}
	g.gate(run.Task.Id) <- nil
}
