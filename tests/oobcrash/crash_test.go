// Package oobcrash kills the real flasher-server binary with SIGKILL, again and again, while it
// flashes a simulated fleet out-of-band, and checks what must survive: every acknowledged task,
// no second upload or install of any component, and outcomes that match the hardware.
package oobcrash_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

const (
	bmcs  = 20
	kills = 10
)

// TestKill9Campaign flashes 20 simulated BMCs (Dell and OpenBMC personalities: uploads, job
// polls, host power cycles, BMC reboots) through the real server binary and kills it with
// SIGKILL at random moments, each after a random number of task changes seen on a watch
// stream, at least ten times, restarting it on the same data directory each time.
func TestKill9Campaign(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and kills it repeatedly")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "flasher-server")
	if out, err := exec.Command("go", "build", "-o", bin, "../../server").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inv := filepath.Join(dir, "inventory.yaml")
	fl, err := fleet.Start(ctx, fleet.Config{N: bmcs, FirstIP: "127.0.3.1", InstallDuration: 3 * time.Second,
		ApplyDuration: 500 * time.Millisecond, BMCRebootDelay: 300 * time.Millisecond, BMCRebootDuration: 2 * time.Second,
		InventoryPath: inv})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	before := map[string][]redfish.Component{}
	for _, s := range fl.Servers() {
		before[s.ID] = s.BMC.Components()
	}

	data := filepath.Join(dir, "data")
	srv := &server{t: t, bin: bin, args: []string{"-insecure", "-data-dir", data, "-inventory", inv, "-log-level", "warn",
		"-bmc-poll-interval", "200ms", "-artifact-schemes", "http", "-artifact-hosts", "127.0.0.1"},
		log: filepath.Join(dir, "server.log")}
	srv.start()
	defer srv.stop()

	var acked []string
	for _, s := range fl.Servers() {
		spec := func(force bool) *flasherv1.CreateTaskRequest {
			return &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{ServerId: s.ID, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
				Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: force}}}}
		}
		resp, err := srv.tasks().CreateTask(ctx, spec(false))
		if status.Code(err) == codes.FailedPrecondition {
			// Opaque BIOS versions (Gigabyte) cannot be ordered: the operator forces them.
			resp, err = srv.tasks().CreateTask(ctx, spec(true))
		}
		if err != nil {
			t.Fatalf("CreateTask %s: %v", s.ID, err)
		}
		acked = append(acked, resp.Task.Id)
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	for k := 1; k <= kills; k++ {
		n := 2 + rng.IntN(30)
		if !srv.waitChanges(ctx, n) {
			t.Fatalf("kill %d: every task ended before the campaign did; make the fleet slower", k)
		}
		down, running := 0, 0
		for _, s := range fl.Servers() {
			if s.BMC.Down() {
				down++
			}
			c := s.BMC.Counters()
			for _, cc := range c.Components {
				running += cc.InstallsStarted - cc.InstallsCompleted - cc.InstallsFailed
			}
		}
		t.Logf("kill %d after %d task changes: %d BMCs rebooting, %d jobs unfinished", k, n, down, running)
		srv.kill()
		srv.start()
	}

	// Let the last run finish everything.
	final := map[string]*flasherv1.Task{}
	deadline := time.Now().Add(4 * time.Minute)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for len(final) < len(acked) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks ended after the campaign", len(final), len(acked))
		}
		for _, id := range acked {
			if final[id] != nil {
				continue
			}
			resp, err := srv.tasks().GetTask(ctx, &flasherv1.GetTaskRequest{Id: id})
			if err != nil {
				t.Fatalf("acknowledged task %s lost: %v", id, err)
			}
			if st := resp.Task.State; st != flasherv1.TaskState_TASK_STATE_QUEUED && st != flasherv1.TaskState_TASK_STATE_ACTIVE {
				final[id] = resp.Task
			}
		}
		if len(final) < len(acked) {
			<-tick.C
		}
	}

	succeeded, uploads := 0, 0
	for _, tk := range final {
		b := fl.BMC(tk.ServerId)
		counters := b.Counters()
		left := -counters.JobsDeleted
		for slug, cc := range counters.Components {
			uploads += cc.Uploads
			left += cc.InstallsStarted - cc.InstallsCompleted - cc.InstallsFailed
			if cc.Uploads > 1 || cc.InstallsStarted > 1 {
				t.Errorf("%s %s: %d uploads, %d installs: flashed twice", tk.ServerId, slug, cc.Uploads, cc.InstallsStarted)
			}
		}
		// A job left on the BMC runs outside any task (at the next host boot): only an outcome
		// that names it may leave one.
		if left > 0 && (tk.State == flasherv1.TaskState_TASK_STATE_SUCCEEDED || !strings.Contains(tk.GetFailure().GetMessage(), "job")) {
			t.Errorf("%s: task %s left %d unfinished job(s) on the BMC without saying so: %q", tk.ServerId, tk.State, left, tk.GetFailure().GetMessage())
		}
		now := b.Components()
		switch tk.State {
		case flasherv1.TaskState_TASK_STATE_SUCCEEDED:
			succeeded++
			for _, st := range tk.Plan.GetSteps() {
				if v := versionOf(now, st.Component, st.Serial); v != st.ToVersion {
					t.Errorf("%s: task SUCCEEDED with %s %s at %s, the BMC has %s", tk.ServerId, st.Component, st.Serial, st.ToVersion, v)
				}
			}
			for _, sk := range tk.Plan.GetSkipped() {
				if v := versionOf(now, sk.Component, sk.Serial); sk.Version != "" && v != sk.Version {
					t.Errorf("%s: task skipped %s %s at %s, the BMC has %s", tk.ServerId, sk.Component, sk.Serial, sk.Version, v)
				}
			}
		default:
			msg := tk.GetFailure().GetMessage()
			changed := changes(before[tk.ServerId], now)
			if strings.Contains(msg, "nothing was changed") && len(changed) > 0 {
				t.Errorf("%s: task %s says nothing was changed, the BMC changed %v: %q", tk.ServerId, tk.State, changed, msg)
			}
			for _, c := range changed {
				if !strings.Contains(msg, c) && !strings.Contains(msg, "unknown") {
					t.Errorf("%s: task %s does not report %s: %q", tk.ServerId, tk.State, c, msg)
				}
			}
			t.Logf("%s ended %s: %s", tk.ServerId, tk.State, msg)
		}
	}
	t.Logf("%d kills, %d tasks (%d succeeded), %d uploads in all, 0 flashed twice", kills, len(final), succeeded, uploads)
}

func versionOf(comps []redfish.Component, slug, serial string) string {
	for _, c := range comps {
		if strings.EqualFold(c.Slug, slug) && (serial == "" || strings.EqualFold(c.Serial, serial)) {
			return c.Version
		}
	}
	return ""
}

// changes lists "SLUG old→new" for every component whose version moved.
func changes(before, now []redfish.Component) []string {
	var out []string
	for i, c := range now {
		if i < len(before) && before[i].Version != c.Version {
			out = append(out, fmt.Sprintf("%s→%s", before[i].Version, c.Version))
		}
	}
	return out
}

// server is the flasher-server process under test.
type server struct {
	t         *testing.T
	bin, log  string
	args      []string
	cmd       *exec.Cmd
	conn      *grpc.ClientConn
	watch     flasherv1.TaskService_WatchTasksClient
	stopWatch context.CancelFunc
}

func (s *server) start() {
	s.t.Helper()
	grpcAddr, httpAddr := freeAddr(s.t), freeAddr(s.t)
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(s.bin, append([]string{"-grpc-listen", grpcAddr, "-http-listen", httpAddr}, s.args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	logf.Close()
	waitReady(s.t, httpAddr)
	if s.conn, err = grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		s.t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	if s.watch, err = s.tasks().WatchTasks(wctx, &flasherv1.WatchTasksRequest{}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) tasks() flasherv1.TaskServiceClient { return flasherv1.NewTaskServiceClient(s.conn) }

// waitChanges waits for n task changes on the watch stream; false when the stream ended.
func (s *server) waitChanges(ctx context.Context, n int) bool {
	for seen := 0; seen < n; {
		resp, err := s.watch.Recv()
		if err != nil || ctx.Err() != nil {
			return false
		}
		if resp.Type == flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
			seen++
		}
	}
	return true
}

func (s *server) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	_ = s.cmd.Wait()
	s.stopWatch()
	s.conn.Close()
}

func (s *server) stop() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		_ = s.cmd.Wait()
	}
	s.stopWatch()
	s.conn.Close()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitReady waits until the server answers /readyz.
func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s not ready", httpAddr)
		}
	}
}
