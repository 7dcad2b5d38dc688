package inband

import (
	"time"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// componentsFromProto converts an agent's inventory report, read at `at`.
func componentsFromProto(in []*flasherv1.AgentComponent, at time.Time) []inventory.Component {
	out := make([]inventory.Component, 0, len(in))
	for _, c := range in {
		out = append(out, inventory.Component{
			Slug: c.GetSlug(), Vendor: c.GetVendor(), Model: c.GetModel(), Serial: c.GetSerial(),
			Version: c.GetVersion(), InBand: true, VersionSource: "agent", VersionAt: at,
		})
	}
	return out
}

func stepStateFromProto(s flasherv1.StepState) task.StepState {
	switch s {
	case flasherv1.StepState_STEP_STATE_RUNNING:
		return task.StepRunning
	case flasherv1.StepState_STEP_STATE_SUCCEEDED:
		return task.StepSucceeded
	case flasherv1.StepState_STEP_STATE_FAILED:
		return task.StepFailed
	case flasherv1.StepState_STEP_STATE_SKIPPED:
		return task.StepSkipped
	default:
		return task.StepPending
	}
}

func progressFromProto(p *flasherv1.AgentProgress) task.Progress {
	return task.Progress{
		Component: p.GetComponent(), Serial: p.GetSerial(), State: stepStateFromProto(p.GetState()),
		Step: p.GetStep(), Percent: int(p.GetPercent()), Message: p.GetMessage(),
		Attempt: int(p.GetAttempt()), JobID: p.GetInstallId(),
	}
}
