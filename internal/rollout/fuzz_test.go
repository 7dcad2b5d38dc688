package rollout

import (
	"testing"
	"time"
)

// FuzzStep drives a rollout with random strategies, outcomes, pauses and windows, and checks the
// rules after every step: no server starts twice, in-flight tasks stay within MaxInFlight and
// MaxPerGroup, no server of a later batch starts while an earlier batch is unfinished, nothing
// starts while paused, and a rollout that ends has no task in flight and no server waiting.
func FuzzStep(f *testing.F) {
	f.Add(uint8(7), uint8(3), uint8(1), uint8(3), uint8(2), uint8(1), uint8(0), []byte{0, 1, 2, 3, 4, 5})
	f.Add(uint8(20), uint8(4), uint8(2), uint8(5), uint8(3), uint8(0), uint8(2), []byte{9, 9, 1, 200, 7})
	f.Fuzz(func(t *testing.T, n, racks, canary, batch, inFlight, perGroup, budget uint8, script []byte) {
		s := Strategy{Canary: int(canary % 4), BatchSize: int(batch%6) + 1, MaxInFlight: int(inFlight % 5),
			GroupBy: "rack", MaxPerGroup: int(perGroup % 3), Budget: Budget{Count: int(budget % 3)}}
		r := newRollout(fleet(int(n%30)+1, int(racks%5)+1), s)
		r.Windows = Windows{Intervals: []Interval{{Start: time.Unix(100, 0), End: time.Unix(200, 0)}, {Start: time.Unix(300, 0), End: time.Unix(1<<40, 0)}}}
		batchOf := map[string]int{}
		for _, row := range r.Rows {
			batchOf[row.ServerID] = row.Batch
		}
		started := map[string]bool{}
		now := time.Unix(150, 0)
		for step := 0; step < 200 && !r.State.Terminal(); step++ {
			op := byte(step)
			if step < len(script) {
				op = script[step]
			}
			switch op % 8 {
			case 0: // the clock moves, perhaps out of a window
				now = now.Add(time.Duration(op) * time.Second)
			case 1:
				r.OperatorPaused = !r.OperatorPaused
			case 2:
				r.Resume()
			case 3:
				r.CanaryApproved = true
			default: // an in-flight task ends
				for _, row := range r.Rows {
					if row.State.InFlight() {
						end := ServerSucceeded
						if op%8 == 7 {
							end = ServerFailed
						}
						r.Observe(row.ServerID, "t", end, "")
						break
					}
				}
			}
			before := r.State
			ids := r.Step(now)
			if len(ids) > 0 && r.State != StateRunning {
				t.Fatalf("started %v in state %s (was %s)", ids, r.State, before)
			}
			if len(ids) > 0 && !r.Windows.Open(now) {
				t.Fatalf("started %v outside every window at %v", ids, now)
			}
			for _, id := range ids {
				if started[id] {
					t.Fatalf("%s started twice", id)
				}
				started[id] = true
				for _, row := range r.Rows {
					if row.Batch < batchOf[id] && row.Batch >= 0 && !row.State.Ended() && row.ServerID != id {
						t.Fatalf("%s of batch %d started while %s of batch %d is %s", id, batchOf[id], row.ServerID, row.Batch, row.State)
					}
				}
			}
			c := Count(r.Rows)
			if s.MaxInFlight > 0 && c.InFlight() > s.MaxInFlight {
				t.Fatalf("%d in flight, max %d", c.InFlight(), s.MaxInFlight)
			}
			groups := map[string]int{}
			for _, row := range r.Rows {
				if row.State.InFlight() {
					groups[row.Group]++
					if s.MaxPerGroup > 0 && groups[row.Group] > s.MaxPerGroup {
						t.Fatalf("%d in flight on %s, max %d", groups[row.Group], row.Group, s.MaxPerGroup)
					}
				}
			}
			if r.State.Terminal() && (c.InFlight() > 0 || c[ServerWaiting] > 0) {
				t.Fatalf("ended %s with %v", r.State, c)
			}
		}
	})
}
