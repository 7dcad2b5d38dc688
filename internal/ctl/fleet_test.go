package ctl

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/testenv"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// simEnv is a control plane that builds its own executors over a fleet of n simulated BMCs.
func simEnv(t *testing.T, n int) (*fleet.Fleet, *testenv.Env) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	sim, err := fleet.Start(ctx, fleet.Config{N: n, FirstIP: "127.0.5.1", InventoryPath: inv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	src, err := file.NewSource(inv, file.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return sim, testenv.Start(t, testenv.Config{Inventory: src, BuildExecutors: true, ServerOptions: authOptions()})
}

func complianceJSON(t *testing.T, r result) *flasherv1.ListComplianceResponse {
	t.Helper()
	var resp flasherv1.ListComplianceResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("compliance -o json is not a ListComplianceResponse: %v\n%s", err, r.stdout)
	}
	return &resp
}

// TestComplianceAndCollect walks the operator's loop on simulated BMCs: compliance before any
// read (unknown, exit 12), a collect of every server, a drift made behind Flasher's back, the
// fleet brought to its sets through the simulator, then compliant (exit 0), a summary, and a
// collect that fails on one BMC (exit 13).
func TestComplianceAndCollect(t *testing.T) {
	sim, e := simEnv(t, 3)

	r := runCtl(t, e, "compliance")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--all") {
		t.Errorf("compliance without a selector: exit %d, stderr %q; want a usage error naming --all", r.code, r.stderr)
	}
	r = runCtl(t, e, "compliance", "--all", "--vendor", "dell")
	if r.code != ExitUsage {
		t.Errorf("--all with --vendor: exit %d, want %d", r.code, ExitUsage)
	}

	r = runCtl(t, e, "compliance", "--all")
	if r.code != ExitNotCompliant {
		t.Fatalf("compliance before any read: exit %d, want %d\n%s%s", r.code, ExitNotCompliant, r.stdout, r.stderr)
	}
	for _, want := range []string{"SERVER", "sim-0001", "sim-0003", "unknown", "3 servers: 3 unknown"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("compliance table lacks %q:\n%s", want, r.stdout)
		}
	}

	r = runCtl(t, e, "inventory", "collect", "--all")
	if r.code != ExitOK {
		t.Fatalf("collect --all: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, id := range []string{"sim-0001", "sim-0002", "sim-0003"} {
		if !strings.Contains(r.stdout, id+" RUNNING") || !strings.Contains(r.stdout, id+" SUCCEEDED") {
			t.Errorf("collect output lacks %s's RUNNING and SUCCEEDED lines:\n%s", id, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "Collected 3 servers: 3 read, 0 failed") {
		t.Errorf("collect summary missing:\n%s", r.stdout)
	}

	// Bring every component to its wanted version behind Flasher's back; the page size of one
	// makes flasherctl fetch a page per server.
	defer func(n int32) { compliancePageSize = n }(compliancePageSize)
	compliancePageSize = 1
	r = runCtl(t, e, "compliance", "--all", "-o", "json")
	if r.code != ExitNotCompliant {
		t.Fatalf("compliance -o json: exit %d, want %d (nothing was updated yet)\n%s", r.code, ExitNotCompliant, r.stderr)
	}
	resp := complianceJSON(t, r)
	if len(resp.Servers) != 3 {
		t.Fatalf("compliance over pages of one gave %d servers, want 3", len(resp.Servers))
	}
	changed := 0
	for _, sc := range resp.Servers {
		for _, c := range sc.Components {
			if c.Source != flasherv1.VersionSource_VERSION_SOURCE_BMC {
				t.Errorf("%s %s: source %s after a collect, want bmc", sc.ServerId, c.Component, c.Source)
			}
			if c.Status == flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT {
				continue
			}
			if !sim.Server(sc.ServerId).BMC.SetVersion(c.Component, c.Serial, c.WantedVersion) {
				t.Fatalf("the simulator has no %s %s on %s", c.Component, c.Serial, sc.ServerId)
			}
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("every component was already compliant: the test would prove nothing")
	}

	r = runCtl(t, e, "inventory", "collect", "sim-0001", "--server", "sim-0002,sim-0003")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Drift (versions that differ from what Flasher knew):") {
		t.Fatalf("collect after the change: exit %d, want 0 and a drift table\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCtl(t, e, "compliance", "--all")
	if r.code != ExitOK || !strings.Contains(r.stdout, "3 servers: 3 compliant") {
		t.Errorf("compliance after the update: exit %d, want 0 and 3 compliant\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Components at their wanted version are listed as compliant, not left out.
	after := complianceJSON(t, runCtl(t, e, "compliance", "--all", "-o", "json"))
	for i, sc := range after.Servers {
		if len(sc.Components) != len(resp.Servers[i].Components) {
			t.Errorf("%s lists %d components once compliant, %d before", sc.ServerId, len(sc.Components), len(resp.Servers[i].Components))
		}
		for _, c := range sc.Components {
			if c.Status != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT {
				t.Errorf("%s %s: %s, want compliant", sc.ServerId, c.Component, c.Status)
			}
		}
	}
	r = runCtl(t, e, "compliance", "--all", "--summary", "-o", "json")
	var sum flasherv1.SummarizeComplianceResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &sum); err != nil || r.code != ExitOK || sum.Servers != 3 {
		t.Errorf("summary: exit %d, %v, %v; want 3 servers and exit 0", r.code, &sum, err)
	}
	for _, c := range sum.Counts {
		if c.Status != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT {
			t.Errorf("summary counts %v, want only compliant servers", c)
		}
	}

	// One component moves back: compliance names it and exits 12; the summary too.
	c0 := resp.Servers[0].Components[0]
	sim.Server(resp.Servers[0].ServerId).BMC.SetVersion(c0.Component, c0.Serial, "0.0.1-old")
	if r = runCtl(t, e, "inventory", "collect", resp.Servers[0].ServerId); r.code != ExitOK {
		t.Fatalf("collect: exit %d: %s", r.code, r.stderr)
	}
	r = runCtl(t, e, "compliance", "--all", "--summary")
	if r.code != ExitNotCompliant || !strings.Contains(r.stdout, "outdated") {
		t.Errorf("summary after a drift: exit %d, want %d and an outdated row\n%s", r.code, ExitNotCompliant, r.stdout)
	}

	// A BMC that refuses logins: the collect goes on with the others and exits 13.
	if err := sim.Server("sim-0002").BMC.SetFault(redfish.OpLogin, redfish.Fault{Kind: redfish.KindStatus, Status: 401}); err != nil {
		t.Fatal(err)
	}
	r = runCtl(t, e, "inventory", "collect", "--all", "-o", "json")
	if r.code != ExitCollectFailed {
		t.Fatalf("collect with a failing BMC: exit %d, want %d\n%s%s", r.code, ExitCollectFailed, r.stdout, r.stderr)
	}
	outcomes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev struct {
			ServerID    string `json:"server_id"`
			State       string `json:"state"`
			FailureCode string `json:"failure_code"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("collect -o json line %q: %v", line, err)
		}
		if ev.State == "COLLECT_STATE_SUCCEEDED" || ev.State == "COLLECT_STATE_FAILED" {
			outcomes[ev.ServerID] = ev.State + " " + ev.FailureCode
		}
	}
	want := map[string]string{"sim-0001": "COLLECT_STATE_SUCCEEDED ", "sim-0002": "COLLECT_STATE_FAILED BMC_READ_FAILED", "sim-0003": "COLLECT_STATE_SUCCEEDED "}
	for id, w := range want {
		if outcomes[id] != w {
			t.Errorf("%s ended %q, want %q", id, outcomes[id], w)
		}
	}
	r = runCtl(t, e, "inventory", "collect", "sim-0002")
	if r.code != ExitCollectFailed || !strings.Contains(r.stdout, "Failed:") || !strings.Contains(r.stdout, "BMC_READ_FAILED") || strings.Contains(r.stdout, "calvin") {
		t.Errorf("collect of the failing BMC: exit %d, want %d and a failure table without the password\n%s", r.code, ExitCollectFailed, r.stdout)
	}
}

// TestCollectWaitsForTask shows the live progress of a collect that waits for the task active
// on its server: a WAITING line naming the task comes before the read.
func TestCollectWaitsForTask(t *testing.T) {
	_, e := simEnv(t, 1)
	hold, err := e.Scheduler.Hold(context.Background(), "sim-0001", "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		off := false
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- RunWith(ctx, []string{"inventory", "collect", "sim-0001"}, &out, &errb, Options{Getenv: testEnvVars(e.Addr), Terminal: &off})
	}()
	waitFor(t, &out, "sim-0001 WAITING", 30*time.Second)
	hold()
	if code := <-done; code != ExitOK {
		t.Fatalf("collect: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if s := out.String(); strings.Index(s, "WAITING") > strings.Index(s, "RUNNING") {
		t.Errorf("the read began before the server was free:\n%s", s)
	}
}
