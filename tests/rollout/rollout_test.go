// Package rollout_test runs rollouts end to end: flasher-server's control plane (testenv) over
// a fleet of simulated BMCs (sim/fleet), the out-of-band executor speaking Redfish to them.
package rollout_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/testenv"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// clock is the rollouts' clock, moved by the test to open and close maintenance windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// fixture is a simulated fleet and the inventory written for it, with rack labels.
type fixture struct {
	sim     *fleet.Fleet
	invPath string
	dbPath  string
	clock   *clock
	dell    []string // the Dell servers, in id order
	rack    map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim, err := fleet.Start(ctx, fleet.Config{
		N: 20, FirstIP: "127.0.17.1", PlainHTTP: true,
		InstallDuration: 100 * time.Millisecond, ApplyDuration: 50 * time.Millisecond,
		BMCRebootDelay: 20 * time.Millisecond, BMCRebootDuration: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	f := &fixture{sim: sim, invPath: filepath.Join(dir, "inventory.yaml"), dbPath: filepath.Join(dir, "flasher.db"),
		clock: &clock{now: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}, rack: map[string]string{}}
	for _, s := range sim.Servers() {
		if strings.HasPrefix(s.BMC.Config().Vendor, "Dell") {
			f.dell = append(f.dell, s.ID)
		}
	}
	if len(f.dell) < 8 {
		t.Fatalf("the simulated fleet has %d Dell servers, the test needs 8", len(f.dell))
	}
	f.dell = f.dell[:8]
	return f
}

// writeInventory writes the fleet's inventory as it is now, each Dell server in rack-(k%3).
func (f *fixture) writeInventory(t *testing.T) {
	t.Helper()
	doc := f.sim.Inventory()
	for i := range doc.Servers {
		if k := slices.Index(f.dell, doc.Servers[i].ID); k >= 0 {
			f.rack[doc.Servers[i].ID] = "rack-" + string(rune('a'+k%3))
			doc.Servers[i].Labels = map[string]string{"rack": f.rack[doc.Servers[i].ID], "site": "ams"}
		}
	}
	data, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.invPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// makeCompliant brings every component of server id to its set's version behind Flasher's
// back, as the inventory will then declare.
func (f *fixture) makeCompliant(t *testing.T, id string) {
	t.Helper()
	doc := f.sim.Inventory()
	bmc := f.sim.Server(id).BMC
	cfg := bmc.Config()
	var members []string
	for _, set := range doc.FirmwareSets {
		if set.Labels["vendor"] == cfg.Vendor && set.Labels["model"] == cfg.Model {
			members = set.Firmware
		}
	}
	changed := 0
	for _, c := range bmc.Components() {
		for _, fw := range doc.Firmware {
			if !slices.Contains(members, fw.ID) || fw.Component != c.Slug {
				continue
			}
			if c.Slug == redfish.SlugNIC || c.Slug == redfish.SlugDrive {
				if fw.Vendor != c.Vendor || !slices.Contains(fw.Models, c.Model) {
					continue
				}
			}
			if c.Version != fw.Version && bmc.SetVersion(c.Slug, c.Serial, fw.Version) {
				changed++
			}
		}
	}
	if changed == 0 {
		t.Fatalf("server %s was already compliant: the skip would prove nothing", id)
	}
}

// start starts a control plane on the fixture's database (addr "" picks a port).
func (f *fixture) start(t *testing.T, addr string) *testenv.Env {
	t.Helper()
	src, err := file.NewSource(f.invPath, file.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	fast := outofband.Timeouts{
		Connect: 5 * time.Second, Call: 5 * time.Second, Inventory: 10 * time.Second, Upload: 10 * time.Second,
		Install: 20 * time.Second, PollInterval: 40 * time.Millisecond, Verify: 2 * time.Second,
		BMCReboot: 20 * time.Second, LoginAttempts: 2, UploadAttempts: 2, PollErrors: 3,
		Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	e, err := testenv.Run(testenv.Config{
		Inventory: src, BuildExecutors: true, DBPath: f.dbPath, Addr: addr,
		Configure: func(c *server.Config) {
			c.ArtifactSchemes, c.ArtifactHosts = []string{"http", "https"}, []string{"127.0.0.1"}
		},
		Options: []server.Option{
			server.WithoutAudit(),
			server.WithOutOfBandPolicy(func(p *outofband.Policy) { p.Defaults = fast }),
			server.WithRolloutClock(f.clock.Now, 50*time.Millisecond),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// watcher follows one rollout through WatchRollouts.
type watcher struct {
	t      *testing.T
	stream flasherv1.RolloutService_WatchRolloutsClient
	last   *flasherv1.Rollout
}

func watch(t *testing.T, ctx context.Context, e *testenv.Env, id string) *watcher {
	t.Helper()
	s, err := e.Rollouts.WatchRollouts(ctx, &flasherv1.WatchRolloutsRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return &watcher{t: t, stream: s}
}

// until reads the watch until cond holds for the rollout, and returns it.
func (w *watcher) until(what string, cond func(*flasherv1.Rollout) bool) *flasherv1.Rollout {
	w.t.Helper()
	if w.last != nil && cond(w.last) {
		return w.last
	}
	for {
		m, err := w.stream.Recv()
		if err != nil {
			state := "nothing"
			if w.last != nil {
				state = w.last.GetState().String() + " (" + w.last.GetMessage() + ")"
			}
			w.t.Fatalf("waiting for %s: %v; last seen %s", what, err, state)
		}
		if r := m.GetRollout(); r != nil {
			w.last = r
			if cond(r) {
				return r
			}
		}
	}
}

func count(r *flasherv1.Rollout, st flasherv1.RolloutServerState) int {
	for _, c := range r.GetCounts() {
		if c.GetState() == st {
			return int(c.GetServers())
		}
	}
	return 0
}

func rows(r *flasherv1.Rollout, st flasherv1.RolloutServerState) []*flasherv1.RolloutServer {
	var out []*flasherv1.RolloutServer
	for _, s := range r.GetServers() {
		if s.GetState() == st {
			out = append(out, s)
		}
	}
	return out
}

// TestRolloutOverSimulatedFleet: canary 1, batches of 3, at most 1 per rack, budget 0, over
// eight Dell BMCs of which one is already compliant. The dry run's batches are the real ones;
// the compliant server is skipped; a failure injected on the canary pauses the rollout; the
// maintenance window closes before the resume, so nothing starts until it reopens; the server
// restarts mid-batch and carries on without giving any server a second task.
func TestRolloutOverSimulatedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("flashes eight simulated BMCs")
	}
	f := newFixture(t)
	compliant := f.dell[7]
	f.makeCompliant(t, compliant)
	f.writeInventory(t)
	e := f.start(t, "")
	stopped := false
	defer func() {
		if !stopped {
			e.Stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	t0 := f.clock.Now()
	spec := &flasherv1.RolloutSpec{
		Selector: &flasherv1.RolloutSelector{ServerIds: f.dell, Labels: map[string]string{"site": "ams"}},
		Install: &flasherv1.RolloutInstall{Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: 2,
			Install: &flasherv1.RolloutInstall_Resolve{Resolve: &flasherv1.ResolveInstall{}}},
		Strategy: &flasherv1.RolloutStrategy{Canary: 1, Batch: &flasherv1.RolloutStrategy_BatchSize{BatchSize: 3},
			GroupBy: "rack", MaxPerGroup: 1, FailureBudget: &flasherv1.FailureBudget{}},
		Windows: &flasherv1.MaintenanceWindows{Intervals: []*flasherv1.TimeInterval{
			{Start: timestamppb.New(t0), End: timestamppb.New(t0.Add(time.Hour))},
			{Start: timestamppb.New(t0.Add(2 * time.Hour)), End: timestamppb.New(t0.Add(3 * time.Hour))},
		}},
	}

	// Bad input changes nothing and names the field.
	bad := &flasherv1.RolloutSpec{Selector: &flasherv1.RolloutSelector{Labels: map[string]string{"rack": "rack-z"}},
		Install: spec.Install, Strategy: spec.Strategy}
	if _, err := e.Rollouts.CreateRollout(ctx, &flasherv1.CreateRolloutRequest{Spec: bad}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "matches no server") {
		t.Errorf("a selector matching nothing: %v, want InvalidArgument naming it", err)
	}

	plan, err := e.Rollouts.PlanRollout(ctx, &flasherv1.PlanRolloutRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan.GetServers() {
		want := flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_WAITING
		if s.GetServerId() == compliant {
			want = flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SKIPPED
		}
		if s.GetState() != want {
			t.Errorf("dry run: %s is %s (%s %s), want %s", s.GetServerId(), s.GetState(), s.GetCode(), s.GetReason(), want)
		}
	}
	var planned [][]string
	for _, b := range plan.GetBatches() {
		planned = append(planned, b.GetServerIds())
		if !b.GetWindowStart().AsTime().Equal(t0) {
			t.Errorf("dry run: batch %d would start in the window at %s, want %s", b.GetIndex(), b.GetWindowStart().AsTime(), t0)
		}
	}
	if len(planned) != 3 || len(planned[0]) != 1 || len(planned[1]) != 3 || len(planned[2]) != 3 {
		t.Fatalf("dry run batches %v, want 1, 3 and 3 servers", planned)
	}
	canary := planned[0][0]
	if err := f.sim.Server(canary).BMC.SetFault(redfish.OpInstall, redfish.Fault{Kind: redfish.KindException, Count: 1}); err != nil {
		t.Fatal(err)
	}

	created, err := e.Rollouts.CreateRollout(ctx, &flasherv1.CreateRolloutRequest{RequestId: "rack-update-1", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetRollout().GetId()
	again, err := e.Rollouts.CreateRollout(ctx, &flasherv1.CreateRolloutRequest{RequestId: "rack-update-1", Spec: spec})
	if err != nil || again.GetCreated() || again.GetRollout().GetId() != id {
		t.Errorf("repeated CreateRollout: %v, created %v, id %s; want the first rollout %s", err, again.GetCreated(), again.GetRollout().GetId(), id)
	}
	var real [][]string
	for _, s := range created.GetRollout().GetServers() {
		if b := int(s.GetBatch()); b >= 0 {
			for len(real) <= b {
				real = append(real, nil)
			}
			real[b] = append(real[b], s.GetServerId())
		}
	}
	for i := range real {
		slices.Sort(real[i])
		p := slices.Clone(planned[i])
		slices.Sort(p)
		if !slices.Equal(real[i], p) {
			t.Errorf("batch %d is %v, the dry run said %v", i, real[i], p)
		}
	}

	w := watch(t, ctx, e, id)
	r := w.until("the budget pause after the canary", func(r *flasherv1.Rollout) bool {
		return r.GetPauseReason() == flasherv1.PauseReason_PAUSE_REASON_BUDGET
	})
	if failed := rows(r, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_FAILED); len(failed) != 1 || failed[0].GetServerId() != canary || failed[0].GetCode() == "" {
		t.Fatalf("after the canary's failure the failed rows are %v, want the canary %s with a code", failed, canary)
	}
	if n := count(r, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_WAITING); n != 6 {
		t.Errorf("%d servers waiting after the budget pause, want 6 (nothing else started)", n)
	}

	// The window closes before the operator resumes: the rollout stays paused for the window.
	f.clock.Set(t0.Add(90 * time.Minute))
	res, err := e.Rollouts.ResumeRollout(ctx, &flasherv1.ResumeRolloutRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetRollout().GetPauseReason() != flasherv1.PauseReason_PAUSE_REASON_WINDOW ||
		!res.GetRollout().GetNextWindowStart().AsTime().Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("resumed outside a window: %s %s, next window %v; want PAUSED WINDOW until %s",
			res.GetRollout().GetState(), res.GetRollout().GetPauseReason(), res.GetRollout().GetNextWindowStart().AsTime(), t0.Add(2*time.Hour))
	}
	tasks, err := e.Tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{Filter: &flasherv1.TaskFilter{RolloutId: id}})
	if err != nil || len(tasks.GetTasks()) != 1 {
		t.Fatalf("outside the window the rollout has %d tasks (%v), want only the canary's", len(tasks.GetTasks()), err)
	}

	// The window reopens: batch 1 starts, one server per rack.
	f.clock.Set(t0.Add(2 * time.Hour))
	r = w.until("a server of batch 1 succeeded", func(r *flasherv1.Rollout) bool {
		return count(r, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SUCCEEDED) >= 1
	})
	if r.GetBatch() != 1 {
		t.Errorf("first success in batch %d, want 1", r.GetBatch())
	}

	// A restart in the middle of the batch: the new server carries on from the store.
	addr := e.Addr
	e.Stop()
	stopped = true
	e = f.start(t, addr)
	defer e.Stop()
	w = watch(t, ctx, e, id)
	r = w.until("the end", func(r *flasherv1.Rollout) bool {
		s := r.GetState()
		return s == flasherv1.RolloutState_ROLLOUT_STATE_SUCCEEDED || s == flasherv1.RolloutState_ROLLOUT_STATE_FAILED || s == flasherv1.RolloutState_ROLLOUT_STATE_CANCELLED
	})
	// The canary's failure was accepted by the resume but stays a failure: the rollout fails.
	if r.GetState() != flasherv1.RolloutState_ROLLOUT_STATE_FAILED || count(r, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SUCCEEDED) != 6 ||
		count(r, flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SKIPPED) != 1 {
		t.Errorf("ended %s (%s) with counts %v; want FAILED with 6 succeeded, 1 failed, 1 skipped", r.GetState(), r.GetMessage(), r.GetCounts())
	}

	// Every participating server got exactly one task, the skipped one none; no two servers of
	// a rack ran at once.
	tasks, err = e.Tasks.ListTasks(ctx, &flasherv1.ListTasksRequest{Filter: &flasherv1.TaskFilter{RolloutId: id}, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	perServer := map[string]int{}
	for _, tk := range tasks.GetTasks() {
		perServer[tk.GetServerId()]++
		if tk.GetRolloutId() != id {
			t.Errorf("task %s carries rollout %q, want %s", tk.GetId(), tk.GetRolloutId(), id)
		}
	}
	for _, s := range f.dell {
		want := 1
		if s == compliant {
			want = 0
		}
		if perServer[s] != want {
			t.Errorf("server %s has %d tasks of the rollout, want %d", s, perServer[s], want)
		}
	}
	for i, a := range tasks.GetTasks() {
		for _, b := range tasks.GetTasks()[i+1:] {
			if f.rack[a.GetServerId()] != f.rack[b.GetServerId()] || a.GetStartTime() == nil || b.GetStartTime() == nil {
				continue
			}
			if a.GetStartTime().AsTime().Before(b.GetFinishTime().AsTime()) && b.GetStartTime().AsTime().Before(a.GetFinishTime().AsTime()) {
				t.Errorf("%s and %s of %s ran at the same time", a.GetServerId(), b.GetServerId(), f.rack[a.GetServerId()])
			}
		}
	}
}

// TestRolloutBadInput: each refused spec is InvalidArgument naming its field, and stores
// nothing.
func TestRolloutBadInput(t *testing.T) {
	f := newFixture(t)
	f.writeInventory(t)
	e := f.start(t, "")
	defer e.Stop()
	ctx := context.Background()
	t0 := f.clock.Now()
	good := func() *flasherv1.RolloutSpec {
		return &flasherv1.RolloutSpec{
			Selector: &flasherv1.RolloutSelector{Labels: map[string]string{"rack": "rack-a"}},
			Install: &flasherv1.RolloutInstall{Method: flasherv1.Method_METHOD_OUT_OF_BAND,
				Install: &flasherv1.RolloutInstall_Resolve{Resolve: &flasherv1.ResolveInstall{}}},
			Strategy: &flasherv1.RolloutStrategy{Batch: &flasherv1.RolloutStrategy_BatchSize{BatchSize: 2}},
		}
	}
	for name, tc := range map[string]struct {
		change func(*flasherv1.RolloutSpec)
		field  string
	}{
		"zero servers":   {func(s *flasherv1.RolloutSpec) { s.Selector.Labels["rack"] = "rack-z" }, "spec.selector"},
		"empty selector": {func(s *flasherv1.RolloutSpec) { s.Selector = &flasherv1.RolloutSelector{} }, "spec.selector.all"},
		"everything without all": {func(s *flasherv1.RolloutSpec) {
			s.Selector = &flasherv1.RolloutSelector{Labels: map[string]string{"facility": "sim"}}
		}, "spec.selector.all"},
		"windows in the past": {func(s *flasherv1.RolloutSpec) {
			s.Windows = &flasherv1.MaintenanceWindows{Intervals: []*flasherv1.TimeInterval{
				{Start: timestamppb.New(t0.Add(-2 * time.Hour)), End: timestamppb.New(t0.Add(-time.Hour))}}}
		}, "spec.windows"},
		"zero batch size": {func(s *flasherv1.RolloutSpec) {
			s.Strategy.Batch = &flasherv1.RolloutStrategy_BatchSize{BatchSize: 0}
		}, "spec.strategy.batch_size"},
		"budget over 100%": {func(s *flasherv1.RolloutSpec) {
			s.Strategy.FailureBudget = &flasherv1.FailureBudget{Percent: 101}
		}, "spec.strategy.failure_budget.percent"},
	} {
		spec := good()
		tc.change(spec)
		_, err := e.Rollouts.CreateRollout(ctx, &flasherv1.CreateRolloutRequest{Spec: spec})
		st := status.Convert(err)
		found := false
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					found = found || v.GetField() == tc.field
				}
			}
		}
		if st.Code() != codes.InvalidArgument || !found {
			t.Errorf("%s: %v %v, want InvalidArgument with a violation of %s", name, st.Code(), st.Details(), tc.field)
		}
	}
	if list, err := e.Rollouts.ListRollouts(ctx, &flasherv1.ListRolloutsRequest{}); err != nil || len(list.GetRollouts()) != 0 {
		t.Errorf("after refused creates: %d rollouts, %v; want none", len(list.GetRollouts()), err)
	}
	if _, err := e.Rollouts.CreateRollout(ctx, &flasherv1.CreateRolloutRequest{Spec: good()}); err != nil {
		t.Errorf("the good spec: %v", err)
	}
}
