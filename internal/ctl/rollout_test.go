package ctl

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
)

// TestRolloutCommands walks a rollout through flasherctl: the dry run, create, the approval
// pause after the canary (seen through the API's watch), approve by an ID prefix, watch to the
// end, then get, list and the rollout's tasks.
func TestRolloutCommands(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}})
	sel := []string{"--server", "r6515-01,r6515-02", "--set", "r6515-production", "--batch", "1", "--group-by", "facility", "--max-per-group", "1"}

	r := runCtl(t, e, append([]string{"rollout", "plan"}, sel...)...)
	if r.code != ExitOK || !strings.Contains(r.stdout, "0 (canary)") || !strings.Contains(r.stdout, "r6515-02") {
		t.Fatalf("rollout plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCtl(t, e, "rollout", "create", "--batch", "0", "--set", "r6515-production", "--server", "r6515-01")
	if r.code != ExitInvalid || !strings.Contains(r.stderr, "batch_size") {
		t.Errorf("a zero batch: exit %d, stderr %q; want %d naming batch_size", r.code, r.stderr, ExitInvalid)
	}

	r = runCtl(t, e, append([]string{"rollout", "create", "--approve-after-canary", "--request-id", "ctl-rollout-1", "-o", "json"}, sel...)...)
	var created flasherv1.CreateRolloutResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &created); r.code != ExitOK || err != nil {
		t.Fatalf("rollout create -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	id := created.GetRollout().GetId()

	ctx, cancel := context.WithTimeout(authCtx(), time.Minute)
	defer cancel()
	stream, err := e.Rollouts.WatchRollouts(ctx, &flasherv1.WatchRolloutsRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the approval pause: %v", err)
		}
		if m.GetRollout().GetPauseReason() == flasherv1.PauseReason_PAUSE_REASON_APPROVAL {
			break
		}
	}
	r = runCtl(t, e, "rollout", "approve", id[:8])
	if r.code != ExitOK || !strings.Contains(r.stdout, "RUNNING") {
		t.Fatalf("rollout approve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCtl(t, e, "rollout", "watch", id)
	if r.code != ExitOK {
		t.Fatalf("rollout watch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"State:", "SUCCEEDED", "Batch:", "2 of 2", "Budget:", "0 of 0 failures allowed used", "r6515-01", "r6515-02", "succeeded"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rollout watch output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCtl(t, e, "rollout", "get", id, "-o", "yaml")
	if r.code != ExitOK || !strings.Contains(r.stdout, "state: ROLLOUT_STATE_SUCCEEDED") {
		t.Errorf("rollout get -o yaml: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCtl(t, e, "rollout", "list")
	if r.code != ExitOK || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "2 servers: 2 succeeded") {
		t.Errorf("rollout list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCtl(t, e, "task", "list", "--rollout", id, "-o", "json")
	var tasks flasherv1.ListTasksResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &tasks); r.code != ExitOK || err != nil || len(tasks.GetTasks()) != 2 {
		t.Errorf("task list --rollout: exit %d, %v, %d tasks; want 2\n%s", r.code, err, len(tasks.GetTasks()), r.stdout)
	}
	r = runCtl(t, e, "rollout", "cancel", id)
	if r.code != ExitRefused {
		t.Errorf("cancelling an ended rollout: exit %d, want %d\n%s", r.code, ExitRefused, r.stderr)
	}
}
