package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/fleet"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

// fleetServer is a flasher-server over a simulated fleet's file inventory, restartable on the
// same data directory.
type fleetServer struct {
	t        *testing.T
	args     []string
	stop     context.CancelFunc
	done     chan error
	conn     *grpc.ClientConn
	grpcAddr string
}

func (fs *fleetServer) start() {
	t := fs.t
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	fs.stop, fs.done, fs.grpcAddr = stop, make(chan error, 1), grpcAddr
	args := append([]string{"-insecure", "-grpc-listen", grpcAddr, "-http-listen", httpAddr, "-log-level", "warn"}, fs.args...)
	go func() { fs.done <- run(ctx, args, io.Discard, io.Discard) }()
	waitReady(t, httpAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	fs.conn = conn
}

func (fs *fleetServer) close() {
	fs.t.Helper()
	fs.conn.Close()
	fs.stop()
	if err := <-fs.done; err != nil {
		fs.t.Fatalf("server stopped with %v", err)
	}
}

// waitTask follows the task through WatchTasks until it ends.
func waitTask(t *testing.T, ctx context.Context, conn *grpc.ClientConn, id string) *flasherv1.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	w, err := flasherv1.NewTaskServiceClient(conn).WatchTasks(ctx, &flasherv1.WatchTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := w.Recv()
		if err != nil {
			t.Fatalf("watching task %s: %v", id, err)
		}
		tk := ev.GetTask()
		if tk.GetId() != id {
			continue
		}
		switch tk.GetState() {
		case flasherv1.TaskState_TASK_STATE_SUCCEEDED, flasherv1.TaskState_TASK_STATE_FAILED, flasherv1.TaskState_TASK_STATE_CANCELLED:
			return tk
		}
	}
}

// quickFleet starts one simulated server with fast installs (its BMC at ip), writing its
// inventory file inv in dir; it stops with the test. Tests that flash skip under -short.
func quickFleet(t *testing.T, ip string) (ctx context.Context, dir, inv string, sim *fleet.Fleet) {
	t.Helper()
	if testing.Short() {
		t.Skip("flashes a simulated server")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir = t.TempDir()
	inv = filepath.Join(dir, "inventory.yaml")
	sim, err := fleet.Start(ctx, fleet.Config{
		N: 1, FirstIP: ip, InventoryPath: inv, ControlAddr: "127.0.0.1:0",
		InstallDuration: 200 * time.Millisecond, ApplyDuration: 100 * time.Millisecond,
		BMCRebootDelay: 50 * time.Millisecond, BMCRebootDuration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return ctx, dir, inv, sim
}

// TestFleetTruth flashes a simulated server and checks that the plan and compliance then start
// from the versions the BMC reported (before and after a restart), that a version changed
// behind Flasher's back shows as drift after a collect, and that selectors are checked.
func TestFleetTruth(t *testing.T) {
	ctx, dir, inv, sim := quickFleet(t, "127.0.4.1")
	fs := &fleetServer{t: t, args: []string{"-data-dir", filepath.Join(dir, "data"), "-inventory", inv,
		"-artifact-schemes", "http", "-artifact-hosts", strings.TrimPrefix(sim.ImagesURL(), "http://"), "-bmc-poll-interval", "100ms"}}
	fs.start()
	const id = "sim-0001"
	one := &flasherv1.ServerSelector{ServerIds: []string{id}}
	resolve := &flasherv1.TaskSpec{ServerId: id, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
		Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}}}

	compliance := func() *flasherv1.ServerCompliance {
		t.Helper()
		resp, err := flasherv1.NewComplianceServiceClient(fs.conn).ListCompliance(ctx, &flasherv1.ListComplianceRequest{Selector: one})
		if err != nil || len(resp.GetServers()) != 1 {
			t.Fatalf("ListCompliance = %v, %v; want one server", resp, err)
		}
		return resp.Servers[0]
	}
	if got := compliance(); got.Status != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_UNKNOWN {
		t.Errorf("before any read, compliance is %s, want UNKNOWN (only declared versions)", got.Status)
	}

	created, err := flasherv1.NewTaskServiceClient(fs.conn).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: resolve})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, ctx, fs.conn, created.Task.Id)
	if done.State != flasherv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("task %s: %s %v", done.Id, done.State, done.Failure)
	}
	steps := done.GetPlan().GetSteps()
	if len(steps) == 0 {
		t.Fatal("the task flashed nothing; the test would prove nothing")
	}

	check := func(when string) {
		t.Helper()
		p, err := flasherv1.NewTaskServiceClient(fs.conn).PlanTask(ctx, &flasherv1.PlanTaskRequest{Task: resolve})
		if err != nil {
			t.Fatalf("%s: PlanTask: %v", when, err)
		}
		if n := len(p.Plan.GetSteps()); n != 0 {
			t.Errorf("%s: the dry run plans %d steps after the flash, want none: %v", when, n, p.Plan.Steps)
		}
		for _, st := range steps {
			found := false
			for _, sk := range p.Plan.GetSkipped() {
				if sk.Component != st.Component || sk.Serial != st.Serial {
					continue
				}
				found = true
				if sk.Version != st.ToVersion || sk.VersionSource != flasherv1.VersionSource_VERSION_SOURCE_BMC || sk.VersionObservedAt == nil || sk.VersionAge == nil {
					t.Errorf("%s: %s is %s from %s (observed %v, age %v), want %s from the BMC", when, st.Component, sk.Version, sk.VersionSource, sk.VersionObservedAt, sk.VersionAge, st.ToVersion)
				}
			}
			if !found {
				t.Errorf("%s: the dry run does not list %s %s", when, st.Component, st.Serial)
			}
		}
		// The flashed components are compliant; the set's in-band members, which an
		// out-of-band task leaves alone, may still be outdated.
		got := compliance()
		for _, st := range steps {
			for _, c := range got.Components {
				if c.Component == st.Component && c.Serial == st.Serial && c.Status != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_COMPLIANT {
					t.Errorf("%s: compliance of %s is %s, want COMPLIANT: %v", when, c.Component, c.Status, c)
				}
			}
		}
		for _, c := range got.Components {
			if c.Status == flasherv1.ComplianceStatus_COMPLIANCE_STATUS_UNKNOWN || c.Source != flasherv1.VersionSource_VERSION_SOURCE_BMC {
				t.Errorf("%s: %s is %s from %s, want every component read by the BMC", when, c.Component, c.Status, c.Source)
			}
		}
	}
	check("after the flash")
	fs.close()
	fs.start()
	defer fs.close()
	check("after a restart")

	// An update behind Flasher's back: the next collect shows it as drift.
	changed := steps[0]
	body := `{"version": "0.0.1-behind", "serial": "` + changed.Serial + `"}`
	req, err := http.NewRequest(http.MethodPut, sim.ControlURL()+"/v1/bmcs/"+id+"/components/"+changed.Component+"/version", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("control API: %s", resp.Status)
	}
	stream, err := flasherv1.NewInventoryServiceClient(fs.conn).CollectInventory(ctx, &flasherv1.CollectInventoryRequest{Selector: one})
	if err != nil {
		t.Fatal(err)
	}
	var outcome *flasherv1.CollectInventoryResponse
	var states []flasherv1.CollectState
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, ev.State)
		outcome = ev
	}
	if outcome.GetState() != flasherv1.CollectState_COLLECT_STATE_SUCCEEDED || len(states) < 2 {
		t.Fatalf("collect ended %v after %v, want RUNNING then SUCCEEDED", outcome, states)
	}
	drifted := false
	for _, d := range outcome.Drift {
		if d.Component == changed.Component && d.FromVersion == changed.ToVersion && d.ToVersion == "0.0.1-behind" &&
			d.FromSource == flasherv1.VersionSource_VERSION_SOURCE_BMC {
			drifted = true
		}
	}
	if !drifted {
		t.Errorf("collect drift = %v, want %s %s → 0.0.1-behind", outcome.Drift, changed.Component, changed.ToVersion)
	}
	for _, c := range compliance().Components {
		if c.Component == changed.Component && c.Serial == changed.Serial &&
			(c.Status != flasherv1.ComplianceStatus_COMPLIANCE_STATUS_OUTDATED || c.InstalledVersion != "0.0.1-behind") {
			t.Errorf("after the drift, %s is %s at %s, want OUTDATED at 0.0.1-behind", c.Component, c.Status, c.InstalledVersion)
		}
	}

	// Selectors: an unknown label and an empty selector are refused with a field violation.
	for name, sel := range map[string]*flasherv1.ServerSelector{
		"unknown label":  {Labels: map[string]string{"colour": "blue"}},
		"empty selector": {},
	} {
		_, err := flasherv1.NewComplianceServiceClient(fs.conn).SummarizeCompliance(ctx, &flasherv1.SummarizeComplianceRequest{Selector: sel})
		st := status.Convert(err)
		var br *errdetails.BadRequest
		for _, d := range st.Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		if st.Code() != codes.InvalidArgument || br == nil || len(br.FieldViolations) == 0 {
			t.Errorf("%s: %v, want InvalidArgument with a field violation", name, err)
		}
	}
	sum, err := flasherv1.NewComplianceServiceClient(fs.conn).SummarizeCompliance(ctx, &flasherv1.SummarizeComplianceRequest{Selector: &flasherv1.ServerSelector{All: true}})
	if err != nil || sum.Servers != 1 || len(sum.Counts) != 1 {
		t.Errorf("SummarizeCompliance(all) = %v, %v; want one server counted once", sum, err)
	}
}

// TestFleetdbWriteBackFailureShown flashes a simulated server whose inventory is fleetdb while
// fleetdb refuses every write: the task succeeds (the BMC verified each version), and each
// flashed component carries a warning naming it and fleetdb's error, after the bounded retries.
// fleetdb's own versions are declared, with fleetdb's time.
func TestFleetdbWriteBackFailureShown(t *testing.T) {
	ctx, dir, inv, sim := quickFleet(t, "127.0.4.9")
	var doc file.Document
	data, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	fdb, err := simfleetdb.New(simfleetdb.Config{Token: "fleetdb-secret"})
	if err != nil {
		t.Fatal(err)
	}
	seeded := time.Now()
	ids := fdb.SeedDocument(doc)
	if err := fdb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fdb.Close()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("fleetdb-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := &fleetServer{t: t, args: []string{"-data-dir", filepath.Join(dir, "data"), "-fleetdb-url", fdb.URL(), "-fleetdb-token-file", tokenFile,
		"-fleetdb-bmc-insecure-skip-verify", "*", "-artifact-schemes", "http", "-artifact-hosts", strings.TrimPrefix(sim.ImagesURL(), "http://"),
		"-bmc-poll-interval", "100ms"}}
	fs.start()
	defer fs.close()
	id := ids[fleet.ServerID(0)].String()

	srv, err := flasherv1.NewInventoryServiceClient(fs.conn).GetServer(ctx, &flasherv1.GetServerRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range srv.Server.Components {
		if c.Version == "" {
			continue
		}
		if c.VersionSource != flasherv1.VersionSource_VERSION_SOURCE_DECLARED || c.VersionObservedAt == nil || c.VersionObservedAt.AsTime().Before(seeded.Add(-time.Second)) {
			t.Errorf("%s from fleetdb: source %s at %v, want declared at fleetdb's time (%v)", c.Slug, c.VersionSource, c.VersionObservedAt, seeded)
		}
	}

	defer fdb.InjectFault(simfleetdb.Fault{Method: http.MethodPut, Status: http.StatusInternalServerError})()
	created, err := flasherv1.NewTaskServiceClient(fs.conn).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
		ServerId: id, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{}}}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitTask(t, ctx, fs.conn, created.Task.Id)
	if done.State != flasherv1.TaskState_TASK_STATE_SUCCEEDED || len(done.GetPlan().GetSteps()) == 0 {
		t.Fatalf("task %s %s with %d steps (%v); want SUCCEEDED with steps", done.Id, done.State, len(done.GetPlan().GetSteps()), done.Failure)
	}
	events, err := flasherv1.NewTaskServiceClient(fs.conn).ListTaskEvents(ctx, &flasherv1.ListTaskEventsRequest{TaskId: done.Id})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range done.Plan.Steps {
		var row *flasherv1.ComponentProgress
		for _, p := range done.Progress {
			if p.Component == st.Component && p.Serial == st.Serial {
				row = p
			}
		}
		if row == nil || row.Step != "inventory-write-back" || !strings.HasPrefix(row.Message, "warning: verified at "+st.ToVersion) ||
			!strings.Contains(row.Message, "4 attempts failed") || !strings.Contains(row.Message, "HTTP 500") || strings.Contains(row.Message, "fleetdb-secret") {
			t.Errorf("%s: progress %v, want a write-back warning naming the version, the attempts and fleetdb's error", st.Component, row)
		}
		found := false
		for _, ev := range events.Events {
			found = found || (strings.Contains(ev.Message, st.Component) && strings.Contains(ev.Message, "warning: verified at "+st.ToVersion))
		}
		if !found {
			t.Errorf("%s: no event in the task's history carries the write-back warning", st.Component)
		}
		if v, _ := fdb.InstalledVersion(ids[fleet.ServerID(0)], simfleetdb.FleetdbSlug(st.Component)); v == st.ToVersion {
			t.Errorf("%s: fleetdb shows %s although every write failed", st.Component, v)
		}
	}
}
