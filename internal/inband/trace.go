package inband

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// startAgentSpan starts the span of one assignment to an agent on one stream: from the
// assignment sent to the agent's result or the stream's end. It is a child of the task's span
// and uses that span's tracer provider, so with tracing off nothing is recorded.
func startAgentSpan(ctx context.Context, sess *session) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/flasher-dev/flasher/internal/inband").Start(ctx, "agent assignment",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("flasher.server.id", sess.serverID), attribute.String("flasher.agent.version", sess.version)))
}

// endAgentSpan ends it with the outcome: a result, or why the stream or the task stopped.
func endAgentSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
