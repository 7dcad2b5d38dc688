package ctl

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/testenv"
)

func TestPlanGolden(t *testing.T) {
	e := startEnv(t, nil)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		stream   func(result) string
	}{
		{"plan", []string{"plan", "--server", "r6515-01", "--set", "r6515-production"}, ExitOK, func(r result) string { return r.stdout }},
		{"plan_explicit_force", []string{"task", "create", "--plan", "--server", "r6515-01", "--firmware", "BIOS=2.10.2,BMC=7.00.00.171", "--force"}, ExitOK, func(r result) string { return r.stdout }},
		{"plan_refused", []string{"plan", "--server", "r6515-01", "--set", "r6515-test"}, ExitRefused, func(r result) string { return r.stderr }},
		{"plan_nothing", []string{"plan", "--server", "r6515-01", "--firmware", "BIOS=2.10.2"}, ExitOK, func(r result) string { return r.stdout + r.stderr }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCtl(t, e, tc.args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			golden(t, tc.name, normalise(tc.stream(r)))
		})
	}
}

func TestRefusalExplained(t *testing.T) {
	e := startEnv(t, nil)
	r := runCtl(t, e, "plan", "--server", "r6515-01", "--set", "r6515-test")
	if r.code != ExitRefused {
		t.Fatalf("exit %d, want %d: %s", r.code, ExitRefused, r.stderr)
	}
	for _, want := range []string{"refused: DEPENDENCY_CYCLE: these updates require each other; no order can satisfy both", "  - "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("a refusal printed on stdout: %q", r.stdout)
	}
}

func TestTaskGetListGolden(t *testing.T) {
	e := startEnv(t, nil) // no executors: tasks stay QUEUED, so the output is stable
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--set", "r6515-production", "--priority", "2", "--request-id", "golden-1")
	if r.code != ExitOK {
		t.Fatalf("create: exit %d: %s", r.code, r.stderr)
	}
	golden(t, "task_create", normalise(r.stdout))
	r = runCtl(t, e, "task", "create", "--server", "x11-01", "--method", "inband", "--firmware", "NIC@MT2033X00200=14.29.2002", "--request-id", "golden-2")
	if r.code != ExitOK {
		t.Fatalf("create: exit %d: %s", r.code, r.stderr)
	}
	id := taskIDs(t, e, "r6515-01")[0]

	r = runCtl(t, e, "task", "get", id)
	if r.code != ExitOK {
		t.Fatalf("get: exit %d: %s", r.code, r.stderr)
	}
	golden(t, "task_get", normalise(r.stdout))

	r = runCtl(t, e, "task", "list")
	if r.code != ExitOK {
		t.Fatalf("list: exit %d: %s", r.code, r.stderr)
	}
	golden(t, "task_list", normalise(r.stdout))

	t.Run("filters and paging", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want int
		}{
			{[]string{"--server", "x11-01"}, 1},
			{[]string{"--method", "oob"}, 1},
			{[]string{"--state", "queued,active"}, 2},
			{[]string{"--state", "succeeded"}, 0},
			{[]string{"--requester", "nobody"}, 0},
			{[]string{"--limit", "1", "--all"}, 2},
			{[]string{"--limit", "1"}, 1},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				r := runCtl(t, e, append([]string{"task", "list", "-o", "json"}, tc.args...)...)
				if r.code != ExitOK {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				var resp flasherv1.ListTasksResponse
				if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
					t.Fatal(err)
				}
				if len(resp.GetTasks()) != tc.want {
					t.Errorf("%d tasks, want %d", len(resp.GetTasks()), tc.want)
				}
			})
		}
	})
}

// taskIDs lists the server's task ids through the test client, oldest first.
func taskIDs(t *testing.T, e *testenv.Env, server string) []string {
	t.Helper()
	resp, err := e.Tasks.ListTasks(authCtx(), &flasherv1.ListTasksRequest{Filter: &flasherv1.TaskFilter{ServerId: server}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range resp.GetTasks() {
		ids = append(ids, tk.GetId())
	}
	if len(ids) == 0 {
		t.Fatalf("no tasks on %s", server)
	}
	return ids
}

// TestJSONSchema pins the field names scripts read: proto names, every field present.
func TestJSONSchema(t *testing.T) {
	e := startEnv(t, nil)
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--resolve", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("create: exit %d: %s", r.code, r.stderr)
	}
	var created flasherv1.CreateTaskResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("create output is not a CreateTaskResponse: %v\n%s", err, r.stdout)
	}
	if !created.GetCreated() || created.GetTask().GetFirmwareSet() != "r6515-production" {
		t.Errorf("created=%v set=%q, want a new task resolved to r6515-production", created.GetCreated(), created.GetTask().GetFirmwareSet())
	}
	id := created.GetTask().GetId()

	taskKeys := []string{"cancel_requested", "create_time", "failure", "finish_time", "firmware", "firmware_set", "force", "id", "install_mode",
		"live_plan", "method", "plan", "priority", "progress", "reinstall", "request_id", "requester", "revision", "rollout_id", "server_id", "start_time", "state", "trace_id", "update_time", "worker"}
	tests := []struct {
		name string
		args []string
		path []string // to the object whose keys are checked
		want []string
	}{
		{"task get", []string{"task", "get", id}, []string{"task"}, taskKeys},
		{"task list", []string{"task", "list"}, nil, []string{"next_page_token", "tasks"}},
		{"plan", []string{"plan", "--server", "r6515-01", "--set", "r6515-production"}, nil, []string{"plan", "server_model", "server_vendor"}},
		{"plan step", []string{"plan", "--server", "r6515-01", "--set", "r6515-production"}, []string{"plan", "steps", "0"},
			[]string{"activation", "checksum", "component", "downgrade", "filename", "firmware_id", "force", "from_age", "from_observed_at", "from_source", "from_version", "irreversible", "method", "model",
				"path", "post_actions", "pre_actions", "reinstall", "scheme", "serial", "to_version", "uncatalogued", "url", "vendor"}},
		{"task events", []string{"task", "events", id}, []string{"events", "0"}, []string{"from_state", "kind", "message", "revision", "task_id", "time", "to_state"}},
		{"inventory servers", []string{"inventory", "servers"}, []string{"servers", "0"},
			[]string{"bmc_address", "bmc_insecure_skip_verify", "components", "facility", "id", "model", "name", "serial", "vendor"}},
		{"inventory sets", []string{"inventory", "sets"}, []string{"firmware_sets", "0"}, []string{"firmware_ids", "id", "labels", "name"}},
	}
	for _, tc := range tests {
		for _, format := range []string{"json", "yaml"} {
			t.Run(tc.name+" "+format, func(t *testing.T) {
				r := runCtl(t, e, append(tc.args, "-o", format)...)
				if r.code != ExitOK {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				var doc any
				var err error
				if format == "json" {
					err = json.Unmarshal([]byte(r.stdout), &doc)
				} else {
					err = yaml.Unmarshal([]byte(r.stdout), &doc)
				}
				if err != nil {
					t.Fatalf("not %s: %v\n%s", format, err, r.stdout)
				}
				for _, p := range tc.path {
					switch d := doc.(type) {
					case map[string]any:
						doc = d[p]
					case []any:
						if len(d) == 0 {
							t.Fatalf("empty list at %s", p)
						}
						doc = d[0]
					}
				}
				obj, ok := doc.(map[string]any)
				if !ok {
					t.Fatalf("%v is %T, not an object", tc.path, doc)
				}
				var keys []string
				for k := range obj {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				if strings.Join(keys, " ") != strings.Join(tc.want, " ") {
					t.Errorf("keys\n got %v\nwant %v", keys, tc.want)
				}
			})
		}
	}
}

// TestExitCodes runs one command of each outcome class against a real server.
func TestExitCodes(t *testing.T) {
	e := startEnv(t, nil)
	r := runCtl(t, e, "task", "create", "--server", "r6515-02", "--resolve", "-o", "json")
	var created flasherv1.CreateTaskResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("%v: %s %s", err, r.stdout, r.stderr)
	}
	cancelled := created.GetTask().GetId()
	if r := runCtl(t, e, "task", "cancel", cancelled, "--reason", "test"); r.code != ExitOK {
		t.Fatalf("cancel: exit %d: %s", r.code, r.stderr)
	}
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()

	tests := []struct {
		name   string
		getenv func(string) string
		args   []string
		want   int
		stderr string
	}{
		{"ok", nil, []string{"inventory", "servers"}, ExitOK, ""},
		{"help", nil, []string{"task", "list", "-h"}, ExitOK, "Usage: flasherctl task list"},
		{"unknown command", nil, []string{"task", "frobnicate"}, ExitUsage, `unknown command "task frobnicate"`},
		{"no install mode", nil, []string{"task", "create", "--server", "r6515-01"}, ExitUsage, "choose exactly one of"},
		{"bad firmware flag", nil, []string{"plan", "--server", "r6515-01", "--firmware", "BMC"}, ExitUsage, "want COMPONENT[@SERIAL]=VALUE"},
		{"bad output", nil, []string{"task", "list", "-o", "xml"}, ExitUsage, "want table, json or yaml"},
		{"invalid id", nil, []string{"task", "get", "not-a-uuid"}, ExitInvalid, "invalid request"},
		{"invalid priority", nil, []string{"task", "create", "--server", "r6515-01", "--resolve", "--priority", "9"}, ExitInvalid, "priority"},
		{"refused plan", nil, []string{"plan", "--server", "r6515-01", "--set", "r6515-test"}, ExitRefused, "DEPENDENCY_CYCLE"},
		{"refused cancel", nil, []string{"task", "cancel", cancelled}, ExitRefused, "TASK_STATE"},
		{"task not found", nil, []string{"task", "get", "00000000-0000-4000-8000-000000000000"}, ExitNotFound, "not found"},
		{"server not found", nil, []string{"inventory", "server", "no-such-server"}, ExitNotFound, "not found"},
		{"wrong token", testEnvVars(e.Addr, "FLASHER_TOKEN", "wrong"), []string{"task", "list"}, ExitAuth, "unauthenticated"},
		{"no token", func(k string) string {
			if k == "FLASHER_SERVER" {
				return e.Addr
			}
			return ""
		}, []string{"task", "list"}, ExitAuth, "unauthenticated"},
		{"unavailable", testEnvVars(closed), []string{"task", "list"}, ExitUnavailable, "server unavailable"},
		{"agents not available", nil, []string{"agents"}, ExitUnimplemented, "not available on this server"},
		{"audit not available", nil, []string{"audit"}, ExitUnimplemented, "not available on this server"},
		{"watch cancelled task", nil, []string{"task", "watch", cancelled}, ExitTaskCancelled, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := tc.getenv
			if getenv == nil {
				getenv = testEnvVars(e.Addr)
			}
			r := runCtlEnv(t, getenv, tc.args...)
			if r.code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.want, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, r.stderr)
			}
		})
	}
}

// TestWatchLines follows a task to its end in line mode: every progress change on its own
// timestamped line, then the summary table.
func TestWatchLines(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}})
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--firmware", "BMC=7.00.00.171,BIOS=2.19.1", "--watch", "--request-id", "watch-1")
	if r.code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	golden(t, "watch_lines", normalise(r.stdout))
}

// TestWatchFailed ends with exit code 10 and the failure explained in the summary.
func TestWatchFailed(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{failOn: "BMC"}})
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--set", "r6515-production", "--watch")
	if r.code != ExitTaskFailed {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, ExitTaskFailed, r.stdout, r.stderr)
	}
	for _, want := range []string{"FAILED", "Failure: INSTALL_FAILED on BMC: BMC job failed installing BMC 7.00.00.171", "Job JID_001 failed: image rejected"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The summary says which component failed and that the later ones never started.
	if !strings.Contains(r.stdout, "not started") {
		t.Errorf("summary does not show the components after the failure as not started:\n%s", r.stdout)
	}
}

// TestWatchCancelled follows a queued task that is cancelled while being watched: exit 11.
func TestWatchCancelled(t *testing.T) {
	e := startEnv(t, nil) // no executor: the task waits in the queue
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--resolve", "-o", "json")
	var created flasherv1.CreateTaskResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("%v: %s", err, r.stderr)
	}
	id := created.GetTask().GetId()
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		off := false
		done <- RunWith(context.Background(), []string{"task", "watch", id}, &out, &errb, Options{Getenv: testEnvVars(e.Addr), Terminal: &off})
	}()
	waitFor(t, &out, "QUEUED", 5*time.Second)
	if r := runCtl(t, e, "task", "cancel", id, "--reason", "operator changed their mind"); r.code != ExitOK {
		t.Fatalf("cancel: exit %d: %s", r.code, r.stderr)
	}
	select {
	case code := <-done:
		if code != ExitTaskCancelled {
			t.Fatalf("watch exit %d, want %d\n%s\n%s", code, ExitTaskCancelled, out.String(), errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch did not end after the cancel:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "QUEUED → CANCELLED") {
		t.Errorf("watch output lacks the state change:\n%s", out.String())
	}
}

// TestWatchBars draws progress bars with ANSI redraws when asked for a terminal rendering.
func TestWatchBars(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}})
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--set", "r6515-production", "--watch", "--progress", "bars")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"\x1b[J", "A\r", "████████████████████ 100%", "install-status", "Installing 7.00.00.171", "FROM → TO", "6.10.30.00 → 7.00.00.171"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%q", want, r.stdout)
		}
	}
}

// TestWatchReconnects kills the control plane in the middle of an install and restarts it on
// the same address and database: the watch resumes from its last revision and sees the end.
func TestWatchReconnects(t *testing.T) {
	cfg := envConfig(t, nil)
	cfg.DBPath = filepath.Join(t.TempDir(), "flasher.db")
	block := make(chan struct{})
	cfg.Executors = map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{block: block}}
	e1 := testenvStart(t, cfg)

	r := runCtl(t, e1, "task", "create", "--server", "r6515-01", "--firmware", "BMC=7.00.00.171", "-o", "json")
	var created flasherv1.CreateTaskResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("%v: %s", err, r.stderr)
	}
	id := created.GetTask().GetId()
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		off := false
		done <- RunWith(context.Background(), []string{"task", "watch", id}, &out, &errb, Options{Getenv: testEnvVars(e1.Addr), Terminal: &off})
	}()
	<-block
	waitFor(t, &out, "download", 5*time.Second)
	e1.Stop()

	cfg.Addr = e1.Addr
	cfg.Executors = map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}}
	testenvStart(t, cfg)
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("watch exit %d\n%s\n%s", code, out.String(), errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("watch did not finish after the restart\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "reconnecting from revision") {
		t.Errorf("stderr does not report the reconnect:\n%s", errb.String())
	}
	for _, want := range []string{"verify", "installed 7.00.00.171", "SUCCEEDED"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q after the reconnect:\n%s", want, out.String())
		}
	}
}

// TestWatchAllBars follows every task of a server with bars; each task's summary appears when
// it ends, and an interrupt ends the watch with 0.
func TestWatchAllBars(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}})
	var out, errb testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- RunWith(ctx, []string{"task", "watch", "--progress", "bars"}, &out, &errb, Options{Getenv: testEnvVars(e.Addr)})
	}()
	waitFor(t, &errb, "watching from revision", 5*time.Second)
	for _, server := range []string{"r6515-01", "r6515-02"} {
		if r := runCtl(t, e, "task", "create", "--server", server, "--resolve"); r.code != ExitOK {
			t.Fatalf("create: %s", r.stderr)
		}
	}
	waitFor(t, &out, "on r6515-01 SUCCEEDED", 10*time.Second)
	waitFor(t, &out, "on r6515-02 SUCCEEDED", 10*time.Second)
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("interrupted watch exit %d, want 0: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "\x1b[J") {
		t.Errorf("no ANSI redraw in bars mode: %q", out.String())
	}
}

func TestWatchAllJSON(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}})
	var out, errb testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- RunWith(ctx, []string{"-o", "json", "task", "watch", "--server", "r6515-02"}, &out, &errb, Options{Getenv: testEnvVars(e.Addr)})
	}()
	waitFor(t, &out, "WATCH_EVENT_TYPE_SYNCED", 5*time.Second)
	for _, server := range []string{"r6515-01", "r6515-02"} {
		if r := runCtl(t, e, "task", "create", "--server", server, "--resolve"); r.code != ExitOK {
			t.Fatalf("create: %s", r.stderr)
		}
	}
	waitFor(t, &out, "TASK_STATE_SUCCEEDED", 10*time.Second)
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("interrupted watch exit %d, want 0: %s", code, errb.String())
	}
	// NDJSON: every line is one WatchTasksResponse.
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var resp flasherv1.WatchTasksResponse
		if err := protojson.Unmarshal([]byte(l), &resp); err != nil {
			t.Fatalf("line is not a WatchTasksResponse: %v\n%s", err, l)
		}
		if resp.GetTask() != nil && resp.GetTask().GetServerId() != "r6515-02" {
			t.Errorf("filter leaked a task of %s", resp.GetTask().GetServerId())
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ctl.yaml")
	if err := os.WriteFile(cfgFile, []byte("server: 127.0.0.1:7001\ntoken_file: token\noutput: yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	xdg := t.TempDir()
	if err := os.MkdirAll(filepath.Join(xdg, "flasher"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(xdg, "flasher", "ctl.yaml"), []byte("server: 127.0.0.1:7005\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{"defaults", nil, nil, Config{Addr: DefaultAddr, Plaintext: true, Output: "table"}, ""},
		{"default file", nil, map[string]string{"XDG_CONFIG_HOME": xdg}, Config{Addr: "127.0.0.1:7005", Plaintext: true, Output: "table"}, ""},
		{"file", []string{"--config", cfgFile}, nil, Config{Addr: "127.0.0.1:7001", Token: "file-token", Plaintext: true, Output: "yaml"}, ""},
		{"env over file", []string{"--config", cfgFile}, map[string]string{"FLASHER_SERVER": "127.0.0.1:7002", "FLASHER_TOKEN": "env-token"},
			Config{Addr: "127.0.0.1:7002", Token: "env-token", Plaintext: true, Output: "yaml"}, ""},
		{"flags over env", []string{"--config", cfgFile, "--addr", "127.0.0.1:7003", "--token", "flag-token", "-o", "json"},
			map[string]string{"FLASHER_SERVER": "127.0.0.1:7002", "FLASHER_TOKEN": "env-token"},
			Config{Addr: "127.0.0.1:7003", Token: "flag-token", Plaintext: true, Output: "json"}, ""},
		{"remote means TLS", []string{"--addr", "flasher.example:443"}, nil, Config{Addr: "flasher.example:443", Output: "table"}, ""},
		{"CA means TLS on loopback", nil, map[string]string{"FLASHER_CA": "/ca.pem"}, Config{Addr: DefaultAddr, CA: "/ca.pem", Output: "table"}, ""},
		{"insecure env", []string{"--addr", "flasher.example:9090"}, map[string]string{"FLASHER_INSECURE": "true"}, Config{Addr: "flasher.example:9090", Plaintext: true, Output: "table"}, ""},
		{"flag beats insecure env", []string{"--insecure=false"}, map[string]string{"FLASHER_INSECURE": "true"}, Config{Addr: DefaultAddr, Output: "table"}, ""},
		{"no token in clear over a network", []string{"--addr", "flasher.example:9090", "--insecure", "--token", "t"}, nil, Config{}, "refusing to send a token over plaintext"},
		{"missing explicit file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, Config{}, "config file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g globals
			fs := newTestFlagSet()
			g.register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			set := map[string]bool{}
			fs.Visit(func(f *flagT) { set[f.Name] = true })
			got, err := g.resolve(set, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestCompletion(t *testing.T) {
	e := startEnv(t, nil)
	r := runCtl(t, e, "task", "create", "--server", "r6515-02", "--resolve", "-o", "json")
	var created flasherv1.CreateTaskResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("%v: %s %s", err, r.stdout, r.stderr)
	}
	for _, tc := range []struct {
		words   []string
		want    []string
		without []string
	}{
		{[]string{""}, []string{"task", "plan", "inventory", "completion"}, []string{"create"}},
		{[]string{"task", ""}, []string{"create", "get", "watch"}, []string{"task"}},
		{[]string{"task", "create", "--server", ""}, []string{"r6515-01", "r6515-02"}, []string{"create", "--server"}},
		{[]string{"task", "create", "--server", "r6515-0"}, []string{"r6515-01"}, nil},
		{[]string{"plan", "--server", "r6515-01", "--set", ""}, []string{"r6515-production"}, nil},
		{[]string{"task", "create", "--method", ""}, []string{"oob", "inband"}, nil},
		{[]string{"task", "create", "--"}, []string{"--firmware", "--force", "--allow-reboot", "--server", "--addr"}, nil},
		{[]string{"task", "list", "--state", "f"}, []string{"failed"}, []string{"queued"}},
		{[]string{"task", "get", ""}, []string{created.GetTask().GetId()}, nil},
		{[]string{"--addr", e.Addr, "task", "watch", created.GetTask().GetId()[:4]}, []string{created.GetTask().GetId()}, nil},
		{[]string{"inventory", "server", ""}, []string{"r6515-01"}, nil},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}, nil},
	} {
		r := runCtl(t, e, append([]string{completeCommand}, tc.words...)...)
		got := strings.Split(strings.TrimSpace(r.stdout), "\n")
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("complete %q: no %q in %q (stderr %s)", tc.words, w, got, r.stderr)
			}
		}
		for _, w := range tc.without {
			if slices.Contains(got, w) {
				t.Errorf("complete %q: %q offered", tc.words, w)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runCtlEnv(t, testEnvVars("127.0.0.1:1"), "completion", shell)
		if r.code != ExitOK || !strings.Contains(r.stdout, "flasherctl "+completeCommand) {
			t.Errorf("%s: exit %d: %s%s", shell, r.code, r.stdout, r.stderr)
		}
	}
	r = runCtlEnv(t, testEnvVars("127.0.0.1:1"), "completion", "bash")
	path := filepath.Join(t.TempDir(), "c.bash")
	if err := os.WriteFile(path, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := execCommand("bash", "-n", path); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
}

// TestSummaryResults pins how the summary names each component's end.
func TestSummaryResults(t *testing.T) {
	ts := func(sec int64) *timestamppb.Timestamp { return timestamppb.New(time.Unix(1_700_000_000+sec, 0)) }
	tk := &flasherv1.Task{
		Id: "t1", ServerId: "s1", State: flasherv1.TaskState_TASK_STATE_FAILED, StartTime: ts(0), FinishTime: ts(30), UpdateTime: ts(30),
		Failure: &flasherv1.Failure{Code: "INSTALL_FAILED", Component: "BIOS", Message: "2 errors occurred:\n\t* one\n\t* two\n"},
		Plan: &flasherv1.Plan{Steps: []*flasherv1.PlanStep{
			{Component: "BMC", FromVersion: "1", ToVersion: "2"}, {Component: "BIOS", FromVersion: "3", ToVersion: "4"}, {Component: "NIC", Serial: "N1", ToVersion: "6"},
		}},
	}
	var out strings.Builder
	a := &app{stdout: &out, getenv: func(string) string { return "" }, now: time.Now, g: globals{progress: "lines"}}
	v := a.newView(true)
	steps := []*flasherv1.ComponentProgress{
		{Component: "BMC", State: flasherv1.StepState_STEP_STATE_RUNNING, UpdateTime: ts(1)},
		{Component: "BMC", State: flasherv1.StepState_STEP_STATE_SUCCEEDED, UpdateTime: ts(11)},
		{Component: "BIOS", State: flasherv1.StepState_STEP_STATE_RUNNING, Message: "line one\nline two", UpdateTime: ts(12)},
	}
	var progress []*flasherv1.ComponentProgress
	for _, p := range steps {
		progress = upsert(progress, p)
		v.update(&flasherv1.Task{Id: "t1", ServerId: "s1", State: flasherv1.TaskState_TASK_STATE_ACTIVE, Plan: tk.Plan, Progress: progress, UpdateTime: p.UpdateTime})
	}
	tk.Progress = progress
	v.finish(tk)
	got := out.String()
	for _, want := range []string{
		"BMC        1 → 2      succeeded    10s",
		"BIOS       3 → 4      failed       18s",
		"NIC N1     ? → 6      not started  -",
		"2023-11-14T22:13:50.000Z s1 task t1 ACTIVE → FAILED",
		"line one line two",
		"Failure: INSTALL_FAILED on BIOS: 2 errors occurred: * one * two",
		"FAILED in 30s",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}

func upsert(ps []*flasherv1.ComponentProgress, p *flasherv1.ComponentProgress) []*flasherv1.ComponentProgress {
	for i, q := range ps {
		if q.GetComponent() == p.GetComponent() && q.GetSerial() == p.GetSerial() {
			ps[i] = p
			return ps
		}
	}
	return append(ps, p)
}

// TestCreateWatchJSON streams NDJSON: the CreateTaskResponse, then the task's changes.
func TestCreateWatchJSON(t *testing.T) {
	e := startEnv(t, map[task.Method]scheduler.Executor{task.MethodOutOfBand: &progressExecutor{}})
	r := runCtl(t, e, "task", "create", "--server", "r6515-01", "--firmware", "BMC=7.00.00.171", "--watch", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var created flasherv1.CreateTaskResponse
	if err := protojson.Unmarshal([]byte(lines[0]), &created); err != nil || created.GetTask().GetId() == "" {
		t.Fatalf("first line is not a CreateTaskResponse (%v): %s", err, lines[0])
	}
	var last flasherv1.WatchTasksResponse
	for _, l := range lines[1:] {
		if err := protojson.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("not a WatchTasksResponse: %v\n%s", err, l)
		}
		if last.GetTask().GetId() != created.GetTask().GetId() {
			t.Errorf("a line about another task: %s", l)
		}
	}
	if len(lines) < 5 || last.GetTask().GetState() != flasherv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Errorf("%d lines, last state %s; want the progress and a SUCCEEDED end", len(lines), last.GetTask().GetState())
	}
}

func TestVersion(t *testing.T) {
	r := runCtlEnv(t, testEnvVars("127.0.0.1:1"), "version")
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, "flasherctl ") {
		t.Errorf("exit %d, output %q", r.code, r.stdout)
	}
}
