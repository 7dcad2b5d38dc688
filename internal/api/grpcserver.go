package api

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	grpcvalidate "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// ServerConfig configures the gRPC server every service is registered on.
type ServerConfig struct {
	Logger *slog.Logger
	// Registry receives the gRPC metrics; nil means none are recorded.
	Registry prometheus.Registerer
	// Audit records calls other than health and reflection. It runs outside Auth, so refused
	// calls are recorded too; nil records nothing.
	AuditUnary  grpc.UnaryServerInterceptor
	AuditStream grpc.StreamServerInterceptor
	// Auth authenticates and authorizes calls other than health and reflection; nil lets every
	// call through as auth.Anonymous.
	AuthUnary  grpc.UnaryServerInterceptor
	AuthStream grpc.StreamServerInterceptor
	// AgentIdentity runs after Auth on streams and establishes an agent's identity that Auth
	// left unset (the explicitly enabled header mode, InsecureAgentIdentity); nil: none.
	AgentIdentity grpc.StreamServerInterceptor
	// MaxRecvBytes bounds request messages (0 means 4 MiB).
	MaxRecvBytes int
	// MaxStreamsPerConn bounds concurrent calls and streams on one client connection, so one
	// client (an agent, a watcher) cannot hold unbounded server resources (0 means 1000).
	MaxStreamsPerConn uint32
	// Options are added to the server (TLS credentials, keepalive, ...).
	Options []grpc.ServerOption
	// TracerProvider, when set, gives every call a span (otelgrpc), a child of the caller's
	// when the request carries W3C trace context.
	TracerProvider trace.TracerProvider
}

// Server is a gRPC server with Flasher's interceptor chain, the health service and reflection.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// NewServer builds the gRPC server with Flasher's one interceptor chain: metrics → logging →
// audit → auth → agent identity (these three skip health and reflection) → validation →
// recovery, in that order. No other code adds interceptors.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRecvBytes <= 0 {
		cfg.MaxRecvBytes = 4 << 20
	}
	if cfg.MaxStreamsPerConn == 0 {
		cfg.MaxStreamsPerConn = 1000
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("protovalidate: %w", err)
	}
	log := cfg.Logger.With("part", "grpc")
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	panicHandler := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	open := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName &&
			c.Service != "grpc.reflection.v1.ServerReflection" &&
			c.Service != "grpc.reflection.v1alpha.ServerReflection"
	})

	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if cfg.Registry != nil {
		m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
		if err := cfg.Registry.Register(m); err != nil {
			return nil, fmt.Errorf("register grpc metrics: %w", err)
		}
		unary = append(unary, m.UnaryServerInterceptor())
		stream = append(stream, m.StreamServerInterceptor())
	}
	unary = append(unary, logging.UnaryServerInterceptor(logger, logOpts...))
	stream = append(stream, logging.StreamServerInterceptor(logger, logOpts...))
	for _, ic := range []grpc.UnaryServerInterceptor{cfg.AuditUnary, cfg.AuthUnary} {
		if ic != nil {
			unary = append(unary, selector.UnaryServerInterceptor(ic, open))
		}
	}
	for _, ic := range []grpc.StreamServerInterceptor{cfg.AuditStream, cfg.AuthStream, cfg.AgentIdentity} {
		if ic != nil {
			stream = append(stream, selector.StreamServerInterceptor(ic, open))
		}
	}
	unary = append(unary, fieldViolationsUnary, grpcvalidate.UnaryServerInterceptor(validator), recovery.UnaryServerInterceptor(panicHandler))
	stream = append(stream, fieldViolationsStream, grpcvalidate.StreamServerInterceptor(validator), recovery.StreamServerInterceptor(panicHandler))

	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.MaxConcurrentStreams(cfg.MaxStreamsPerConn),
		grpc.ForceServerCodecV2(newSharedCodec()),
		// Stop waits for handlers to return, so what they record (the audit of an agent's
		// disconnect) is written before the parts they write to close.
		grpc.WaitForHandlers(true),
	}, cfg.Options...)
	if cfg.TracerProvider != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(cfg.TracerProvider), otelgrpc.WithPropagators(propagation.TraceContext{}),
			// Health checks are polled: their spans would drown the calls worth reading.
			otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
				return !strings.HasPrefix(info.FullMethodName, "/"+healthpb.Health_ServiceDesc.ServiceName+"/")
			}))))
	}
	s := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return &Server{Server: s, Health: h}, nil
}

// RegisterService registers a service so that a unary request body that is not a valid
// protobuf message is InvalidArgument. grpc-go decodes it before any interceptor runs and
// answers Internal, which tells the caller the server failed when the caller did. (On streams
// grpc-go writes that status itself, before the handler can change it.)
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		h := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error {
				if err := dec(v); err != nil {
					return undecodable(err)
				}
				return nil
			}, ic)
		}
		d.Methods[i] = m
	}
	s.Server.RegisterService(&d, impl)
}

func undecodable(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Internal {
		return err
	}
	return badRequest("body", "not a valid protobuf message of the method's request type")
}

// fieldViolationsUnary adds google.rpc.BadRequest field violations to protovalidate's
// InvalidArgument errors, so generic clients (grpcurl, any language) see which field is wrong
// without knowing buf.validate's detail type.
func fieldViolationsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, withFieldViolations(err)
}

func fieldViolationsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return withFieldViolations(handler(srv, ss))
}

func withFieldViolations(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return err
	}
	var br errdetails.BadRequest
	for _, d := range st.Details() {
		vs, ok := d.(*validatepb.Violations)
		if !ok {
			continue
		}
		for _, v := range vs.GetViolations() {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field:       protovalidate.FieldPathString(v.GetField()),
				Description: v.GetMessage(),
				Reason:      v.GetRuleId(),
			})
		}
	}
	if len(br.FieldViolations) == 0 {
		return err
	}
	// Replace buf.validate's detail with the standard one: one detail type for every client.
	out, derr := status.New(codes.InvalidArgument, st.Message()).WithDetails(&br)
	if derr != nil {
		return err
	}
	return out.Err()
}
