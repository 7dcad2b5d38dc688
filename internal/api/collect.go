package api

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/task"
)

// CollectInventory streams each selected server's collect: waiting, running, then its outcome.
func (s *InventoryService) CollectInventory(req *flasherv1.CollectInventoryRequest, stream flasherv1.InventoryService_CollectInventoryServer) error {
	ctx := stream.Context()
	if s.cfg.Collector == nil {
		return status.Error(codes.Unimplemented, "collect needs executors: this server runs without an inventory source")
	}
	m := task.MethodOutOfBand
	if req.GetMethod() != flasherv1.Method_METHOD_UNSPECIFIED {
		m = methodFromPB[req.GetMethod()]
		if m == "" {
			return badRequest("method", "unknown method")
		}
	}
	var sendErr error
	_, err := s.cfg.Collector.Collect(ctx, fleet.CollectRequest{
		Selector: selectorFromPB(req.GetSelector()), Method: m, Concurrency: int(req.GetConcurrency()),
	}, func(ev fleet.CollectEvent) {
		if sendErr == nil {
			sendErr = stream.Send(collectEventToPB(ev))
		}
	})
	if err != nil {
		return errorStatus(ctx, s.log, err)
	}
	return sendErr
}

var collectStateToPB = map[fleet.CollectState]flasherv1.CollectState{
	fleet.CollectWaiting:   flasherv1.CollectState_COLLECT_STATE_WAITING,
	fleet.CollectRunning:   flasherv1.CollectState_COLLECT_STATE_RUNNING,
	fleet.CollectSucceeded: flasherv1.CollectState_COLLECT_STATE_SUCCEEDED,
	fleet.CollectFailed:    flasherv1.CollectState_COLLECT_STATE_FAILED,
}

func collectEventToPB(ev fleet.CollectEvent) *flasherv1.CollectInventoryResponse {
	out := &flasherv1.CollectInventoryResponse{
		CollectId: ev.CollectID, ServerId: ev.ServerID, Method: methodToPB[ev.Method], State: collectStateToPB[ev.State],
		Message: ev.Message, FailureCode: ev.Code, Joined: ev.Joined, Time: timestamppb.New(ev.Time),
	}
	for _, c := range ev.Components {
		out.Components = append(out.Components, &flasherv1.Component{
			Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version, InBand: c.InBand, OutOfBand: c.OutOfBand,
			VersionSource: versionSourceToPB(c.VersionSource), VersionObservedAt: optionalTime(c.VersionAt),
		})
	}
	for _, d := range ev.Drift {
		out.Drift = append(out.Drift, &flasherv1.ComponentDrift{Component: d.Component, Serial: d.Serial, FromVersion: d.From,
			FromSource: versionSourceToPB(d.FromSource), ToVersion: d.To})
	}
	return out
}
