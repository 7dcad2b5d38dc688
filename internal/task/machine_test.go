package task

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTask() *Task {
	t, _ := New(Task{ID: "t1", ServerID: "s1", Method: MethodOutOfBand, Mode: ModeFirmware}, t0)
	return t
}

func TestTransitions(t *testing.T) {
	all := []State{StateQueued, StateActive, StateSucceeded, StateFailed, StateCancelled}
	legal := map[[2]State]bool{
		{StateQueued, StateActive}:    true,
		{StateQueued, StateCancelled}: true,
		{StateActive, StateSucceeded}: true,
		{StateActive, StateFailed}:    true,
		{StateActive, StateCancelled}: true,
		{StateActive, StateQueued}:    true,
	}
	for _, from := range all {
		for _, to := range all {
			if got := CanTransition(from, to); got != legal[[2]State{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	for _, s := range all {
		if s.Terminal() != (s == StateSucceeded || s == StateFailed || s == StateCancelled) {
			t.Errorf("%s.Terminal() wrong", s)
		}
	}
}

func TestLifecycle(t *testing.T) {
	tests := []struct {
		name  string
		steps func(*Task) ([]Event, error)
		state State
		kinds []EventKind
	}{
		{"succeed", func(tk *Task) ([]Event, error) {
			e1, err := tk.Start("w", t0.Add(time.Second))
			if err != nil {
				return nil, err
			}
			e2, err := tk.Succeed(t0.Add(2 * time.Second))
			return []Event{e1, e2}, err
		}, StateSucceeded, []EventKind{EventStarted, EventSucceeded}},
		{"fail", func(tk *Task) ([]Event, error) {
			e1, _ := tk.Start("w", t0)
			e2, err := tk.Fail(Failure{Code: "INSTALL_FAILED", Component: "BIOS", Message: "boom"}, t0)
			return []Event{e1, e2}, err
		}, StateFailed, []EventKind{EventStarted, EventFailed}},
		{"cancel queued", func(tk *Task) ([]Event, error) {
			e, done, err := tk.Cancel("op", t0)
			if !done {
				return nil, errors.New("queued cancel not done")
			}
			return []Event{e}, err
		}, StateCancelled, []EventKind{EventCancelled}},
		{"cancel active at safe point", func(tk *Task) ([]Event, error) {
			e1, _ := tk.Start("w", t0)
			e2, done, err := tk.Cancel("op", t0)
			if err != nil || done || !tk.CancelRequested {
				return nil, errors.New("active cancel must only be requested")
			}
			if tk.State != StateActive {
				return nil, errors.New("active cancel changed state")
			}
			e3, err := tk.CancelActive("before BIOS upload", t0)
			return []Event{e1, e2, e3}, err
		}, StateCancelled, []EventKind{EventStarted, EventCancelRequested, EventCancelled}},
		{"requeue", func(tk *Task) ([]Event, error) {
			e1, _ := tk.Start("w", t0)
			e2, err := tk.Requeue("worker lost", t0)
			if tk.Worker != "" || !tk.StartedAt.IsZero() {
				return nil, errors.New("requeue kept worker")
			}
			return []Event{e1, e2}, err
		}, StateQueued, []EventKind{EventStarted, EventRequeued}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := newTask()
			evs, err := tc.steps(tk)
			if err != nil {
				t.Fatal(err)
			}
			if tk.State != tc.state {
				t.Fatalf("state %s, want %s", tk.State, tc.state)
			}
			if len(evs) != len(tc.kinds) {
				t.Fatalf("%d events, want %d", len(evs), len(tc.kinds))
			}
			for i, e := range evs {
				if e.Kind != tc.kinds[i] || e.TaskID != "t1" {
					t.Errorf("event %d = %+v, want kind %s", i, e, tc.kinds[i])
				}
			}
			if tk.State.Terminal() && tk.FinishedAt.IsZero() {
				t.Error("terminal task without FinishedAt")
			}
		})
	}
}

func TestIllegal(t *testing.T) {
	tk := newTask()
	if _, err := tk.Succeed(t0); err == nil {
		t.Fatal("QUEUED → SUCCEEDED allowed")
	}
	var te *TransitionError
	if _, err := tk.Fail(Failure{Code: "X"}, t0); !errors.As(err, &te) || te.From != StateQueued || te.To != StateFailed {
		t.Fatalf("err = %v", err)
	}
	if _, err := tk.SetProgress(Progress{Component: "BIOS"}, t0); err == nil {
		t.Fatal("progress on a QUEUED task allowed")
	}
	tk.Start("w", t0)
	tk.Succeed(t0)
	for name, f := range map[string]func() error{
		"start":  func() error { _, err := tk.Start("w", t0); return err },
		"cancel": func() error { _, _, err := tk.Cancel("x", t0); return err },
		"fail":   func() error { _, err := tk.Fail(Failure{}, t0); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s on a SUCCEEDED task allowed", name)
		}
	}
	if tk.State != StateSucceeded {
		t.Fatalf("illegal calls changed state to %s", tk.State)
	}
}

func TestProgressReplacesPerInstance(t *testing.T) {
	tk := newTask()
	tk.Start("w", t0)
	tk.SetProgress(Progress{Component: "NIC", Serial: "a", State: StepRunning, Percent: 10}, t0)
	tk.SetProgress(Progress{Component: "NIC", Serial: "b", State: StepRunning, Percent: 20}, t0)
	tk.SetProgress(Progress{Component: "NIC", Serial: "a", State: StepSucceeded, Percent: 150}, t0)
	if len(tk.Progress) != 2 {
		t.Fatalf("progress entries %d, want 2 (one per instance)", len(tk.Progress))
	}
	if tk.Progress[0].Percent != 100 || tk.Progress[0].State != StepSucceeded {
		t.Fatalf("instance a = %+v", tk.Progress[0])
	}
}

func TestCloneIsDeep(t *testing.T) {
	tk := newTask()
	tk.Firmware = []Firmware{{Component: "BIOS", PreActions: []Action{ActionResetBMC}}}
	tk.Plan = &Plan{Steps: []Step{{Component: "BIOS"}}}
	c := tk.Clone()
	c.Firmware[0].PreActions[0] = ActionResetHost
	c.Plan.Steps[0].Component = "BMC"
	if tk.Firmware[0].PreActions[0] != ActionResetBMC || tk.Plan.Steps[0].Component != "BIOS" {
		t.Fatal("Clone shares memory with the original")
	}
}
