package main

import (
	"context"
	"io"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// TestInBandWithoutAgent: an in-band task for a server whose agent is not connected is
// refused by PlanTask and CreateTask, naming the reason, unless it asks to wait for the agent.
func TestInBandWithoutAgent(t *testing.T) {
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-insecure", "-allow-unauthenticated-agents", "-grpc-listen", grpcAddr, "-http-listen", httpAddr,
			"-data-dir", t.TempDir(), "-inventory", "../deploy/inventory/sample.yaml", "-log-level", "warn"}, io.Discard, io.Discard)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitReady(t, httpAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tasks := flasherv1.NewTaskServiceClient(conn)
	spec := &flasherv1.TaskSpec{ServerId: "x11-01", Method: flasherv1.Method_METHOD_IN_BAND,
		Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}}}

	_, planErr := tasks.PlanTask(ctx, &flasherv1.PlanTaskRequest{Task: spec})
	_, createErr := tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec})
	for what, err := range map[string]error{"PlanTask": planErr, "CreateTask": createErr} {
		st := status.Convert(err)
		var typ string
		for _, d := range st.Details() {
			if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.Violations) == 1 {
				typ = pf.Violations[0].Type
			}
		}
		if st.Code() != codes.FailedPrecondition || typ != "AGENT_NOT_CONNECTED" {
			t.Errorf("%s without an agent: %v %v, want FailedPrecondition AGENT_NOT_CONNECTED", what, err, st.Details())
		}
	}
	list, err := tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{})
	if err != nil || len(list.Tasks) != 0 {
		t.Fatalf("a refused CreateTask stored a task: %v %v", list, err)
	}

	spec.WaitForAgent = true
	if _, err := tasks.PlanTask(ctx, &flasherv1.PlanTaskRequest{Task: spec}); err != nil {
		t.Errorf("PlanTask with wait_for_agent: %v", err)
	}
	resp, err := tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec})
	if err != nil {
		t.Fatalf("CreateTask with wait_for_agent: %v", err)
	}
	if _, err := tasks.CancelTask(ctx, &flasherv1.CancelTaskRequest{Id: resp.Task.Id}); err != nil {
		t.Fatal(err)
	}
}
