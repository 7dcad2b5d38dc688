package api

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/audit"
)

// AuditQuerier is what AuditService needs of the audit log.
type AuditQuerier interface {
	Query(ctx context.Context, f audit.Filter) ([]audit.Event, error)
}

var _ AuditQuerier = (*audit.Log)(nil)

// AuditConfig configures an AuditService.
type AuditConfig struct {
	Trail  AuditQuerier
	Logger *slog.Logger
}

// AuditService serves the audit trail (flasher.v1.AuditService): it converts between the wire
// and internal/audit. Access is decided by the auth interceptor (scope audit:read), not here.
type AuditService struct {
	flasherv1.UnimplementedAuditServiceServer
	trail AuditQuerier
	log   *slog.Logger
}

// NewAuditService returns the service.
func NewAuditService(cfg AuditConfig) *AuditService {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &AuditService{trail: cfg.Trail, log: cfg.Logger.With("service", "audit")}
}

// Register adds the service to a gRPC server.
func (s *AuditService) Register(r grpc.ServiceRegistrar) {
	flasherv1.RegisterAuditServiceServer(r, s)
}

// auditTokenPrefix starts an audit page token: the next page holds events below its id.
const auditTokenPrefix = "before:"

// ListAuditEvents implements flasher.v1.AuditService.
func (s *AuditService) ListAuditEvents(ctx context.Context, req *flasherv1.ListAuditEventsRequest) (*flasherv1.ListAuditEventsResponse, error) {
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
		id, err := strconv.ParseInt(strings.TrimPrefix(t, auditTokenPrefix), 10, 64)
		if !strings.HasPrefix(t, auditTokenPrefix) || err != nil || id <= 0 {
			return nil, badRequest("page_token", "not a page token this server issued")
		}
		f.BeforeID = id
	}
	events, err := s.trail.Query(ctx, f)
	if err != nil {
		return nil, errorStatus(ctx, s.log, fmt.Errorf("audit query: %w", err))
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
		resp.NextPageToken = auditTokenPrefix + strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	return resp, nil
}
