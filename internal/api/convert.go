package api

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// Conversions between the wire and the domain. Enum mappings are tables, so a value added on
// one side and not the other shows up as UNSPECIFIED/"" rather than as a wrong value.

var stateToPB = map[task.State]flasherv1.TaskState{
	task.StateQueued:    flasherv1.TaskState_TASK_STATE_QUEUED,
	task.StateActive:    flasherv1.TaskState_TASK_STATE_ACTIVE,
	task.StateSucceeded: flasherv1.TaskState_TASK_STATE_SUCCEEDED,
	task.StateFailed:    flasherv1.TaskState_TASK_STATE_FAILED,
	task.StateCancelled: flasherv1.TaskState_TASK_STATE_CANCELLED,
}

var methodToPB = map[task.Method]flasherv1.Method{
	task.MethodOutOfBand: flasherv1.Method_METHOD_OUT_OF_BAND,
	task.MethodInBand:    flasherv1.Method_METHOD_IN_BAND,
}

var modeToPB = map[task.InstallMode]flasherv1.InstallMode{
	task.ModeFirmware:    flasherv1.InstallMode_INSTALL_MODE_FIRMWARE,
	task.ModeFirmwareSet: flasherv1.InstallMode_INSTALL_MODE_FIRMWARE_SET,
	task.ModeResolve:     flasherv1.InstallMode_INSTALL_MODE_RESOLVE,
}

var actionToPB = map[task.Action]flasherv1.Action{
	task.ActionResetBMC:       flasherv1.Action_ACTION_RESET_BMC,
	task.ActionResetHost:      flasherv1.Action_ACTION_RESET_HOST,
	task.ActionPowerOffHost:   flasherv1.Action_ACTION_POWER_OFF_HOST,
	task.ActionPowerCycleHost: flasherv1.Action_ACTION_POWER_CYCLE_HOST,
}

var stepStateToPB = map[task.StepState]flasherv1.StepState{
	task.StepPending:   flasherv1.StepState_STEP_STATE_PENDING,
	task.StepRunning:   flasherv1.StepState_STEP_STATE_RUNNING,
	task.StepSucceeded: flasherv1.StepState_STEP_STATE_SUCCEEDED,
	task.StepFailed:    flasherv1.StepState_STEP_STATE_FAILED,
	task.StepSkipped:   flasherv1.StepState_STEP_STATE_SKIPPED,
}

func invert[K comparable, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	stateFromPB  = invert(stateToPB)
	methodFromPB = invert(methodToPB)
	actionFromPB = invert(actionToPB)
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func actionsToPB(in []task.Action) []flasherv1.Action {
	if len(in) == 0 {
		return nil
	}
	out := make([]flasherv1.Action, len(in))
	for i, a := range in {
		out[i] = actionToPB[a]
	}
	return out
}

func actionsFromPB(in []flasherv1.Action) []task.Action {
	if len(in) == 0 {
		return nil
	}
	out := make([]task.Action, len(in))
	for i, a := range in {
		out[i] = actionFromPB[a]
	}
	return out
}

// TaskToPB converts a domain task to the wire.
func TaskToPB(t *task.Task) *flasherv1.Task {
	if t == nil {
		return nil
	}
	out := &flasherv1.Task{
		Id:              t.ID,
		RequestId:       t.RequestID,
		ServerId:        t.ServerID,
		Method:          methodToPB[t.Method],
		Priority:        int32(t.Priority),
		Requester:       t.Requester,
		Worker:          t.Worker,
		RolloutId:       t.RolloutID,
		TraceId:         t.TraceID,
		InstallMode:     modeToPB[t.Mode],
		FirmwareSet:     t.FirmwareSet,
		Force:           t.Force,
		Reinstall:       t.Reinstall,
		Plan:            planToPB(t.Plan),
		State:           stateToPB[t.State],
		CancelRequested: t.CancelRequested,
		Revision:        t.Revision,
		CreateTime:      ts(t.CreatedAt),
		UpdateTime:      ts(t.UpdatedAt),
		StartTime:       ts(t.StartedAt),
		FinishTime:      ts(t.FinishedAt),
	}
	if len(t.Replans) > 0 {
		out.LivePlan = planToPB(t.LivePlan())
	}
	for _, f := range t.Firmware {
		out.Firmware = append(out.Firmware, firmwareToPB(f))
	}
	for _, p := range t.Progress {
		out.Progress = append(out.Progress, &flasherv1.ComponentProgress{
			Component:  p.Component,
			Serial:     p.Serial,
			State:      stepStateToPB[p.State],
			Step:       p.Step,
			Percent:    int32(p.Percent),
			Message:    p.Message,
			Attempt:    int32(p.Attempt),
			UpdateTime: ts(p.UpdatedAt),
			JobId:      p.JobID,
		})
	}
	if t.Failure != nil {
		out.Failure = &flasherv1.Failure{Code: string(t.Failure.Code), Component: t.Failure.Component, Message: t.Failure.Message}
	}
	return out
}

func firmwareToPB(f task.Firmware) *flasherv1.Firmware {
	return &flasherv1.Firmware{
		Component:   f.Component,
		Serial:      f.Serial,
		Vendor:      f.Vendor,
		Model:       f.Model,
		Version:     f.Version,
		Url:         f.URL,
		Checksum:    f.Checksum,
		FirmwareId:  f.FirmwareID,
		Force:       f.Force,
		Reinstall:   f.Reinstall,
		PreActions:  actionsToPB(f.PreActions),
		PostActions: actionsToPB(f.PostActions),
	}
}

func firmwareFromPB(f *flasherv1.Firmware) task.Firmware {
	checksum := f.GetChecksum()
	if sum, err := firmware.ParseChecksum(checksum); err == nil {
		checksum = sum.String() // upper-case hex copied from a vendor page is stored lower-case
	}
	return task.Firmware{
		Component:   f.GetComponent(),
		Serial:      f.GetSerial(),
		Vendor:      f.GetVendor(),
		Model:       f.GetModel(),
		Version:     f.GetVersion(),
		URL:         f.GetUrl(),
		Checksum:    checksum,
		FirmwareID:  f.GetFirmwareId(),
		Force:       f.GetForce(),
		Reinstall:   f.GetReinstall(),
		PreActions:  actionsFromPB(f.GetPreActions()),
		PostActions: actionsFromPB(f.GetPostActions()),
	}
}

func planToPB(p *task.Plan) *flasherv1.Plan {
	if p == nil {
		return nil
	}
	out := &flasherv1.Plan{FirmwareSet: p.FirmwareSet}
	now := time.Now()
	for _, s := range p.Steps {
		out.Steps = append(out.Steps, &flasherv1.PlanStep{
			Component:      s.Component,
			Serial:         s.Serial,
			Vendor:         s.Vendor,
			Model:          s.Model,
			FromVersion:    s.FromVersion,
			ToVersion:      s.ToVersion,
			FirmwareId:     s.FirmwareID,
			Filename:       s.Filename,
			Url:            s.URL,
			Checksum:       s.Checksum,
			Method:         methodToPB[s.Method],
			Force:          s.Force,
			Downgrade:      s.Downgrade,
			Reinstall:      s.Reinstall,
			Irreversible:   s.Irreversible,
			Uncatalogued:   s.Uncatalogued,
			Scheme:         s.Scheme,
			PreActions:     actionsToPB(s.PreActions),
			PostActions:    actionsToPB(s.PostActions),
			FromSource:     versionSourceToPB(s.FromSource),
			FromObservedAt: optionalTime(s.FromAt),
			FromAge:        ageToPB(now, s.FromAt),
			Path:           s.Path,
			Activation:     s.Activation,
		})
	}
	for _, s := range p.Skipped {
		out.Skipped = append(out.Skipped, &flasherv1.SkippedComponent{Component: s.Component, Serial: s.Serial, Version: s.Version, Reason: s.Reason,
			VersionSource: versionSourceToPB(s.VersionSource), VersionObservedAt: optionalTime(s.VersionAt), VersionAge: ageToPB(now, s.VersionAt)})
	}
	for _, s := range p.Snapshot {
		out.Snapshot = append(out.Snapshot, &flasherv1.InstalledComponent{Component: s.Component, Serial: s.Serial, Vendor: s.Vendor, Model: s.Model, Version: s.Version})
	}
	return out
}

// SpecFromPB converts a validated TaskSpec into a task that is not yet stored.
func SpecFromPB(spec *flasherv1.TaskSpec) task.Task {
	t := task.Task{
		ServerID: spec.GetServerId(),
		Method:   methodFromPB[spec.GetMethod()],
		Priority: int(spec.GetPriority()),
	}
	switch in := spec.GetInstall().(type) {
	case *flasherv1.TaskSpec_Firmware:
		t.Mode = task.ModeFirmware
		for _, f := range in.Firmware.GetItems() {
			t.Firmware = append(t.Firmware, firmwareFromPB(f))
		}
	case *flasherv1.TaskSpec_FirmwareSet:
		t.Mode = task.ModeFirmwareSet
		t.FirmwareSet = in.FirmwareSet.GetFirmwareSet()
		t.Force, t.Reinstall = in.FirmwareSet.GetForce(), in.FirmwareSet.GetReinstall()
	case *flasherv1.TaskSpec_Resolve:
		t.Mode = task.ModeResolve
		t.Force, t.Reinstall = in.Resolve.GetForce(), in.Resolve.GetReinstall()
	}
	return t
}

func filterFromPB(f *flasherv1.TaskFilter) store.Filter {
	out := store.Filter{
		ServerID:  f.GetServerId(),
		Method:    methodFromPB[f.GetMethod()],
		Requester: f.GetRequester(),
		RolloutID: f.GetRolloutId(),
	}
	for _, s := range f.GetStates() {
		out.States = append(out.States, stateFromPB[s])
	}
	return out
}

func eventToPB(e task.Event) *flasherv1.TaskEvent {
	return &flasherv1.TaskEvent{
		TaskId:    e.TaskID,
		Revision:  e.Revision,
		Time:      ts(e.Time),
		Kind:      string(e.Kind),
		FromState: stateToPB[e.From],
		ToState:   stateToPB[e.To],
		Message:   e.Message,
	}
}

// versionSourceToPB maps where a version was read; an empty source is a declaration.
func versionSourceToPB(s string) flasherv1.VersionSource {
	switch s {
	case "bmc":
		return flasherv1.VersionSource_VERSION_SOURCE_BMC
	case "agent":
		return flasherv1.VersionSource_VERSION_SOURCE_AGENT
	default:
		return flasherv1.VersionSource_VERSION_SOURCE_DECLARED
	}
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// ageToPB is how long before now a version was read; unset when the time is unknown.
func ageToPB(now, at time.Time) *durationpb.Duration {
	if at.IsZero() {
		return nil
	}
	return durationpb.New(max(0, now.Sub(at)))
}
