package server_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// documentedMetrics returns the metric names of docs/operations.md's metrics table.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(flasher_[a-z_]+)` \\| (counter|gauge|histogram) \\|").FindAllSubmatch(doc, -1) {
		names = append(names, string(m[1]))
	}
	if len(names) < 10 {
		t.Fatalf("docs/operations.md documents %d metrics; the table was not found", len(names))
	}
	return names
}

// TestDocumentedMetrics flashes one simulated server and fails the login of another, then
// checks that every metric docs/operations.md documents is on /metrics with the values those
// two tasks imply.
func TestDocumentedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("flashes a simulated server")
	}
	faults := map[string]map[redfish.Op]redfish.Fault{"sim-0002": {redfish.OpLogin: {Kind: redfish.KindStatus, Status: 401}}}
	s := startSimServer(t, 2, faults, nil)
	ctx := context.Background()
	var ids []string
	for _, id := range []string{"sim-0001", "sim-0002"} {
		created, err := s.tasks.CreateTask(ctx, resolveTask(id))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.Task.Id)
	}
	final := s.waitFinal(t, ids...)
	if got := final[ids[0]]; got.State != flasherv1.TaskState_TASK_STATE_SUCCEEDED || len(got.GetPlan().GetSteps()) == 0 {
		t.Fatalf("the flash of sim-0001 is %s with %d steps (%v), want SUCCEEDED with steps", got.State, len(got.GetPlan().GetSteps()), got.Failure)
	}
	if got := final[ids[1]]; got.State != flasherv1.TaskState_TASK_STATE_FAILED || got.GetFailure().GetCode() != "LOGIN_FAILED" {
		t.Fatalf("the task of sim-0002 is %s (%v), want FAILED LOGIN_FAILED", got.State, got.Failure)
	}

	// Task series follow the change log: wait until it has delivered both ends.
	want := []string{
		`flasher_tasks{code="",method="OUT_OF_BAND",state="SUCCEEDED",vendor="Dell Inc."} 1`,
		`flasher_task_failures_total{code="LOGIN_FAILED",method="OUT_OF_BAND",vendor=`,
		`flasher_bmc_call_errors_total{kind="auth",vendor=`,
		`flasher_step_duration_seconds_count{component="BIOS"`,
		"flasher_queue_depth 0",
		`flasher_active_tasks{method="OUT_OF_BAND"} 0`,
		"flasher_servers_unobserved 1",
	}
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body = s.get(t, "/metrics")
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %s:\n%s", missing, flasherLines(body))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, name := range documentedMetrics(t) {
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket|_count|_sum)?[{ ]`).MatchString(body) {
			t.Errorf("documented metric %s is not on /metrics", name)
		}
	}
	if !regexp.MustCompile(`(?m)^flasher_artifact_downloads_total [1-9]`).MatchString(body) {
		t.Errorf("no download counted:\n%s", flasherLines(body))
	}
	if !regexp.MustCompile(`(?m)^flasher_observation_age_seconds_count 1$`).MatchString(body) {
		t.Errorf("want the age of one observed server:\n%s", flasherLines(body))
	}
}

func flasherLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "flasher_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
