package replicas_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// TestStoppedReplicaNeverTouchesTheBMCAgain: the replica running a task is stopped (SIGSTOP)
// while its BMC job runs, past its lease. The other replica takes the task over and finishes it
// by polling the recorded job. When the stopped replica continues (SIGCONT), it must stop its
// run without another request to that BMC and without writing to the task.
func TestStoppedReplicaNeverTouchesTheBMCAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and runs two replicas")
	}
	fl, inv := startFleet(t, 1, "127.0.6.1", 8*time.Second)
	rs := startReplicas(t, 2, inv, 2*time.Second)
	bmc := fl.Servers()[0].BMC
	tk := create(t, rs, 0, fl.Servers()[0].ID)

	installing := func() bool {
		for _, cc := range bmc.Counters().Components {
			if cc.InstallsStarted > cc.InstallsCompleted+cc.InstallsFailed {
				return true
			}
		}
		return false
	}
	active := waitTask(t, rs, tk.Id, "ACTIVE with a BMC job running", 2*time.Minute, func(tk *flasherv1.Task) bool {
		return tk.State == flasherv1.TaskState_TASK_STATE_ACTIVE && tk.Worker != "" && installing()
	})
	var owner, other *replica
	for _, r := range rs {
		if r.name == active.Worker {
			owner = r
		} else {
			other = r
		}
	}
	if owner == nil {
		t.Fatalf("task worker %q is none of the replicas", active.Worker)
	}
	owner.signal(syscall.SIGSTOP)
	t.Logf("stopped %s while it ran task %s", owner.name, tk.Id)

	live := []*replica{other}
	waitTask(t, live, tk.Id, "taken over by "+other.name, 2*time.Minute, func(tk *flasherv1.Task) bool { return tk.Worker == other.name })
	done := waitTask(t, live, tk.Id, "ended", 3*time.Minute, func(tk *flasherv1.Task) bool { return ended(tk.State) })
	if done.State != flasherv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Errorf("task taken over ended %s: %s", done.State, done.GetFailure().GetMessage())
	}
	requests := bmc.Counters().Requests

	owner.signal(syscall.SIGCONT)
	owner.waitFor("done with its run after losing the lease", time.Minute, func() bool {
		return owner.logged("run ended after its lease was lost", tk.Id) > 0
	})
	owner.waitReady()
	if n := bmc.Counters().Requests; n != requests {
		t.Errorf("after SIGCONT, the BMC got %d more requests (its task had ended on %s): the stopped replica touched it again", n-requests, other.name)
	}
	for slug, cc := range bmc.Counters().Components {
		if cc.Uploads > 1 || cc.InstallsStarted > 1 {
			t.Errorf("%s: %d uploads, %d installs: flashed twice", slug, cc.Uploads, cc.InstallsStarted)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	after, err := owner.tasks().GetTask(ctx, &flasherv1.GetTaskRequest{Id: tk.Id})
	if err != nil {
		t.Fatal(err)
	}
	if after.Task.Revision != done.Revision || after.Task.State != done.State {
		t.Errorf("task after SIGCONT: %s at revision %d, was %s at %d: the stopped replica wrote to it", after.Task.State, after.Task.Revision, done.State, done.Revision)
	}
	if owner.logged("lease lost", tk.Id) == 0 {
		t.Errorf("%s never said it lost the lease on task %s", owner.name, tk.Id)
	}
}
