package inband

import (
	"context"
	"sort"

	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// ListAgents lists the connected agents, ordered by server id.
func (s *Service) ListAgents(_ context.Context, req *flasherv1.ListAgentsRequest) (*flasherv1.ListAgentsResponse, error) {
	agents := s.Agents()
	sort.Slice(agents, func(i, j int) bool { return agents[i].ServerID < agents[j].ServerID })
	out := &flasherv1.ListAgentsResponse{}
	for _, a := range agents {
		if req.GetServerId() != "" && a.ServerID != req.GetServerId() {
			continue
		}
		out.Agents = append(out.Agents, &flasherv1.ConnectedAgent{
			ServerId: a.ServerID, AgentVersion: a.AgentVersion, Hostname: a.Hostname,
			Vendor: a.Vendor, Model: a.Model, Serial: a.Serial, Components: int32(a.Components),
			ConnectTime: timestamppb.New(a.ConnectedAt), LastSeenTime: timestamppb.New(a.LastSeen),
			TaskIds: a.Tasks,
		})
	}
	return out, nil
}
