package inband

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
)

// ServerIDHeader is the request header InsecureAgentIdentity trusts.
const ServerIDHeader = "x-flasher-server-id"

// InsecureAgentIdentity returns a stream interceptor that takes an agent's server id from the
// x-flasher-server-id request header.
//
// INSECURE: ANY CLIENT THAT CAN REACH THE SERVER CAN CLAIM TO BE ANY SERVER'S AGENT, RECEIVE
// THAT SERVER'S TASKS AND DOWNLOAD ITS IMAGES. Install it only when the operator started the
// server with the explicit "allow unauthenticated agents" option, on a trusted network, until
// agents present mTLS client certificates bound to their server id. It applies to AgentService
// calls only, and never overrides an identity an earlier interceptor established.
func InsecureAgentIdentity() grpc.StreamServerInterceptor {
	prefix := "/" + flasherv1.AgentService_ServiceDesc.ServiceName + "/"
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, prefix) || auth.FromContext(ss.Context()).ServerID != "" {
			return handler(srv, ss)
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		vals := md.Get(ServerIDHeader)
		if len(vals) != 1 || vals[0] == "" || len(vals[0]) > 128 {
			return status.Errorf(codes.Unauthenticated, "insecure agent mode: send exactly one %s header", ServerIDHeader)
		}
		id := auth.Identity{Name: "agent:" + vals[0], ServerID: vals[0], Scopes: []string{"agent"}}
		return handler(srv, &identityStream{ServerStream: ss, ctx: auth.Establish(ss.Context(), id)})
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
