package audit

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flasher-dev/flasher/internal/auth"
)

// Unary records mutating unary calls with their outcome. Install it OUTSIDE authentication
// (auth.ChainUnary(log.Unary(), authenticator.Unary())) so refused calls are recorded too,
// with the identity authentication established before refusing, if any.
func (l *Log) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !l.cfg.Mutating(info.FullMethod) {
			return handler(ctx, req)
		}
		var who auth.Identity
		ctx = auth.WithObserver(ctx, func(id auth.Identity) { who = id })
		resp, err := handler(ctx, req)
		e := Event{Action: info.FullMethod, Identity: who.Name}
		if e.Identity == "" {
			e.Identity = "unauthenticated"
		}
		e.ServerID, e.TaskID = targets(info.FullMethod, req, resp)
		st := status.Convert(err)
		e.Code, e.Message = st.Code().String(), short(st.Message())
		_ = l.Record(ctx, e)
		return resp, err
	}
}

// Stream records agent sessions (connect when the agent is authenticated, disconnect when the
// stream ends, refused connects) and mutating streaming calls.
func (l *Log) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		session := l.cfg.Sessions(info.FullMethod)
		if !session && !l.cfg.Mutating(info.FullMethod) {
			return handler(srv, ss)
		}
		var who auth.Identity
		ctx := auth.WithObserver(ss.Context(), func(id auth.Identity) {
			who = id
			if session {
				_ = l.Record(ss.Context(), Event{Action: ActionAgentConnect, Identity: id.Name, ServerID: id.ServerID})
			}
		})
		err := handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		st := status.Convert(err)
		e := Event{Action: info.FullMethod, Identity: who.Name, ServerID: who.ServerID, Code: st.Code().String(), Message: short(st.Message())}
		switch {
		case session && who.Name != "":
			e.Action = ActionAgentDisconnect
		case session:
			e.Action = ActionAgentConnect // refused before any identity was proven
		}
		if e.Identity == "" {
			e.Identity = "unauthenticated"
		}
		_ = l.Record(ss.Context(), e)
		return err
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// targets finds the server and task a call concerns in its request and response by field
// name (server_id, task_id, or the id of a Task), at the top level or one message down, so
// the trail needs no knowledge of each RPC's generated types.
func targets(method string, req, resp any) (serverID, taskID string) {
	taskCall := strings.Contains(method, "Task")
	for _, m := range []any{resp, req} {
		pm, ok := m.(proto.Message)
		if !ok || pm == nil {
			continue
		}
		r := pm.ProtoReflect()
		if !r.IsValid() {
			continue
		}
		s, t := find(r, 0, taskCall)
		if serverID == "" {
			serverID = s
		}
		if taskID == "" {
			taskID = t
		}
	}
	return serverID, taskID
}

func find(m protoreflect.Message, depth int, taskCall bool) (serverID, taskID string) {
	fields := m.Descriptor().Fields()
	str := func(name protoreflect.Name) string {
		f := fields.ByName(name)
		if f == nil || f.Kind() != protoreflect.StringKind || f.IsList() || f.IsMap() {
			return ""
		}
		return m.Get(f).String()
	}
	serverID = str("server_id")
	taskID = str("task_id")
	// A bare "id" names a task in the Task message and in task requests (CancelTaskRequest).
	if taskID == "" && (m.Descriptor().Name() == "Task" || (depth == 0 && taskCall)) {
		taskID = str("id")
	}
	if depth > 0 {
		return serverID, taskID
	}
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap() || !m.Has(f) {
			continue
		}
		s, t := find(m.Get(f).Message(), depth+1, taskCall)
		if serverID == "" {
			serverID = s
		}
		if taskID == "" {
			taskID = t
		}
	}
	return serverID, taskID
}
