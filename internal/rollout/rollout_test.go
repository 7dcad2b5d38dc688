package rollout

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// fleet makes n waiting rows, spread over racks r1..rN by server index.
func fleet(n, racks int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{ServerID: fmt.Sprintf("s%02d", i), Group: fmt.Sprintf("r%d", i%racks+1), State: ServerWaiting}
	}
	return rows
}

func newRollout(rows []Row, s Strategy) *Rollout {
	r := &Rollout{State: StatePending, Strategy: s, Rows: rows}
	r.Batches = Assign(r.Rows, s)
	return r
}

// finish ends the named servers' tasks with the given state.
func finish(r *Rollout, state ServerState, ids ...string) {
	for _, id := range ids {
		code := ""
		if state == ServerFailed {
			code = "INSTALL_FAILED"
		}
		r.Observe(id, "task-"+id, state, code)
	}
}

func TestBatches(t *testing.T) {
	rows := fleet(10, 3)
	rows[4].State = ServerSkipped
	rows[7].State = ServerRefused
	got := Batches(rows, Strategy{Canary: 1, BatchSize: 3})
	// Round-robin over racks r1, r2, r3 (servers by id within a rack), skipped and refused left out.
	want := [][]string{{"s00"}, {"s01", "s02", "s03"}, {"s05", "s06", "s08"}, {"s09"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	if got := Batches(fleet(10, 1), Strategy{BatchPercent: 25}); len(got) != 4 || len(got[0]) != 1 || len(got[1]) != 3 {
		t.Errorf("25%% of 10 is batches of 3 after a canary of 1: %v", got)
	}
	if got := Batches(fleet(3, 1), Strategy{Canary: 5, BatchSize: 2}); len(got) != 1 || len(got[0]) != 3 {
		t.Errorf("a canary larger than the fleet takes it all: %v", got)
	}
	if got := Batches(nil, Strategy{BatchSize: 2}); got != nil {
		t.Errorf("no servers, no batches: %v", got)
	}
}

func TestStrategyValidate(t *testing.T) {
	for _, tc := range []struct {
		s     Strategy
		field string
	}{
		{Strategy{}, "strategy.batch_size"},
		{Strategy{BatchSize: 2, BatchPercent: 10}, "strategy.batch_size"},
		{Strategy{BatchPercent: 101}, "strategy.batch_percent"},
		{Strategy{BatchSize: 1, Budget: Budget{Percent: 150}}, "strategy.failure_budget.percent"},
		{Strategy{BatchSize: 1, Budget: Budget{Count: -1}}, "strategy.failure_budget.count"},
		{Strategy{BatchSize: 1, MaxPerGroup: 2}, "strategy.group_by"},
	} {
		v := tc.s.Validate()
		if len(v) != 1 || v[0].Field != tc.field {
			t.Errorf("%+v: violations %v, want one on %s", tc.s, v, tc.field)
		}
	}
	if v := (Strategy{Canary: 1, BatchSize: 3, GroupBy: "rack", MaxPerGroup: 1}).Validate(); len(v) != 0 {
		t.Errorf("a good strategy refused: %v", v)
	}
}

func TestBudget(t *testing.T) {
	for _, tc := range []struct {
		b            Budget
		failed, of   int
		wantExceeded bool
	}{
		{Budget{}, 0, 10, false},
		{Budget{}, 1, 10, true},
		{Budget{Count: 2}, 2, 10, false},
		{Budget{Count: 2}, 3, 10, true},
		{Budget{Percent: 20}, 2, 10, false},
		{Budget{Percent: 20}, 3, 10, true},
		{Budget{Count: 5, Percent: 20}, 3, 10, true},
		{Budget{Count: 1, Percent: 50}, 2, 10, true},
	} {
		if got := tc.b.Exceeded(tc.failed, tc.of); got != tc.wantExceeded {
			t.Errorf("%+v with %d of %d failed: exceeded %v, want %v", tc.b, tc.failed, tc.of, got, tc.wantExceeded)
		}
	}
}

// TestCanaryFailurePausesAndResumeContinues: canary 1, batches of 3, at most 1 per rack, budget
// 0. The canary fails: the rollout pauses with the budget reason and starts nothing; resume
// continues with the next batch, one server per rack.
func TestCanaryFailurePausesAndResumeContinues(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	r := newRollout(fleet(7, 3), Strategy{Canary: 1, BatchSize: 3, GroupBy: "rack", MaxPerGroup: 1})

	if got := r.Step(now); !slices.Equal(got, []string{"s00"}) || r.State != StateRunning {
		t.Fatalf("first step started %v (state %s), want the canary s00", got, r.State)
	}
	if got := r.Step(now); len(got) != 0 {
		t.Fatalf("a repeated step started %v again", got)
	}
	finish(r, ServerFailed, "s00")
	if got := r.Step(now); len(got) != 0 || r.State != StatePaused || r.Reason != PauseBudget {
		t.Fatalf("after the canary failed: started %v, state %s %s (%s)", got, r.State, r.Reason, r.Message)
	}
	r.Resume()
	got := r.Step(now)
	if r.State != StateRunning || len(got) != 3 {
		t.Fatalf("after resume: started %v, state %s (%s)", got, r.State, r.Message)
	}
	racks := map[string]bool{}
	for _, id := range got {
		for _, row := range r.Rows {
			if row.ServerID == id {
				racks[row.Group] = true
			}
		}
	}
	if len(racks) != 3 {
		t.Errorf("batch 1 %v is not spread one per rack", got)
	}
	finish(r, ServerSucceeded, got...)
	got = r.Step(now)
	finish(r, ServerSucceeded, got...)
	if r.Step(now); r.State != StateFailed {
		t.Errorf("a rollout with a failed canary ended %s (%s), want FAILED", r.State, r.Message)
	}
	if c := Count(r.Rows); c[ServerSucceeded] != 6 || c[ServerFailed] != 1 {
		t.Errorf("counts %v", c)
	}
}

func TestMaxPerGroupHoldsWithinABatch(t *testing.T) {
	now := time.Now()
	// Six servers on two racks; canary 1, then one batch of 5, at most 2 per rack.
	r := newRollout(fleet(6, 2), Strategy{Canary: 1, BatchSize: 5, GroupBy: "rack", MaxPerGroup: 2})
	finish(r, ServerSucceeded, r.Step(now)...)
	got := r.Step(now)
	if len(got) != 4 {
		t.Fatalf("started %v, want 2 per rack on 2 racks", got)
	}
	finish(r, ServerSucceeded, got[0])
	if more := r.Step(now); len(more) != 1 {
		t.Fatalf("one slot freed on a rack, started %v", more)
	}
}

func TestApprovalAfterCanary(t *testing.T) {
	now := time.Now()
	r := newRollout(fleet(4, 1), Strategy{Canary: 1, BatchSize: 3, ApproveAfterCanary: true, Budget: Budget{Count: 1}})
	finish(r, ServerSucceeded, r.Step(now)...)
	if got := r.Step(now); len(got) != 0 || r.Reason != PauseApproval {
		t.Fatalf("after the canary: started %v, %s %s", got, r.State, r.Reason)
	}
	r.CanaryApproved = true
	if got := r.Step(now); len(got) != 3 || r.State != StateRunning {
		t.Fatalf("after approval: started %v, %s", got, r.State)
	}
}

// TestWindowClosesAndReopens: a window closing mid-rollout stops new starts while running tasks
// finish; the next window starts the rest, with no operator action.
func TestWindowClosesAndReopens(t *testing.T) {
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC) // a Monday
	w := Windows{Intervals: []Interval{
		{Start: day.Add(1 * time.Hour), End: day.Add(2 * time.Hour)},
		{Start: day.Add(5 * time.Hour), End: day.Add(6 * time.Hour)},
	}}
	r := newRollout(fleet(4, 1), Strategy{Canary: 1, BatchSize: 3, MaxInFlight: 1})
	r.Windows = w

	if got := r.Step(day); len(got) != 0 || r.Reason != PauseWindow {
		t.Fatalf("before the first window: started %v, %s %s", got, r.State, r.Reason)
	}
	inFirst := day.Add(90 * time.Minute)
	finish(r, ServerSucceeded, r.Step(inFirst)...)
	running := r.Step(inFirst)
	if len(running) != 1 {
		t.Fatalf("in the window: started %v", running)
	}
	afterFirst := day.Add(2*time.Hour + time.Second)
	finish(r, ServerSucceeded, running...)
	if got := r.Step(afterFirst); len(got) != 0 || r.Reason != PauseWindow {
		t.Fatalf("after the window closed: started %v, %s %s", got, r.State, r.Reason)
	}
	if r.Message == "" || r.State != StatePaused {
		t.Errorf("a window pause names the next window: %q", r.Message)
	}
	if got := r.Step(day.Add(5*time.Hour + time.Minute)); len(got) != 1 || r.State != StateRunning {
		t.Fatalf("the next window: started %v, %s", got, r.State)
	}
}

// TestRestartStartsNothingTwice: the runner persists the rollout after every Step; a copy of
// that record, stepped again as a restarted replica would, starts no server a second time.
func TestRestartStartsNothingTwice(t *testing.T) {
	now := time.Now()
	r := newRollout(fleet(9, 3), Strategy{Canary: 2, BatchSize: 3, MaxInFlight: 2})
	started := map[string]int{}
	record := func(ids []string) {
		for _, id := range ids {
			started[id]++
		}
	}
	for i := 0; i < 50 && !r.State.Terminal(); i++ {
		ids := r.Step(now)
		record(ids)
		restarted := *r
		restarted.Rows = slices.Clone(r.Rows)
		record(restarted.Step(now)) // a replica taking over before any outcome arrives
		finish(r, ServerSucceeded, ids...)
	}
	if r.State != StateSucceeded {
		t.Fatalf("ended %s (%s)", r.State, r.Message)
	}
	for id, n := range started {
		if n != 1 {
			t.Errorf("%s started %d times", id, n)
		}
	}
	if len(started) != 9 {
		t.Errorf("started %d servers, want 9", len(started))
	}
}

func TestDeadlineAndCancel(t *testing.T) {
	now := time.Now()
	r := newRollout(fleet(5, 1), Strategy{Canary: 1, BatchSize: 4})
	r.Deadline = now.Add(time.Hour)
	canary := r.Step(now)
	if got := r.Step(now.Add(2 * time.Hour)); len(got) != 0 || r.State != StateRunning {
		t.Fatalf("past the deadline with the canary in flight: started %v, %s", got, r.State)
	}
	finish(r, ServerSucceeded, canary...)
	r.Step(now.Add(2 * time.Hour))
	if r.State != StateFailed || Count(r.Rows)[ServerCancelled] != 4 {
		t.Fatalf("after the deadline: %s (%s), counts %v", r.State, r.Message, Count(r.Rows))
	}

	c := newRollout(fleet(3, 1), Strategy{Canary: 1, BatchSize: 2})
	c.Step(now)
	c.Cancelled = true
	c.Step(now)
	finish(c, ServerCancelled, "s00")
	if c.Step(now); c.State != StateCancelled {
		t.Fatalf("cancelled rollout ended %s (%s)", c.State, c.Message)
	}
}

func TestWeeklyWindows(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	// Saturdays 22:00 for 6 hours, New York time: it runs past midnight into Sunday.
	w := Windows{Weekly: []Weekly{{Day: time.Saturday, Start: 22 * time.Hour, Duration: 6 * time.Hour, Location: ny}}}
	sat := time.Date(2026, 12, 5, 21, 0, 0, 0, ny) // Saturday 21:00
	if w.Open(sat) {
		t.Error("open an hour before the window")
	}
	start, end, ok := w.Next(sat)
	if !ok || !start.Equal(time.Date(2026, 12, 5, 22, 0, 0, 0, ny)) || !end.Equal(time.Date(2026, 12, 6, 4, 0, 0, 0, ny)) {
		t.Errorf("next window %v – %v (%v)", start, end, ok)
	}
	if !w.Open(time.Date(2026, 12, 6, 3, 0, 0, 0, ny)) {
		t.Error("closed on Sunday 03:00, inside the window that began Saturday")
	}
	if w.Open(time.Date(2026, 12, 6, 4, 0, 0, 0, ny)) {
		t.Error("open at the window's end")
	}
	// Across the DST change (8 March 2026 in New York): the window still opens at 22:00 local.
	dst := Windows{Weekly: []Weekly{{Day: time.Sunday, Start: 22 * time.Hour, Duration: time.Hour, Location: ny}}}
	if s, _, _ := dst.Next(time.Date(2026, 3, 8, 0, 30, 0, 0, ny)); s.Hour() != 22 || s.Day() != 8 {
		t.Errorf("on the DST day the window opens at %v", s)
	}
	// Adjacent windows merge into one.
	m := Windows{Intervals: []Interval{
		{Start: sat, End: sat.Add(time.Hour)},
		{Start: sat.Add(time.Hour), End: sat.Add(2 * time.Hour)},
	}}
	if _, e, _ := m.Next(sat); !e.Equal(sat.Add(2 * time.Hour)) {
		t.Errorf("adjacent windows end at %v", e)
	}
}

func TestWindowsValidate(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	past := Windows{Intervals: []Interval{{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour)}}}
	if v := past.Validate(now); len(v) != 1 || v[0].Field != "windows" {
		t.Errorf("windows entirely in the past: %v", v)
	}
	inverted := Windows{Intervals: []Interval{{Start: now.Add(time.Hour), End: now}}}
	if v := inverted.Validate(now); len(v) == 0 || v[0].Field != "windows.intervals[0]" {
		t.Errorf("an inverted interval: %v", v)
	}
	noZone := Windows{Weekly: []Weekly{{Day: time.Monday, Start: time.Hour, Duration: time.Hour}}}
	if v := noZone.Validate(now); len(v) == 0 || v[0].Field != "windows.weekly[0].time_zone" {
		t.Errorf("a weekly window without a zone: %v", v)
	}
	if v := (Windows{}).Validate(now); len(v) != 0 {
		t.Errorf("no windows means now: %v", v)
	}
}

func TestWeeklyJSONKeepsTimeZone(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	in := Weekly{Day: time.Saturday, Start: 22 * time.Hour, Duration: 6 * time.Hour, Location: paris}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Weekly
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	if out.Location == nil || out.Location.String() != "Europe/Paris" || out.Day != in.Day || out.Start != in.Start || out.Duration != in.Duration {
		t.Fatalf("round trip of %s = %+v, want %+v", b, out, in)
	}
	at := time.Date(2026, 3, 7, 22, 30, 0, 0, paris)
	if !(Windows{Weekly: []Weekly{out}}).Open(at) {
		t.Errorf("decoded window is not open at %v", at)
	}
	if err := json.Unmarshal([]byte(`{"day":1,"time_zone":"Nowhere/Else"}`), &out); err == nil {
		t.Error("an unknown time zone was accepted")
	}
}
