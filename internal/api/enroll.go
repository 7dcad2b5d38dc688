package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/enroll"
)

// Enroll implements AgentService.Enroll. With a join token the caller is whoever holds it;
// without one it must be an agent whose certificate the interceptor verified, renewing for its
// own server.
func (s *AgentService) Enroll(ctx context.Context, req *flasherv1.EnrollRequest) (*flasherv1.EnrollResponse, error) {
	if s.enroll == nil {
		return nil, status.Error(codes.Unimplemented, "enrollment is off on this server (start it with -enroll-ca-dir)")
	}
	var c *enroll.Certificate
	var err error
	if id := auth.FromContext(ctx); id.ServerID != "" {
		if req.GetJoinToken() != "" {
			return nil, badRequest("join_token", "a renewal made with an agent certificate carries no join token")
		}
		if req.GetServerId() != "" && req.GetServerId() != id.ServerID {
			return nil, status.Errorf(codes.PermissionDenied, "this certificate is for server %s and cannot renew one for %s", id.ServerID, req.GetServerId())
		}
		leaf, lerr := auth.PeerLeaf(ctx)
		if lerr != nil {
			return nil, status.Error(codes.Unauthenticated, "agent: renewal needs the client certificate")
		}
		c, err = s.enroll.Renew(ctx, id.ServerID, leaf, req.GetCsrPem())
	} else {
		if req.GetJoinToken() == "" {
			return nil, status.Error(codes.Unauthenticated, "enroll: give a join token, or renew with a valid agent certificate")
		}
		if req.GetServerId() == "" {
			return nil, badRequest("server_id", "required with a join token: the server this agent runs on")
		}
		// The audit trail names the token by its public id, never its secret.
		auth.Establish(ctx, auth.Identity{Name: "join-token:" + enroll.TokenID(req.GetJoinToken()), ServerID: req.GetServerId()})
		c, err = s.enroll.Enroll(ctx, req.GetJoinToken(), req.GetServerId(), req.GetCsrPem())
	}
	switch {
	case errors.Is(err, enroll.ErrTokenRefused):
		return nil, status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, enroll.ErrAgentRevoked):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, enroll.ErrInvalidRequest):
		return nil, badRequest("csr_pem", err.Error())
	case err != nil:
		return nil, errorStatus(ctx, s.log, err)
	}
	return &flasherv1.EnrollResponse{
		CertificatePem: c.CertPEM, CaPem: c.CAPEM, Serial: c.Serial,
		NotAfter: timestamppb.New(c.NotAfter), ServerId: c.ServerID,
	}, nil
}
