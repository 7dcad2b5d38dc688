package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// Option changes how New builds a server. flasher-server uses none: options exist so tests and
// benchmarks build the same control plane, leaving a part out or putting a stand-in in its
// place, instead of wiring their own.
type Option func(*options)

type options struct {
	logger      *slog.Logger
	inventory   inventory.Source
	store       store.Store
	executors   map[task.Method]scheduler.Executor
	ownExecs    bool
	wrap        func(task.Method, scheduler.Executor) scheduler.Executor
	grpcLis     net.Listener
	services    []func(grpc.ServiceRegistrar)
	grpcOptions []grpc.ServerOption
	authUnary   grpc.UnaryServerInterceptor
	authStream  grpc.StreamServerInterceptor
	ownAuth     bool
	noAudit     bool
	clientAuth  *tls.ClientAuthType
	recheck     time.Duration
	watchBuffer int
	watchPoll   time.Duration
	oobPolicy   func(*outofband.Policy)
	clock       func() time.Time
	rolloutTick time.Duration
	tracer      trace.TracerProvider
}

// WithLogger sends the server's logs to l. The server still wraps it in the redacting handler
// (auth.RedactingHandler), so no secret-named attribute is written whatever l is.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithInventory uses src as the declared inventory instead of -inventory or -fleetdb-url.
func WithInventory(src inventory.Source) Option { return func(o *options) { o.inventory = src } }

// WithStore uses st (a PostgreSQL store shared by test replicas) instead of the store the
// Config names; the server closes it when it stops.
func WithStore(st store.Store) Option { return func(o *options) { o.store = st } }

// WithExecutors runs tasks with execs instead of the out-of-band executor and the in-band
// service the server would build; then no artifact cache and no AgentService are built
// either. An empty map keeps every task QUEUED.
func WithExecutors(execs map[task.Method]scheduler.Executor) Option {
	return func(o *options) { o.executors, o.ownExecs = execs, true }
}

// WrapExecutors passes each executor the server built through wrap before the scheduler gets
// it (benchmarks time or count executions this way).
func WrapExecutors(wrap func(task.Method, scheduler.Executor) scheduler.Executor) Option {
	return func(o *options) { o.wrap = wrap }
}

// WithGRPCListener serves gRPC on lis instead of listening on Config.GRPCListen.
func WithGRPCListener(lis net.Listener) Option { return func(o *options) { o.grpcLis = lis } }

// WithServices registers more services on the gRPC server (stand-ins for AgentService, ...).
func WithServices(register func(grpc.ServiceRegistrar)) Option {
	return func(o *options) { o.services = append(o.services, register) }
}

// WithGRPCOptions adds server options (transport buffers, credentials a test builds itself).
// Interceptors do not belong here: the chain is built in one place (api.NewServer).
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOptions = append(o.grpcOptions, opts...) }
}

// WithAuth fills the authentication slot of the interceptor chain with unary and stream
// instead of the token, JWT and agent-certificate authentication built from the Config.
func WithAuth(unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor) Option {
	return func(o *options) { o.authUnary, o.authStream, o.ownAuth = unary, stream, true }
}

// WithoutAudit leaves the audit trail out (benchmarks that measure the API without it).
func WithoutAudit() Option { return func(o *options) { o.noAudit = true } }

// WithClientAuth overrides how the TLS listener treats client certificates (the security
// suite checks that agent identity holds behind a permissive listener).
func WithClientAuth(a tls.ClientAuthType) Option { return func(o *options) { o.clientAuth = &a } }

// WithAgentRecheck sets how often an open agent stream's certificate is verified again.
func WithAgentRecheck(d time.Duration) Option { return func(o *options) { o.recheck = d } }

// WithWatchTuning sets each watcher's buffer and how often the hub polls the store (0 keeps
// the hub's default).
func WithWatchTuning(buffer int, poll time.Duration) Option {
	return func(o *options) { o.watchBuffer, o.watchPoll = buffer, poll }
}

// WithOutOfBandPolicy adjusts the out-of-band executor's bounds after the Config's are set.
func WithOutOfBandPolicy(adjust func(*outofband.Policy)) Option {
	return func(o *options) { o.oobPolicy = adjust }
}

// WithRolloutClock makes rollouts judge maintenance windows and deadlines by now instead of
// time.Now, and sets how often the runner steps every rollout without a store change (0 keeps
// the runner's default). Tests move the clock to open and close windows.
func WithRolloutClock(now func() time.Time, tick time.Duration) Option {
	return func(o *options) { o.clock, o.rolloutTick = now, tick }
}

// WithTracerProvider records the server's spans (calls, tasks, steps, BMC and agent calls) with
// tp instead of the OTLP exporter -otlp-endpoint names (tests pass an in-memory exporter's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tracer = tp } }
