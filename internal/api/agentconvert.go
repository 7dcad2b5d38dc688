package api

import (
	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// Conversions of the agent protocol between the wire and internal/inband.

var (
	stepStates    = invert(stepStateToPB)
	outcomeFromPB = map[flasherv1.AgentResult_Outcome]inband.Outcome{
		flasherv1.AgentResult_OUTCOME_SUCCEEDED: inband.OutcomeSucceeded,
		flasherv1.AgentResult_OUTCOME_FAILED:    inband.OutcomeFailed,
		flasherv1.AgentResult_OUTCOME_CANCELLED: inband.OutcomeCancelled,
	}
)

// stepStateFromPB reads an agent's step state; one it does not name is pending.
func stepStateFromPB(s flasherv1.StepState) task.StepState {
	if st, ok := stepStates[s]; ok {
		return st
	}
	return task.StepPending
}

// agentMessageFromPB converts one message of an agent's stream; a message this server does
// not know is refused.
func agentMessageFromPB(m *flasherv1.ConnectRequest) (inband.Message, error) {
	switch x := m.GetMsg().(type) {
	case *flasherv1.ConnectRequest_Hello:
		return helloFromPB(x.Hello), nil
	case *flasherv1.ConnectRequest_Heartbeat:
		return inband.Heartbeat{}, nil
	case *flasherv1.ConnectRequest_Ack:
		return inband.Ack{TaskID: x.Ack.GetTaskId()}, nil
	case *flasherv1.ConnectRequest_Progress:
		p := x.Progress
		return &inband.Progress{TaskID: p.GetTaskId(), Progress: task.Progress{
			Component: p.GetComponent(), Serial: p.GetSerial(), State: stepStateFromPB(p.GetState()),
			Step: p.GetStep(), Percent: int(p.GetPercent()), Message: p.GetMessage(),
			Attempt: int(p.GetAttempt()), JobID: p.GetInstallId(),
		}}, nil
	case *flasherv1.ConnectRequest_RebootRequired:
		rr := x.RebootRequired
		return &inband.RebootRequired{TaskID: rr.GetTaskId(), Components: rr.GetComponents(), Rebooting: rr.GetRebooting()}, nil
	case *flasherv1.ConnectRequest_Result:
		return resultFromPB(x.Result), nil
	}
	return nil, &inband.Error{Kind: inband.KindBadMessage, Msg: "unknown message"}
}

func helloFromPB(h *flasherv1.AgentHello) *inband.Hello {
	host := h.GetHost()
	out := &inband.Hello{
		AgentVersion: h.GetAgentVersion(),
		Host:         inband.HostFacts{Hostname: host.GetHostname(), Vendor: host.GetVendor(), Model: host.GetModel(), Serial: host.GetSerial()},
		Components:   make([]inventory.Component, len(h.GetComponents())),
	}
	for i, c := range h.GetComponents() {
		out.Components[i] = inventory.Component{Slug: c.GetSlug(), Vendor: c.GetVendor(), Model: c.GetModel(), Serial: c.GetSerial(), Version: c.GetVersion()}
	}
	return out
}

func resultFromPB(r *flasherv1.AgentResult) *inband.Result {
	out := &inband.Result{
		TaskID: r.GetTaskId(), Outcome: outcomeFromPB[r.GetOutcome()], FailureCode: task.Code(r.GetFailureCode()),
		FailureComponent: r.GetFailureComponent(), Message: r.GetMessage(), CancelledAt: r.GetCancelledAt(),
		Components: make([]inband.ComponentOutcome, len(r.GetComponents())),
	}
	for i, c := range r.GetComponents() {
		out.Components[i] = inband.ComponentOutcome{
			Component: c.GetComponent(), Serial: c.GetSerial(), State: stepStateFromPB(c.GetState()), Version: c.GetVersion(),
			RebootRequired: c.GetRebootRequired(), Message: c.GetMessage(), Attempt: int(c.GetAttempt()), InstallID: c.GetInstallId(),
		}
	}
	return out
}

func assignmentToPB(a inband.Assignment) *flasherv1.Assignment {
	out := &flasherv1.Assignment{TaskId: a.TaskID, AllowReboot: a.AllowReboot, Steps: make([]*flasherv1.AssignedStep, len(a.Steps))}
	for i, st := range a.Steps {
		out.Steps[i] = &flasherv1.AssignedStep{
			Component: st.Component, Serial: st.Serial, Vendor: st.Vendor, Model: st.Model,
			FromVersion: st.FromVersion, ToVersion: st.ToVersion, Checksum: st.Checksum, Size: st.Size,
			Filename: st.Filename, Force: st.Force,
		}
	}
	return out
}
