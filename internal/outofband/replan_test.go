package outofband_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// TestPlannedComponentNotReported: the inventory lists a NIC the BMC does not report. The plan
// the operator was shown flashes it; the live re-plan cannot. The task fails PLAN_DIVERGED with
// both plans, before any upload, and never ends SUCCEEDED having done less than it showed.
func TestPlannedComponentNotReported(t *testing.T) {
	tests := []struct {
		name string
		// current puts the BMC, BIOS and NIC-A1 at the set's versions, so the missing NIC is
		// the only step shown.
		current bool
		shown   int
	}{
		{"the only step shown", true, 1},
		{"one of several steps shown", false, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := dellConfig("dell-gone")
			if tc.current {
				inv.Components[0].Version, inv.Components[1].Version, inv.Components[2].Version = "7.00.00.171", "2.19.1", "22.31.6.0"
			}
			live := inv
			live.Components = []redfish.Component{inv.Components[0], inv.Components[1], inv.Components[2], inv.Components[4]}
			b := startBMC(t, live)
			f := newFixture(t, []server{{id: "srv-1", cfg: inv, bmc: b}}, dellImages, nil)
			id := f.create(setSpec("srv-1", false))
			tk := f.env.WaitState(t, id, 30*time.Second, task.StateSucceeded, task.StateFailed)
			if tk.State != task.StateFailed || tk.Failure == nil || tk.Failure.Code != task.CodePlanDiverged {
				t.Fatalf("task %s %+v, want FAILED %s", tk.State, tk.Failure, task.CodePlanDiverged)
			}
			if n := len(tk.Plan.Steps); n != tc.shown {
				t.Errorf("plan has %d steps, want the %d shown", n, tc.shown)
			}
			for _, want := range []string{"NIC NIC-A2 21.80.16.95→22.31.6.0 dropped", "shown: ", "now: "} {
				if !strings.Contains(tk.Failure.Message, want) {
					t.Errorf("failure message %q lacks %q", tk.Failure.Message, want)
				}
			}
			if n := b.Counters().Uploads; n != 0 {
				t.Errorf("%d uploads, want none", n)
			}
		})
	}
}
