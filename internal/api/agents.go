package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/enroll"
	"github.com/flasher-dev/flasher/internal/inband"
)

// AgentServiceConfig puts AgentService together from its parts.
type AgentServiceConfig struct {
	// Agents serves Connect, FetchArtifact and ListAgents; nil leaves them unimplemented (a
	// server without executors).
	Agents *inband.Service
	// Enroll issues agent certificates; nil leaves Enroll unimplemented (no CA key on this
	// server).
	Enroll *enroll.Service
	// ChunkSize is the FetchArtifact chunk size (0 means 256 KiB).
	ChunkSize int
	Logger    *slog.Logger
}

// AgentService serves flasher.v1.AgentService: the host agents' streams, their image
// downloads, the listing of connected agents and enrollment. It converts the wire to
// internal/inband's messages and back; every rule about agents lives there (and in
// internal/enroll for certificates).
type AgentService struct {
	flasherv1.UnimplementedAgentServiceServer
	agents    *inband.Service
	enroll    *enroll.Service
	chunkSize int
	log       *slog.Logger
}

// NewAgentService returns the service.
func NewAgentService(cfg AgentServiceConfig) *AgentService {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 256 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &AgentService{agents: cfg.Agents, enroll: cfg.Enroll, chunkSize: cfg.ChunkSize, log: cfg.Logger.With("service", "agents")}
}

// Register adds the service to a gRPC server.
func (s *AgentService) Register(r grpc.ServiceRegistrar) {
	flasherv1.RegisterAgentServiceServer(r, s)
}

// errNoAgents answers the in-band calls of a server that runs no executors.
var errNoAgents = status.Error(codes.Unimplemented, "in-band updates need executors: this server runs without an inventory source")

// Connect serves one agent stream. The agent's server id comes from its connection
// (auth.FromContext), never from a message.
func (s *AgentService) Connect(stream flasherv1.AgentService_ConnectServer) error {
	if s.agents == nil {
		return errNoAgents
	}
	ctx := stream.Context()
	err := s.agents.Serve(auth.FromContext(ctx).ServerID, agentStream{stream})
	if errors.Is(err, context.Canceled) {
		// The agent went away (or the server is stopping): an ordinary end of a stream, not an
		// unknown error.
		return status.Error(codes.Canceled, "stream ended")
	}
	return errorStatus(ctx, s.log, err)
}

// FetchArtifact streams a cached image from the requested offset, in chunks. An agent may fetch
// only the images of tasks currently assigned to its own server.
func (s *AgentService) FetchArtifact(req *flasherv1.FetchArtifactRequest, stream flasherv1.AgentService_FetchArtifactServer) error {
	if s.agents == nil {
		return errNoAgents
	}
	ctx := stream.Context()
	serverID := auth.FromContext(ctx).ServerID
	if serverID == "" {
		return status.Error(codes.PermissionDenied, "the connection does not identify an agent's server")
	}
	sum, err := artifact.ParseChecksum(req.GetChecksum())
	if err != nil {
		return badRequest("checksum", err.Error())
	}
	checksum := sum.String()
	f, size, err := s.agents.OpenImage(serverID, checksum)
	if err != nil {
		return errorStatus(ctx, s.log, err)
	}
	defer f.Close()
	off := req.GetOffset()
	if off > size {
		return status.Errorf(codes.OutOfRange, "offset %d is beyond the image size %d", off, size)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return errorStatus(ctx, s.log, fmt.Errorf("image %s: seek: %w", checksum, err))
	}
	buf := make([]byte, s.chunkSize)
	first := true
	for {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 || first {
			resp := &flasherv1.FetchArtifactResponse{Offset: off, Data: buf[:n]}
			if first {
				resp.Size = size
				first = false
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return nil
		}
		if rerr != nil {
			return errorStatus(ctx, s.log, fmt.Errorf("image %s: read: %w", checksum, rerr))
		}
	}
}

// ListAgents lists the connected agents, ordered by server id.
func (s *AgentService) ListAgents(_ context.Context, req *flasherv1.ListAgentsRequest) (*flasherv1.ListAgentsResponse, error) {
	if s.agents == nil {
		return nil, errNoAgents
	}
	out := &flasherv1.ListAgentsResponse{}
	for _, a := range s.agents.Agents() {
		if req.GetServerId() != "" && a.ServerID != req.GetServerId() {
			continue
		}
		out.Agents = append(out.Agents, &flasherv1.ConnectedAgent{
			ServerId: a.ServerID, AgentVersion: a.AgentVersion, Hostname: a.Hostname,
			Vendor: a.Vendor, Model: a.Model, Serial: a.Serial, Components: int32(a.Components),
			ConnectTime: ts(a.ConnectedAt), LastSeenTime: ts(a.LastSeen), TaskIds: a.Tasks,
		})
	}
	return out, nil
}

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

// agentStream adapts a Connect stream to inband.Stream.
type agentStream struct {
	stream flasherv1.AgentService_ConnectServer
}

func (a agentStream) Context() context.Context { return a.stream.Context() }

func (a agentStream) Recv() (inband.Message, error) {
	m, err := a.stream.Recv()
	if err != nil {
		return nil, err
	}
	return agentMessageFromPB(m)
}

func (a agentStream) Welcome(serverID string, heartbeat time.Duration) error {
	return a.stream.Send(&flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Welcome{Welcome: &flasherv1.AgentWelcome{
		ServerId: serverID, HeartbeatIntervalMs: heartbeat.Milliseconds(),
	}}})
}

func (a agentStream) Assign(as inband.Assignment) error {
	return a.stream.Send(&flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Assign{Assign: assignmentToPB(as)}})
}

func (a agentStream) Cancel(taskID string) error {
	return a.stream.Send(&flasherv1.ConnectResponse{Msg: &flasherv1.ConnectResponse_Cancel{Cancel: &flasherv1.CancelAssignment{TaskId: taskID}}})
}
