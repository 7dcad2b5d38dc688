// Package replicas_test runs several real flasher-server processes on one PostgreSQL database
// against the simulated fleet, and breaks them: kill -9 at random moments, and a replica stopped
// past its lease. It checks what must hold across replicas: every acknowledged task ends, nothing
// is flashed twice, watchers see every change, and a replica that lost its lease never touches
// the BMC again. It needs the throwaway PostgreSQL `make test` starts (FLASHER_TEST_POSTGRES).
package replicas_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// startFleet starts n simulated BMCs with short installs and writes their inventory.
func startFleet(t *testing.T, n int, firstIP string, install time.Duration) (*fleet.Fleet, string) {
	t.Helper()
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	fl, err := fleet.Start(context.Background(), fleet.Config{N: n, FirstIP: firstIP, InstallDuration: install,
		ApplyDuration: 500 * time.Millisecond, BMCRebootDelay: 300 * time.Millisecond, BMCRebootDuration: 2 * time.Second,
		InventoryPath: inv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fl.Close() })
	return fl, inv
}

// startReplicas starts n flasher-server processes on one new PostgreSQL schema.
func startReplicas(t *testing.T, n int, inv string, lease time.Duration) []*replica {
	t.Helper()
	dsn := pgtest.DSN(t)
	bin, err := buildServer()
	if err != nil {
		t.Fatal(err)
	}
	var rs []*replica
	for i := range n {
		rs = append(rs, newReplica(t, bin, fmt.Sprintf("replica-%d", i),
			"-insecure", "-store", dsn, "-data-dir", filepath.Join(t.TempDir(), "data"), "-inventory", inv,
			"-lease-duration", lease.String(), "-log-level", "warn", "-bmc-poll-interval", "200ms",
			"-artifact-schemes", "http", "-artifact-hosts", "127.0.0.1"))
	}
	for _, r := range rs {
		r.start()
	}
	return rs
}

// create creates the server's out-of-band task through replica rs[first], trying the next ones
// with the same request id while a replica is down. It returns the task acknowledged.
func create(t *testing.T, rs []*replica, first int, serverID string) *flasherv1.Task {
	t.Helper()
	req := func(force bool) *flasherv1.CreateTaskRequest {
		return &flasherv1.CreateTaskRequest{RequestId: "chaos-" + serverID, Task: &flasherv1.TaskSpec{ServerId: serverID, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
			Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: force}}}}
	}
	var last error
	for i := range 3 * len(rs) {
		r := rs[(first+i)%len(rs)]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, err := r.tasks().CreateTask(ctx, req(false))
		if status.Code(err) == codes.FailedPrecondition {
			// Opaque BIOS versions (Gigabyte) cannot be ordered: the operator forces them.
			resp, err = r.tasks().CreateTask(ctx, req(true))
		}
		cancel()
		if err == nil {
			return resp.Task
		}
		last = err
	}
	t.Fatalf("CreateTask %s through every replica: %v", serverID, last)
	return nil
}

// watcher follows the task changes through one replica at a time, moving to another with the
// last revision it saw when its replica dies, and keeps each task's last state.
type watcher struct {
	mu      sync.Mutex
	last    map[string]*flasherv1.Task
	rev     int64
	on      *replica
	changes chan struct{} // one per change, for pacing the campaign
}

func watch(ctx context.Context, rs []*replica) *watcher {
	w := &watcher{last: map[string]*flasherv1.Task{}, changes: make(chan struct{}, 1<<16)}
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			r := rs[i%len(rs)]
			w.mu.Lock()
			w.on = r
			from := w.rev
			w.mu.Unlock()
			stream, err := r.tasks().WatchTasks(ctx, &flasherv1.WatchTasksRequest{StartRevision: from})
			for err == nil {
				var m *flasherv1.WatchTasksResponse
				if m, err = stream.Recv(); err != nil {
					break
				}
				if m.Task == nil {
					continue
				}
				w.mu.Lock()
				w.last[m.Task.Id] = m.Task
				w.rev = max(w.rev, m.Revision)
				w.mu.Unlock()
				if m.Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
					select {
					case w.changes <- struct{}{}:
					default:
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// TestChaosKill9Replicas: three replicas flash 20 simulated BMCs out-of-band; tasks are created
// through all of them, before and during the campaign; a random replica is killed with SIGKILL
// every few task changes, at least ten times, and restarted. Every acknowledged task must end, no
// component may be uploaded or installed twice, every task that succeeded must match its BMC, and
// a watcher moving between replicas must have seen every task's final state.
func TestChaosKill9Replicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and kills replicas repeatedly")
	}
	const bmcs, kills, early = 20, 10, 14
	fl, inv := startFleet(t, bmcs, "127.0.5.1", 3*time.Second)
	rs := startReplicas(t, 3, inv, 3*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watch(ctx, rs)

	servers := fl.Servers()
	var acked []*flasherv1.Task
	for i, s := range servers[:early] {
		acked = append(acked, create(t, rs, i, s.ID))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 16))
	next := early
	for k := 1; k <= kills; k++ {
		n := 2 + rng.IntN(12)
		for range n {
			select {
			case <-w.changes:
			case <-time.After(2 * time.Minute):
				t.Fatalf("kill %d: no task change for 2 minutes", k)
			}
		}
		victim := rs[rng.IntN(len(rs))]
		busy := 0
		for _, s := range servers {
			for _, cc := range s.BMC.Counters().Components {
				busy += cc.InstallsStarted - cc.InstallsCompleted - cc.InstallsFailed
			}
		}
		t.Logf("kill %d: %s after %d task changes, %d BMC jobs unfinished", k, victim.name, n, busy)
		victim.kill9()
		if next < len(servers) {
			// Created while a replica is down: the first replica asked may be the dead one.
			acked = append(acked, create(t, rs, rng.IntN(len(rs)), servers[next].ID))
			next++
		}
		victim.start()
	}

	final := map[string]*flasherv1.Task{}
	for _, a := range acked {
		final[a.Id] = waitTask(t, rs, a.Id, "ended", 3*time.Minute, func(tk *flasherv1.Task) bool { return ended(tk.State) })
	}

	succeeded, takenOver := 0, 0
	for _, tk := range final {
		for _, p := range tk.Progress {
			if p.Component == "lease" && p.Step == "takeover" {
				takenOver++
			}
		}
		b := fl.BMC(tk.ServerId)
		for slug, cc := range b.Counters().Components {
			if cc.Uploads > 1 || cc.InstallsStarted > 1 {
				t.Errorf("%s %s: %d uploads, %d installs: flashed twice", tk.ServerId, slug, cc.Uploads, cc.InstallsStarted)
			}
		}
		if tk.State != flasherv1.TaskState_TASK_STATE_SUCCEEDED {
			t.Logf("%s ended %s: %s", tk.ServerId, tk.State, tk.GetFailure().GetMessage())
			continue
		}
		succeeded++
		now := b.Components()
		for _, st := range tk.Plan.GetSteps() {
			if v := versionOf(now, st.Component, st.Serial); v != st.ToVersion {
				t.Errorf("%s: task SUCCEEDED with %s %s at %s, the BMC has %s", tk.ServerId, st.Component, st.Serial, st.ToVersion, v)
			}
		}
	}

	// The watcher, on whichever replica it ended up, must reach every task's final state.
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		var missing []string
		for id, tk := range final {
			if seen := w.last[id]; seen == nil || seen.State != tk.State || seen.Revision != tk.Revision {
				missing = append(missing, fmt.Sprintf("%s (%s at %d, watcher: %v)", id, tk.State, tk.Revision, seen.GetState()))
			}
		}
		on := w.on.name
		w.mu.Unlock()
		if len(missing) == 0 {
			t.Logf("%d kills, %d tasks (%d succeeded, %d taken over from a dead replica), 0 flashed twice; the watcher, last on %s, saw every final state",
				kills, len(final), succeeded, takenOver, on)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher (on %s) never saw the final state of %d tasks: %s", on, len(missing), strings.Join(missing, "; "))
		}
		<-tick.C
	}
	if succeeded == 0 || takenOver == 0 {
		t.Errorf("%d tasks succeeded, %d were taken over: the campaign proved nothing about flashing across replicas", succeeded, takenOver)
	}
}

func versionOf(comps []redfish.Component, slug, serial string) string {
	for _, c := range comps {
		if strings.EqualFold(c.Slug, slug) && (serial == "" || strings.EqualFold(c.Serial, serial)) {
			return c.Version
		}
	}
	return ""
}
