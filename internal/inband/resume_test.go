package inband_test

import (
	"context"
	"testing"
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// loseAssignmentRecord clears a stopped server's progress rows of task id, as if the process
// had stopped after sending the assignment and before its "assigned" rows were committed (the
// executor records them right after the send).
func (f *fixture) loseAssignmentRecord(id string) {
	f.t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: f.dbPath})
	if err != nil {
		f.t.Fatal(err)
	}
	defer st.Close()
	tk, err := st.GetTask(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	if tk.State != task.StateActive {
		f.t.Fatalf("task %s is %s, want ACTIVE after the stop", id, tk.State)
	}
	rev := tk.Revision
	tk.Progress = nil
	ev := task.Event{TaskID: id, Time: time.Now(), Kind: task.EventProgress, From: tk.State, To: tk.State, Message: "test: the assignment record was lost"}
	if _, err := st.UpdateTask(ctx, tk, rev, ev); err != nil {
		f.t.Fatal(err)
	}
}

// TestResumeWithoutAssignmentRecord: a server process claimed the task and stopped before its
// assignment was recorded. The next process cannot tell whether the agent got it: it assigns
// it again when the host still matches the plan (the agent answers from its state dir if it
// had it), and otherwise fails ASSIGNMENT_UNKNOWN instead of re-planning against a host that
// may be half-updated. Nothing is ever applied twice.
func TestResumeWithoutAssignmentRecord(t *testing.T) {
	tests := []struct {
		name string
		// agentHadIt: the agent received the assignment and applied it while the server was
		// down; otherwise no agent was connected before the stop.
		agentHadIt bool
		state      task.State
		code       task.Code
	}{
		{"agent never received it: assigned again", false, task.StateSucceeded, ""},
		{"agent applied it meanwhile: host no longer matches the plan", true, task.StateFailed, task.CodeAssignmentUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
			f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
			state := t.TempDir()
			var id string
			if tc.agentHadIt {
				// The install outlasts the server: the agent finishes it while the server is down.
				if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Delay: time.Second}); err != nil {
					t.Fatal(err)
				}
				a := f.startAgent(f.env.Addr, x11, state)
				id = f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
				f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "BIOS" && p.Step == "install" })
				f.env.Stop()
				deadline := time.Now().Add(timeout)
				for f.applied("BIOS") == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the agent did not finish the install while the server was down")
					}
					time.Sleep(20 * time.Millisecond)
				}
				a.stop()
			} else {
				// No agent: the task waits for it, and says so durably.
				id = f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
				p := f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "agent" && p.Step == "wait" })
				if p.State != task.StepPending {
					t.Errorf("wait row %+v, want PENDING", p)
				}
				f.env.Stop()
			}
			addr := f.env.Addr
			f.loseAssignmentRecord(id)
			f.restartOn(addr)
			f.startAgent(f.env.Addr, x11, state)
			tk := f.env.WaitState(t, id, timeout, task.StateSucceeded, task.StateFailed, task.StateCancelled)
			if tk.State != tc.state {
				t.Fatalf("task %s (%+v), want %s", tk.State, tk.Failure, tc.state)
			}
			if tc.code != "" && (tk.Failure == nil || tk.Failure.Code != tc.code) {
				t.Errorf("failure %+v, want code %s", tk.Failure, tc.code)
			}
			if n := f.applied("BIOS"); n != 1 {
				t.Errorf("BIOS applied %d times, want 1", n)
			}
		})
	}
}

// TestAssignedRecordedAfterSend: a task whose agent is connected is assigned without waiting
// for a commit, and its "assigned" rows are recorded right after (before any of the agent's
// reports), so a restart from then on resumes it instead of re-planning.
func TestAssignedRecordedAfterSend(t *testing.T) {
	f := newFixture(t, hosttools.SupermicroX11DPHT, x11)
	f.image("BIOS", "Supermicro", "X11DPH-T", "3.5")
	if err := f.host.SetFault("sum:UpdateBios", hosttools.Fault{Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	// A raw agent stream that reports the host's inventory and never answers: the record
	// must not wait for the agent.
	ctx, cancel := context.WithCancel(withServer(context.Background(), x11))
	defer cancel()
	stream, err := flasherv1.NewAgentServiceClient(dial(t, f.env.Addr)).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &flasherv1.AgentHello{AgentVersion: "test"}
	for _, c := range f.inv.Components {
		hello.Components = append(hello.Components, &flasherv1.AgentComponent{Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version})
	}
	if err := stream.Send(&flasherv1.ConnectRequest{Msg: &flasherv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("first message %v (%v), want welcome", m, err)
	}
	id := f.create(x11, &flasherv1.Firmware{Component: "BIOS", Version: "3.5"})
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetAssign().GetTaskId() != id {
		t.Fatalf("got %v, want the assignment of %s", m, id)
	}
	p := f.waitProgress(id, timeout, func(p task.Progress) bool { return p.Component == "BIOS" })
	if p.Step != "assigned" || p.State != task.StepPending {
		t.Errorf("BIOS row %+v, want PENDING assigned", p)
	}
	tk, err := f.env.Store.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tk.Progress {
		if r.Component == "agent" {
			t.Errorf("row %+v: the agent was connected, the task never waited", r)
		}
	}
}
