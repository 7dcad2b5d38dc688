// Package auditapi serves the audit trail over gRPC (flasher.v1.AuditService): it converts
// between the wire types and internal/audit, which knows nothing of generated code. Access is
// decided by the auth interceptor (scope audit:read), not here.
package auditapi

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
)

// Querier is what the service needs of the audit log.
type Querier interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Event, error)
}

var _ Querier = (*audit.Log)(nil)

// Config configures the service.
type Config struct {
	Log Querier
}

// Service implements flasher.v1.AuditService.
type Service struct {
	flasherv1.UnimplementedAuditServiceServer
	log Querier
}

// New returns the service.
func New(cfg Config) *Service { return &Service{log: cfg.Log} }

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { flasherv1.RegisterAuditServiceServer(r, s) }

const tokenPrefix = "before:"

// ListAuditEvents implements flasher.v1.AuditService.
func (s *Service) ListAuditEvents(ctx context.Context, req *flasherv1.ListAuditEventsRequest) (*flasherv1.ListAuditEventsResponse, error) {
	f := audit.Filter{
		Identity: req.GetIdentity(), Action: req.GetAction(), ServerID: req.GetServerId(), TaskID: req.GetTaskId(),
		Limit: int(req.GetPageSize()),
	}
	if req.GetSince() != nil {
		f.Since = req.GetSince().AsTime()
	}
	if req.GetUntil() != nil {
		f.Until = req.GetUntil().AsTime()
	}
	if t := req.GetPageToken(); t != "" {
		id, err := strconv.ParseInt(strings.TrimPrefix(t, tokenPrefix), 10, 64)
		if !strings.HasPrefix(t, tokenPrefix) || err != nil || id <= 0 {
			return nil, status.Error(codes.InvalidArgument, "page_token: not a token this service issued")
		}
		f.BeforeID = id
	}
	events, err := s.log.Query(ctx, f)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "audit query: %v", err)
	}
	resp := &flasherv1.ListAuditEventsResponse{Events: make([]*flasherv1.AuditEvent, len(events))}
	for i, e := range events {
		resp.Events[i] = &flasherv1.AuditEvent{
			Id: e.ID, Time: timestamppb.New(e.Time), Identity: e.Identity, Action: e.Action,
			ServerId: e.ServerID, TaskId: e.TaskID, Code: e.Code, Message: e.Message, Peer: e.Peer,
		}
	}
	// A full page may have more behind it; the next page starts below its oldest event.
	limit := f.Limit
	if limit <= 0 {
		limit = audit.DefaultLimit
	}
	if len(events) == limit && len(events) > 0 {
		resp.NextPageToken = tokenPrefix + strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	return resp, nil
}
