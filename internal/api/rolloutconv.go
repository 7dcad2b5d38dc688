package api

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/rollout"
	"github.com/flasher-dev/flasher/internal/rollout/runner"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// WatchRollouts sends the rollouts (or one), then each rollout again whenever it changed, by
// the store's rollout revision: a watcher resuming from revision N gets every rollout changed
// after N, as it is now.
func (s *RolloutService) WatchRollouts(req *flasherv1.WatchRolloutsRequest, stream grpc.ServerStreamingServer[flasherv1.WatchRolloutsResponse]) error {
	ctx := stream.Context()
	changes, stop := s.cfg.Store.Subscribe()
	defer stop()
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	last := req.GetStartRevision()
	first := last == 0
	for {
		all, err := s.cfg.Rollouts.ListRollouts(ctx, false)
		if err != nil {
			return s.status(ctx, err)
		}
		top := int64(0)
		for _, r := range all {
			top = max(top, r.Revision)
		}
		if last > top {
			return status.Error(codes.OutOfRange, fmt.Sprintf("start_revision %d is ahead of the latest rollout revision %d: resume only from a revision a watch delivered", last, top))
		}
		kind := flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE
		if first {
			kind = flasherv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT
		}
		now, sent := s.cfg.Now(), false
		for _, r := range all {
			if (req.GetId() != "" && r.ID != req.GetId()) || (!first && r.Revision <= last) {
				continue
			}
			if err := stream.Send(&flasherv1.WatchRolloutsResponse{Type: kind, Revision: r.Revision, Rollout: rolloutToPB(r, now, true)}); err != nil {
				return err
			}
			sent = true
		}
		last = max(last, top)
		if first {
			if err := stream.Send(&flasherv1.WatchRolloutsResponse{Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED, Revision: last}); err != nil {
				return err
			}
			first = false
		}
		if sent {
			beat.Reset(s.cfg.Heartbeat)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-poll.C:
		case <-beat.C:
			if err := stream.Send(&flasherv1.WatchRolloutsResponse{Type: flasherv1.WatchEventType_WATCH_EVENT_TYPE_HEARTBEAT, Revision: last}); err != nil {
				return err
			}
		}
	}
}

var rolloutStateToPB = map[rollout.State]flasherv1.RolloutState{
	rollout.StatePending:   flasherv1.RolloutState_ROLLOUT_STATE_PENDING,
	rollout.StateRunning:   flasherv1.RolloutState_ROLLOUT_STATE_RUNNING,
	rollout.StatePaused:    flasherv1.RolloutState_ROLLOUT_STATE_PAUSED,
	rollout.StateSucceeded: flasherv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
	rollout.StateFailed:    flasherv1.RolloutState_ROLLOUT_STATE_FAILED,
	rollout.StateCancelled: flasherv1.RolloutState_ROLLOUT_STATE_CANCELLED,
}

var pauseReasonToPB = map[rollout.PauseReason]flasherv1.PauseReason{
	rollout.PauseBudget:   flasherv1.PauseReason_PAUSE_REASON_BUDGET,
	rollout.PauseOperator: flasherv1.PauseReason_PAUSE_REASON_OPERATOR,
	rollout.PauseApproval: flasherv1.PauseReason_PAUSE_REASON_APPROVAL,
	rollout.PauseWindow:   flasherv1.PauseReason_PAUSE_REASON_WINDOW,
}

var serverStateToPB = map[rollout.ServerState]flasherv1.RolloutServerState{
	rollout.ServerSkipped:   flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SKIPPED,
	rollout.ServerRefused:   flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_REFUSED,
	rollout.ServerHeld:      flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_HELD,
	rollout.ServerWaiting:   flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_WAITING,
	rollout.ServerQueued:    flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_QUEUED,
	rollout.ServerActive:    flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_ACTIVE,
	rollout.ServerSucceeded: flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_SUCCEEDED,
	rollout.ServerFailed:    flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_FAILED,
	rollout.ServerCancelled: flasherv1.RolloutServerState_ROLLOUT_SERVER_STATE_CANCELLED,
}

var serverStateFromPB = invert(serverStateToPB)

// rolloutSpecFromPB converts a validated spec; the second result is wait_for_agent.
func rolloutSpecFromPB(in *flasherv1.RolloutSpec) (runner.Spec, bool) {
	sel, inst, st := in.GetSelector(), in.GetInstall(), in.GetStrategy()
	out := runner.Spec{
		Selector: store.RolloutSelector{ServerIDs: sel.GetServerIds(), Labels: sel.GetLabels(), NoncompliantWith: sel.GetNoncompliantWith(), All: sel.GetAll()},
		Strategy: rollout.Strategy{
			Canary: int(st.GetCanary()), BatchSize: int(st.GetBatchSize()), BatchPercent: int(st.GetBatchPercent()),
			MaxInFlight: int(st.GetMaxInFlight()), GroupBy: st.GetGroupBy(), MaxPerGroup: int(st.GetMaxPerGroup()),
			Budget:             rollout.Budget{Count: int(st.GetFailureBudget().GetCount()), Percent: int(st.GetFailureBudget().GetPercent())},
			ApproveAfterCanary: st.GetApproveAfterCanary(),
		},
	}
	// The install is a TaskSpec without a server: convert it the one way task specs are.
	ts := &flasherv1.TaskSpec{Method: inst.GetMethod(), Priority: inst.GetPriority()}
	switch i := inst.GetInstall().(type) {
	case *flasherv1.RolloutInstall_Firmware:
		ts.Install = &flasherv1.TaskSpec_Firmware{Firmware: i.Firmware}
	case *flasherv1.RolloutInstall_FirmwareSet:
		ts.Install = &flasherv1.TaskSpec_FirmwareSet{FirmwareSet: i.FirmwareSet}
	case *flasherv1.RolloutInstall_Resolve:
		ts.Install = &flasherv1.TaskSpec_Resolve{Resolve: i.Resolve}
	}
	out.Template = SpecFromPB(ts)
	for _, iv := range in.GetWindows().GetIntervals() {
		out.Windows.Intervals = append(out.Windows.Intervals, rollout.Interval{Start: iv.GetStart().AsTime(), End: iv.GetEnd().AsTime()})
	}
	for _, w := range in.GetWindows().GetWeekly() {
		var h, m int
		fmt.Sscanf(w.GetStart(), "%d:%d", &h, &m) // the pattern rule made it HH:MM
		wk := rollout.Weekly{Day: time.Weekday(int(w.GetDay()) % 7), Start: time.Duration(h)*time.Hour + time.Duration(m)*time.Minute,
			Duration: w.GetDuration().AsDuration()}
		if loc, err := time.LoadLocation(w.GetTimeZone()); err == nil {
			wk.Location = loc // an unknown zone stays nil, which Windows.Validate refuses
		}
		out.Windows.Weekly = append(out.Windows.Weekly, wk)
	}
	if d := in.GetDeadline(); d != nil {
		out.Deadline = d.AsTime()
	}
	return out, inst.GetWaitForAgent()
}

func rolloutSpecToPB(r *store.RolloutRecord) *flasherv1.RolloutSpec {
	t := &r.Template
	inst := &flasherv1.RolloutInstall{Method: methodToPB[t.Method], Priority: int32(t.Priority), WaitForAgent: r.WaitForAgent}
	switch t.Mode {
	case task.ModeFirmware:
		fl := &flasherv1.FirmwareList{}
		for _, f := range t.Firmware {
			fl.Items = append(fl.Items, firmwareToPB(f))
		}
		inst.Install = &flasherv1.RolloutInstall_Firmware{Firmware: fl}
	case task.ModeFirmwareSet:
		inst.Install = &flasherv1.RolloutInstall_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: t.FirmwareSet, Force: t.Force, Reinstall: t.Reinstall}}
	case task.ModeResolve:
		inst.Install = &flasherv1.RolloutInstall_Resolve{Resolve: &flasherv1.ResolveInstall{Force: t.Force, Reinstall: t.Reinstall}}
	}
	st := r.Rollout.Strategy
	strategy := &flasherv1.RolloutStrategy{
		Canary: int32(st.Canary), MaxInFlight: int32(st.MaxInFlight), GroupBy: st.GroupBy, MaxPerGroup: int32(st.MaxPerGroup),
		FailureBudget:      &flasherv1.FailureBudget{Count: int32(st.Budget.Count), Percent: int32(st.Budget.Percent)},
		ApproveAfterCanary: st.ApproveAfterCanary,
	}
	if st.BatchPercent > 0 {
		strategy.Batch = &flasherv1.RolloutStrategy_BatchPercent{BatchPercent: int32(st.BatchPercent)}
	} else {
		strategy.Batch = &flasherv1.RolloutStrategy_BatchSize{BatchSize: int32(st.BatchSize)}
	}
	windows := &flasherv1.MaintenanceWindows{}
	for _, iv := range r.Rollout.Windows.Intervals {
		windows.Intervals = append(windows.Intervals, &flasherv1.TimeInterval{Start: ts(iv.Start), End: ts(iv.End)})
	}
	for _, w := range r.Rollout.Windows.Weekly {
		day := flasherv1.Weekday(w.Day)
		if w.Day == time.Sunday {
			day = flasherv1.Weekday_WEEKDAY_SUNDAY
		}
		zone := ""
		if w.Location != nil {
			zone = w.Location.String()
		}
		windows.Weekly = append(windows.Weekly, &flasherv1.WeeklyWindow{Day: day, Start: fmt.Sprintf("%02d:%02d", int(w.Start/time.Hour), int(w.Start%time.Hour/time.Minute)),
			Duration: durationpb.New(w.Duration), TimeZone: zone})
	}
	sel := r.Selector
	return &flasherv1.RolloutSpec{
		Selector: &flasherv1.RolloutSelector{ServerIds: sel.ServerIDs, Labels: sel.Labels, NoncompliantWith: sel.NoncompliantWith, All: sel.All},
		Install:  inst, Strategy: strategy, Windows: windows, Deadline: ts(r.Rollout.Deadline),
	}
}

func rolloutServerToPB(r rollout.Row) *flasherv1.RolloutServer {
	return &flasherv1.RolloutServer{ServerId: r.ServerID, Group: r.Group, Batch: int32(r.Batch), State: serverStateToPB[r.State],
		TaskId: r.TaskID, Code: r.Code, Reason: r.Reason}
}

// countsToPB lists the states that have servers, in the order of RolloutServerState.
func countsToPB(c rollout.Counts) []*flasherv1.RolloutCount {
	var out []*flasherv1.RolloutCount
	for pb := flasherv1.RolloutServerState(1); ; pb++ {
		st, ok := serverStateFromPB[pb]
		if !ok {
			return out
		}
		if c[st] > 0 {
			out = append(out, &flasherv1.RolloutCount{State: pb, Servers: int32(c[st])})
		}
	}
}

// budgetAllowed is how many counted failures the budget tolerates before pausing, with
// participants servers taking part (the largest failed for which Budget.Exceeded is false).
func budgetAllowed(b rollout.Budget, participants int) int {
	allowed := participants
	if b.Count > 0 || b.Percent == 0 {
		allowed = min(allowed, b.Count)
	}
	if b.Percent > 0 {
		allowed = min(allowed, b.Percent*participants/100)
	}
	return allowed
}

func rolloutToPB(r *store.RolloutRecord, now time.Time, rows bool) *flasherv1.Rollout {
	ro := &r.Rollout
	c := rollout.Count(ro.Rows)
	out := &flasherv1.Rollout{
		Id: r.ID, RequestId: r.RequestID, Requester: r.Requester, CreatedAt: ts(r.CreatedAt), UpdatedAt: ts(r.UpdatedAt),
		Spec: rolloutSpecToPB(r), State: rolloutStateToPB[ro.State], PauseReason: pauseReasonToPB[ro.Reason], Message: ro.Message,
		Batch: int32(ro.Batch), Batches: int32(ro.Batches), Counts: countsToPB(c),
		BudgetFailures: int32(max(0, c[rollout.ServerFailed]-ro.Forgiven)),
		BudgetAllowed:  int32(budgetAllowed(ro.Strategy.Budget, c.Participants())),
		Revision:       r.Revision,
	}
	if !ro.Windows.Always() && !ro.State.Terminal() {
		if start, end, ok := ro.Windows.Next(now); ok {
			out.NextWindowStart, out.NextWindowEnd = ts(start), ts(end)
		}
	}
	if rows {
		for _, row := range ro.Rows {
			out.Servers = append(out.Servers, rolloutServerToPB(row))
		}
	}
	return out
}
