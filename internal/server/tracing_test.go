package server_test

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/server"
)

// TestTraces flashes a simulated server with an in-memory exporter and checks the trace: the
// CreateTask call's span, the task's span under it (its trace id is the task's trace_id), a span
// per component step and the BMC calls, all in one trace.
func TestTraces(t *testing.T) {
	if testing.Short() {
		t.Skip("flashes a simulated server")
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	s := startSimServer(t, 1, nil, nil, server.WithTracerProvider(tp))
	created, err := s.tasks.CreateTask(context.Background(), resolveTask("sim-0001"))
	if err != nil {
		t.Fatal(err)
	}
	traceID := created.Task.GetTraceId()
	if len(traceID) != 32 {
		t.Fatalf("the created task's trace_id is %q, want 32 hex digits", traceID)
	}
	done := s.waitFinal(t, created.Task.Id)[created.Task.Id]
	if done.State != flasherv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("task %s: %v", done.State, done.Failure)
	}
	got, err := s.tasks.GetTask(context.Background(), &flasherv1.GetTaskRequest{Id: created.Task.Id})
	if err != nil || got.Task.GetTraceId() != traceID {
		t.Fatalf("GetTask trace_id = %q (%v), want %s", got.GetTask().GetTraceId(), err, traceID)
	}

	// The task's span ends before the task's final state is committed; the exporter is
	// synchronous, so every span of the task is in it now.
	var create, taskSpan tracetest.SpanStub
	var steps, bmc []tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.SpanContext.TraceID().String() != traceID {
			continue
		}
		switch {
		case sp.Name == "flasher.v1.TaskService/CreateTask":
			create = sp
		case sp.Name == "task OUT_OF_BAND":
			taskSpan = sp
		case strings.HasPrefix(sp.Name, "BMC "):
			bmc = append(bmc, sp)
		default:
			steps = append(steps, sp)
		}
	}
	if !create.SpanContext.IsValid() || !taskSpan.SpanContext.IsValid() {
		t.Fatalf("trace %s has no CreateTask call span (%v) or no task span (%v)", traceID, create.Name, taskSpan.Name)
	}
	if taskSpan.Parent.SpanID() != create.SpanContext.SpanID() {
		t.Errorf("the task span's parent is %s, want the CreateTask span %s", taskSpan.Parent.SpanID(), create.SpanContext.SpanID())
	}
	names := map[string]bool{}
	for _, sp := range steps {
		if sp.Parent.SpanID() != taskSpan.SpanContext.SpanID() {
			t.Errorf("step span %q is not a child of the task span", sp.Name)
		}
		names[sp.Name] = true
	}
	for _, st := range done.GetPlan().GetSteps() {
		if !names["install-status "+st.Component] {
			t.Errorf("no install-status span for %s; step spans: %v", st.Component, names)
		}
	}
	if len(bmc) == 0 {
		t.Fatal("no BMC call span in the task's trace")
	}
	for _, sp := range bmc {
		if sp.Parent.SpanID() != taskSpan.SpanContext.SpanID() {
			t.Errorf("BMC call span %q is not a child of the task span", sp.Name)
		}
	}
}
