package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/testenv"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// TestSecretsNeverLeak runs real flashes against the simulated fleet — one that succeeds and
// one whose BMC refuses the login — with debug logging, then scans the logs, every API answer
// and the database files for the BMC password.
func TestSecretsNeverLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("flashes a simulated fleet")
	}
	const password = "Sup3r-Secret-BMC-pass"
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inv := filepath.Join(dir, "inventory.yaml")
	f, err := fleet.Start(ctx, fleet.Config{
		N: 2, FirstIP: "127.0.3.1", Port: 0, Password: password, InventoryPath: inv,
		InstallDuration: 200 * time.Millisecond, ApplyDuration: 100 * time.Millisecond,
		BMCRebootDelay: 50 * time.Millisecond, BMCRebootDuration: 300 * time.Millisecond,
		Faults: map[string]map[redfish.Op]redfish.Fault{"sim-0002": {redfish.OpLogin: {Kind: redfish.KindStatus, Status: 401}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imagesHost := strings.TrimPrefix(f.ImagesURL(), "http://")

	logs := &testenv.SyncBuffer{}
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, []string{"-insecure", "-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-data-dir", filepath.Join(dir, "data"),
			"-inventory", inv, "-artifact-schemes", "http", "-artifact-hosts", imagesHost, "-bmc-poll-interval", "200ms",
			"-log-level", "debug"}, logs, io.Discard)
	}()
	waitReady(t, httpAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tasks := flasherv1.NewTaskServiceClient(conn)
	var answers []proto.Message
	record := func(m proto.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, m)
	}
	var ids []string
	for _, srv := range []string{"sim-0001", "sim-0002"} {
		resp, err := tasks.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
			ServerId: srv, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}},
		}})
		record(resp, err)
		ids = append(ids, resp.Task.Id)
	}
	want := map[string]flasherv1.TaskState{ids[0]: flasherv1.TaskState_TASK_STATE_SUCCEEDED, ids[1]: flasherv1.TaskState_TASK_STATE_FAILED}
	for id, state := range want {
		deadline := time.Now().Add(90 * time.Second)
		for {
			got, err := tasks.GetTask(ctx, &flasherv1.GetTaskRequest{Id: id})
			if err != nil {
				t.Fatal(err)
			}
			if got.Task.State == state {
				if state == flasherv1.TaskState_TASK_STATE_FAILED && got.Task.Failure.GetCode() != "LOGIN_FAILED" {
					t.Fatalf("task %s failed with %v, want LOGIN_FAILED", id, got.Task.Failure)
				}
				answers = append(answers, got)
				break
			}
			if got.Task.State == flasherv1.TaskState_TASK_STATE_SUCCEEDED || got.Task.State == flasherv1.TaskState_TASK_STATE_FAILED || time.Now().After(deadline) {
				t.Fatalf("task %s is %s (%v), want %s", id, got.Task.State, got.Task.Failure, state)
			}
			time.Sleep(100 * time.Millisecond)
		}
		evs, err := tasks.ListTaskEvents(ctx, &flasherv1.ListTaskEventsRequest{TaskId: id})
		record(evs, err)
	}
	inventory := flasherv1.NewInventoryServiceClient(conn)
	servers, err := inventory.ListServers(ctx, &flasherv1.ListServersRequest{IncludeComponents: true})
	record(servers, err)
	server, err := inventory.GetServer(ctx, &flasherv1.GetServerRequest{Id: "sim-0001"})
	record(server, err)
	list, err := tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{})
	record(list, err)
	audit, err := flasherv1.NewAuditServiceClient(conn).ListAuditEvents(ctx, &flasherv1.ListAuditEventsRequest{})
	record(audit, err)

	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "LOGIN_FAILED") {
		t.Fatalf("the refused login is not in the logs; the scan would prove nothing:\n%.3000s", logs.String())
	}
	if strings.Contains(logs.String(), password) {
		t.Error("the BMC password appears in the server log")
	}
	for _, m := range answers {
		if b, _ := protojson.Marshal(m); strings.Contains(string(b), password) {
			t.Errorf("the BMC password appears in an API answer: %T", m)
		}
	}
	err = filepath.Walk(filepath.Join(dir, "data"), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.Contains(path, "artifacts") {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(password)) {
			t.Errorf("the BMC password is stored in %s", filepath.Base(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
