package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
)

// tracerName names the spans this package starts (tasks and their steps).
const tracerName = "github.com/flasher-dev/flasher/internal/server"

// newTracerProvider returns the provider every span comes from: the one an option gave, an
// OTLP exporter when -otlp-endpoint is set, or none (spans are not recorded). stop flushes and
// ends the exporter.
func newTracerProvider(ctx context.Context, cfg Config, o *options) (tp trace.TracerProvider, stop func(context.Context) error, err error) {
	none := func(context.Context) error { return nil }
	switch {
	case o.tracer != nil:
		return o.tracer, none, nil
	case cfg.OTLPEndpoint == "":
		return noop.NewTracerProvider(), none, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.OTLPInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	// The exporter connects lazily: a collector that is down loses spans, never the server.
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter %s: %w", cfg.OTLPEndpoint, err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("flasher-server"), semconv.ServiceInstanceID(cfg.Worker))
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return sdk, sdk.Shutdown, nil
}

// tracedExecutor gives each execution of a task a span, in the trace of the call that created
// the task, and each component step a child span. The executor's BMC and agent calls are
// children of the task's span (they start from the context Execute gets).
type tracedExecutor struct {
	next   scheduler.Executor
	tracer trace.Tracer
}

// tracing reports whether tp records spans; nil when it does not, so no span is even started.
func tracing(tp trace.TracerProvider) trace.TracerProvider {
	if _, off := tp.(noop.TracerProvider); off {
		return nil
	}
	return tp
}

func traceExecutors(execs map[task.Method]scheduler.Executor, tp trace.TracerProvider) map[task.Method]scheduler.Executor {
	if tracing(tp) == nil || execs == nil {
		return execs
	}
	out := make(map[task.Method]scheduler.Executor, len(execs))
	for m, x := range execs {
		out[m] = tracedExecutor{next: x, tracer: tp.Tracer(tracerName)}
	}
	return out
}

func (x tracedExecutor) Execute(ctx context.Context, t *task.Task, r task.Reporter) (err error) {
	if parent := taskParent(t); parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, span := x.tracer.Start(ctx, "task "+string(t.Method), trace.WithAttributes(
		attribute.String("flasher.task.id", t.ID), attribute.String("flasher.server.id", t.ServerID),
		attribute.String("flasher.task.method", string(t.Method)), attribute.Bool("flasher.task.resumed", t.Revision > 0 && len(t.Progress) > 0)))
	steps := &tracedReporter{Reporter: r, ctx: ctx, tracer: x.tracer, open: map[string]trace.Span{}}
	defer func() {
		steps.endAll(err)
		switch f, cancelled, shutdown := taskEnd(err); {
		case shutdown:
			span.SetAttributes(attribute.String("flasher.task.outcome", "interrupted by shutdown"))
		case cancelled:
			span.SetAttributes(attribute.String("flasher.task.outcome", "cancelled"))
		case f != nil:
			span.SetAttributes(attribute.String("flasher.failure.code", string(f.Code)), attribute.String("flasher.failure.component", f.Component))
			span.SetStatus(codes.Error, string(f.Code)+": "+f.Message)
		default:
			span.SetAttributes(attribute.String("flasher.task.outcome", "succeeded"))
		}
		span.End()
	}()
	return x.next.Execute(ctx, t, steps)
}

// taskParent is the span that created t, when it was created with tracing on.
func taskParent(t *task.Task) trace.SpanContext {
	tid, err1 := trace.TraceIDFromHex(t.TraceID)
	sid, err2 := trace.SpanIDFromHex(t.TraceSpanID)
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

// taskEnd reads what Execute returned as the scheduler does.
func taskEnd(err error) (f *task.Failure, cancelled, shutdown bool) {
	f, ce, shutdown := scheduler.Outcome(err)
	return f, ce != nil, shutdown
}

// tracedReporter turns the progress an executor reports into one span per component step: a
// row that starts RUNNING a step opens its span, and the next step or the row's end closes it.
type tracedReporter struct {
	task.Reporter
	ctx    context.Context
	tracer trace.Tracer

	mu   sync.Mutex
	open map[string]trace.Span // component/serial → its running step
	step map[string]string
}

func (r *tracedReporter) Progress(ctx context.Context, p task.Progress) error {
	r.mu.Lock()
	key := p.Component + "\x00" + p.Serial
	if r.step == nil {
		r.step = map[string]string{}
	}
	if sp, ok := r.open[key]; ok && (r.step[key] != p.Step || p.State != task.StepRunning) {
		if p.State == task.StepFailed {
			sp.SetStatus(codes.Error, p.Message)
		}
		sp.End()
		delete(r.open, key)
	}
	if _, ok := r.open[key]; !ok && p.State == task.StepRunning && p.Step != "" {
		at := p.UpdatedAt
		if at.IsZero() {
			at = time.Now()
		}
		_, sp := r.tracer.Start(r.ctx, p.Step+" "+p.Component, trace.WithTimestamp(at), trace.WithAttributes(
			attribute.String("flasher.component", p.Component), attribute.String("flasher.component.serial", p.Serial),
			attribute.String("flasher.step", p.Step)))
		r.open[key], r.step[key] = sp, p.Step
	}
	if sp, ok := r.open[key]; ok && p.Message != "" {
		sp.AddEvent(p.Message, trace.WithAttributes(attribute.Int("flasher.percent", p.Percent), attribute.Int("flasher.attempt", p.Attempt)))
	}
	r.mu.Unlock()
	return r.Reporter.Progress(ctx, p)
}

// endAll ends the steps still open when the execution returned.
func (r *tracedReporter) endAll(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, sp := range r.open {
		if err != nil {
			sp.SetStatus(codes.Error, "the task ended during this step")
		}
		sp.End()
		delete(r.open, k)
	}
}
