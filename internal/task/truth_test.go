package task

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func activeTask(t *testing.T) *Task {
	t.Helper()
	tk := newTask()
	if _, err := tk.Start("w1", t0); err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestFinalStateClosesProgress: no final task shows a row PENDING or RUNNING.
func TestFinalStateClosesProgress(t *testing.T) {
	ends := []struct {
		state State
		end   func(*Task, time.Time) error
		// running and pending are what RUNNING and PENDING rows become.
		running, pending StepState
	}{
		{StateSucceeded, func(tk *Task, now time.Time) error { _, err := tk.Succeed(now); return err }, StepSucceeded, StepSucceeded},
		{StateFailed, func(tk *Task, now time.Time) error {
			_, err := tk.Fail(Failure{Code: CodeTimeout, Component: "BIOS", Message: "no answer"}, now)
			return err
		}, StepFailed, StepSkipped},
		{StateCancelled, func(tk *Task, now time.Time) error { _, err := tk.CancelActive("before NIC upload", now); return err }, StepFailed, StepSkipped},
	}
	for _, e := range ends {
		t.Run(string(e.state), func(t *testing.T) {
			tk := activeTask(t)
			for _, p := range []Progress{
				{Component: "BMCSession", State: StepRunning, Step: "login", Message: "login attempt 2 of 4"},
				{Component: "BMC", State: StepSucceeded, Step: "verified", Percent: 100},
				{Component: "BIOS", State: StepRunning, Step: "install-status", Percent: 1},
				{Component: "NIC", Serial: "N1", State: StepPending},
			} {
				if _, err := tk.SetProgress(p, t0); err != nil {
					t.Fatal(err)
				}
			}
			done := t0.Add(time.Minute)
			if err := e.end(tk, done); err != nil {
				t.Fatal(err)
			}
			want := map[string]StepState{"BMCSession": e.running, "BMC": StepSucceeded, "BIOS": e.running, "NIC": e.pending}
			for _, p := range tk.Progress {
				if p.State != want[p.Component] {
					t.Errorf("%s row %s, want %s", p.Component, p.State, want[p.Component])
				}
				if p.State == StepRunning || p.State == StepPending {
					t.Errorf("%s row still %s in a %s task", p.Component, p.State, tk.State)
				}
			}
			if p := tk.Progress[2]; e.state != StateSucceeded && (!strings.Contains(p.Message, "interrupted") || !p.UpdatedAt.Equal(done)) {
				t.Errorf("closed BIOS row %+v, want it to say it was interrupted, at the end", p)
			}
		})
	}
}

// TestCancelTruth: a cancel on a finished task is refused naming its state; a cancel on a running
// task is visible, and the final event says whether it took effect.
func TestCancelTruth(t *testing.T) {
	tk := activeTask(t)
	ev, done, err := tk.Cancel("ops: stop", t0)
	if err != nil || done || !tk.CancelRequested || ev.Kind != EventCancelRequested {
		t.Fatalf("cancel of an ACTIVE task: %+v done=%v err=%v requested=%v", ev, done, err, tk.CancelRequested)
	}
	ev, err = tk.Succeed(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Message, "did not take effect") || !strings.Contains(ev.Message, "SUCCEEDED") {
		t.Errorf("final event %q does not say the cancel lost the race", ev.Message)
	}
	_, _, err = tk.Cancel("again", t0.Add(2*time.Second))
	var te *TransitionError
	if !errors.As(err, &te) || te.From != StateSucceeded {
		t.Errorf("cancel of a SUCCEEDED task: %v, want a TransitionError from SUCCEEDED", err)
	}

	failed := activeTask(t)
	if _, _, err := failed.Cancel("ops", t0); err != nil {
		t.Fatal(err)
	}
	ev, err = failed.Fail(Failure{Code: CodeInstallFailed, Message: "job failed"}, t0)
	if err != nil || !strings.Contains(ev.Message, "did not take effect: the task ended FAILED") {
		t.Errorf("failed after a cancel: %q %v", ev.Message, err)
	}

	honoured := activeTask(t)
	if _, _, err := honoured.Cancel("ops", t0); err != nil {
		t.Fatal(err)
	}
	ev, err = honoured.CancelActive("before BIOS upload", t0)
	if err != nil || ev.Message != "before BIOS upload" || honoured.State != StateCancelled {
		t.Errorf("honoured cancel: %+v %v", ev, err)
	}
	plain := activeTask(t)
	if ev, _ := plain.Succeed(t0); ev.Message != "" {
		t.Errorf("no cancel requested, yet the final event says %q", ev.Message)
	}
}

// TestResumeKeepsHistory: re-plans on resume are recorded beside the plan shown and the
// pre-update snapshot, which stay as they were; a resumed finished task still lists what it
// flashed.
func TestResumeKeepsHistory(t *testing.T) {
	step := func(c, from, to string) Step {
		return Step{Component: c, FromVersion: from, ToVersion: to, Checksum: "sha256:" + c}
	}
	shown := &Plan{Steps: []Step{step("BMC", "1", "2"), step("BIOS", "5", "6")},
		Snapshot: []Installed{{Component: "BMC", Version: "1"}, {Component: "BIOS", Version: "5"}}}
	tk := newTask()
	tk.Plan = shown.clone()
	if _, err := tk.Start("w1", t0); err != nil {
		t.Fatal(err)
	}
	first := shown.clone()
	if _, err := tk.SetPlan(first, t0); err != nil {
		t.Fatal(err)
	}
	// The BMC was flashed, then the server restarted; the resume re-plans against 2 and 5.
	resumed := &Plan{Steps: []Step{step("BIOS", "5", "6")}, Skipped: []Skip{{Component: "BMC", Version: "2", Reason: "already at version"}},
		Snapshot: []Installed{{Component: "BMC", Version: "2"}, {Component: "BIOS", Version: "5"}}}
	ev, err := tk.SetPlan(resumed, t0)
	if err != nil || !strings.HasPrefix(ev.Message, "re-planned 1 step") {
		t.Fatalf("resume SetPlan: %+v %v", ev, err)
	}
	if _, err := tk.Succeed(t0); err != nil {
		t.Fatal(err)
	}
	c := tk.Clone()
	if got := c.Plan.Summary(); got != "BMC 1→2, BIOS 5→6" {
		t.Errorf("plan shown now %q, want what was shown and flashed", got)
	}
	if len(c.Replans) != 2 || c.LivePlan().Summary() != "BIOS 5→6" {
		t.Errorf("replans %+v, want the first run's and the resume's", c.Replans)
	}
	if s := c.PreUpdateSnapshot(); len(s) != 2 || s[0].Version != "1" {
		t.Errorf("pre-update snapshot %+v, want BMC at 1", s)
	}
	c.Replans[0].Steps[0].ToVersion = "9"
	if tk.Replans[0].Steps[0].ToVersion != "2" {
		t.Error("Clone shares the replans")
	}

	unplanned := newTask()
	if _, err := unplanned.Start("w1", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := unplanned.SetPlan(shown.clone(), t0); err != nil || unplanned.Plan == nil || len(unplanned.Replans) != 1 {
		t.Errorf("a task created unplanned takes its first live plan as its plan: %+v %v", unplanned.Plan, err)
	}
}
