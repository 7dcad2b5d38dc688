package outofband

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/constants"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/bmc-toolbox/bmclib/v2/providers/openbmc"
	bmcredfish "github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/bmc-toolbox/bmclib/v2/providers/supermicro"
	"github.com/bmc-toolbox/common"
	"github.com/cenkalti/backoff/v5"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"
	"github.com/stmcginnis/gofish"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/task"
)

// Sessions opens BMC sessions. It keeps at most one holder per BMC address (Lock) and
// remembers which bmclib provider each BMC answered to, so later logins try only that one.
// It is safe for concurrent use.
type Sessions struct {
	log   *slog.Logger
	calls CallObserver

	mu     sync.Mutex
	locks  map[string]*bmcLock
	pinned map[string]string                          // BMC key → provider name
	steps  map[string][]constants.FirmwareInstallStep // provider|component → bmclib's steps
}

type bmcLock struct {
	ch   chan struct{}
	refs int
}

// NewSessions returns an empty session layer.
func NewSessions(log *slog.Logger) *Sessions {
	if log == nil {
		log = slog.Default()
	}
	return &Sessions{log: log, locks: map[string]*bmcLock{}, pinned: map[string]string{}, steps: map[string][]constants.FirmwareInstallStep{}}
}

// Lock waits until no one else holds the BMC at key, or ctx ends. The returned func releases it.
func (s *Sessions) Lock(ctx context.Context, key string) (func(), error) {
	s.mu.Lock()
	l := s.locks[key]
	if l == nil {
		l = &bmcLock{ch: make(chan struct{}, 1)}
		s.locks[key] = l
	}
	l.refs++
	s.mu.Unlock()
	unref := func() {
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-l.ch; unref() }) }, nil
	case <-ctx.Done():
		unref()
		return nil, ctx.Err()
	}
}

// Pinned returns the provider a BMC answered to last, or "".
func (s *Sessions) Pinned(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinned[key]
}

func (s *Sessions) pin(key, provider string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if provider == "" {
		delete(s.pinned, key)
		return
	}
	s.pinned[key] = provider
}

// Target is where a BMC listens and how its certificate is checked.
type Target struct {
	Scheme, Host, Port string
	// Vendor is the server's vendor, as the inventory names it: it picks the bmclib providers
	// tried, and labels the BMC's calls in traces and failed-call counts.
	Vendor string
	// Path is how firmware reaches the BMC: task.PathBMCLib (bmclib providers, detected at
	// login) or task.PathRedfishUpdate (bmclib's generic Redfish provider for power, inventory
	// and resets; firmware through the standard UpdateService).
	Path string
	bmc  inventory.BMC
}

// TargetFor returns the BMC target of a server, with its update path (plan.UpdatePath).
func TargetFor(srv *inventory.Server) (Target, error) {
	t, err := ParseTarget(srv.BMC)
	if err != nil {
		return t, err
	}
	t.Vendor, t.Path = srv.Vendor, plan.UpdatePath(srv)
	return t, nil
}

// Key identifies the BMC for locking and pinning.
func (t Target) Key() string { return net.JoinHostPort(t.Host, t.Port) }

// ParseTarget reads an inventory BMC address: host, host:port, or a URL with http/https.
func ParseTarget(b inventory.BMC) (Target, error) {
	addr := strings.TrimSpace(b.Address)
	if addr == "" {
		return Target{}, errors.New("no BMC address")
	}
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Hostname() == "" {
		return Target{}, fmt.Errorf("BMC address %q is not host, host:port or a URL", b.Address)
	}
	t := Target{Scheme: u.Scheme, Host: u.Hostname(), Port: u.Port(), bmc: b}
	if t.Scheme != "http" && t.Scheme != "https" {
		return Target{}, fmt.Errorf("BMC address %q: scheme %q is not http or https", b.Address, t.Scheme)
	}
	if t.Port == "" {
		t.Port = "443"
		if t.Scheme == "http" {
			t.Port = "80"
		}
	}
	return t, nil
}

// CredentialsFunc fetches a BMC's credentials; it is called for every login and its result is
// kept only inside the bmclib client of that login.
type CredentialsFunc func(ctx context.Context) (inventory.Credentials, error)

// Session is an open bmclib client to one BMC. Its methods are not safe for concurrent use:
// one executor drives one session. Every call runs under Flasher's own deadline; a call that
// misses it is abandoned and the next call logs in again with a fresh client.
type Session struct {
	s        *Sessions
	target   Target
	creds    CredentialsFunc
	to       Timeouts
	log      *slog.Logger
	onRetry  func(attempt int, err error)
	held     func() error // task.HoldCheck of the context the session was opened with
	client   *bmclib.Client
	clients  []*http.Client
	provider string
	// rf reads what bmclib does not offer (job queue, one job); see redfishClient.
	rf      *gofish.APIClient
	rfHTTP  *http.Client
	members map[string]string // collection → its one member (Systems, Managers)
}

// Open logs in to the BMC at t, retrying transient failures with jittered backoff. onRetry
// (optional) is told about each failed attempt before the next, so retries are visible.
func (s *Sessions) Open(ctx context.Context, t Target, creds CredentialsFunc, to Timeouts, onRetry func(int, error)) (*Session, error) {
	ss := &Session{s: s, target: t, creds: creds, to: to, log: s.log.With("bmc", t.Key()), onRetry: onRetry, held: task.HoldCheck(ctx)}
	if err := ss.connect(ctx); err != nil {
		return nil, err
	}
	return ss, nil
}

// Provider is the bmclib provider this session talks through ("dell", "openbmc").
func (ss *Session) Provider() string { return ss.provider }

// Target returns the BMC the session is for.
func (ss *Session) Target() Target { return ss.target }

// connect logs in, retrying what a retry can fix.
func (ss *Session) connect(ctx context.Context) error {
	ss.drop()
	var last error
	wait := newBackoff(ss.to)
	for attempt := 1; attempt <= ss.to.LoginAttempts; attempt++ {
		if attempt > 1 {
			if ss.onRetry != nil {
				ss.onRetry(attempt, last)
			}
			if err := sleep(ctx, wait.NextBackOff()); err != nil {
				return err
			}
		}
		err := ss.openOnce(ctx)
		if err == nil {
			return nil
		}
		last = err
		switch c := classify(err); c {
		case classAuth, classTLS:
			// Retries cannot fix either, and repeated bad logins lock accounts.
			return &connectError{class: c, attempts: attempt, err: err}
		case classShutdown:
			return err
		}
		ss.log.Warn("BMC login failed", "attempt", attempt, "err", err)
	}
	return &connectError{class: classify(last), attempts: ss.to.LoginAttempts, err: last}
}

// connectError is a login that failed after its attempts.
type connectError struct {
	class    errClass
	attempts int
	err      error
}

func (e *connectError) Error() string {
	return fmt.Sprintf("login failed after %d attempt(s): %v", e.attempts, e.err)
}

func (e *connectError) Unwrap() error { return e.err }

// code is the failure code of a failed login.
func (e *connectError) code() task.Code {
	if httpStatus(e.err) == 503 {
		return task.CodeBMCBusy // busy (one update at a time, sessions exhausted), not refused
	}
	switch e.class {
	case classTLS:
		return task.CodeBMCTLSFailed
	case classAuth, classStatus:
		return task.CodeLoginFailed
	case classTimeout:
		return task.CodeTimeout
	case classUnreachable:
		return task.CodeBMCUnreachable
	}
	if strings.Contains(strings.ToLower(e.err.Error()), "not an openbmc") || strings.Contains(e.err.Error(), "incompatible") {
		return task.CodeUnsupported
	}
	return task.CodeBMCUnreachable
}

func (ss *Session) openOnce(ctx context.Context) error {
	creds, err := ss.creds(ctx)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	names := providersFor(ss.target.Vendor)
	redfishPath := ss.target.Path == task.PathRedfishUpdate
	if redfishPath {
		// No bmclib provider flashes this BMC: its generic Redfish provider serves power,
		// inventory and resets. It answers any Redfish BMC, so it is never auto-detected.
		names = []string{bmcredfish.ProviderName}
	} else if p := ss.s.Pinned(ss.target.Key()); p != "" && p != bmcredfish.ProviderName {
		names = []string{p}
	}
	reg := registrar.NewRegistry()
	var clients []*http.Client
	base := ss.target.Scheme + "://" + ss.target.Host
	for _, name := range names {
		hc, err := ss.target.httpClient(ss.held)
		if err != nil {
			return err
		}
		clients = append(clients, hc)
		switch name {
		case dell.ProviderName:
			drv := dell.New(base, creds.Username, creds.Password, logr.Discard(), dell.WithPort(ss.target.Port), dell.WithHttpClient(hc))
			reg.Register(dell.ProviderName, dell.ProviderProtocol, dell.Features, nil, drv)
		case openbmc.ProviderName:
			// openbmc's device check GETs the bare host, so the port goes into the host URL.
			drv := openbmc.New(base+":"+ss.target.Port, creds.Username, creds.Password, logr.Discard(), openbmc.WithPort(""), openbmc.WithHttpClient(hc))
			reg.Register(openbmc.ProviderName, openbmc.ProviderProtocol, openbmc.Features, nil, drv)
		case supermicro.ProviderName:
			if err := ss.stillHeld(); err != nil {
				closeIdle(clients)
				return err
			}
			if err := ss.target.checkTLS(ctx, ss.to.Connect); err != nil {
				closeIdle(clients)
				return err
			}
			opts := []supermicro.Option{supermicro.WithPort(ss.target.Port)}
			if ss.target.Scheme == "https" && !ss.target.bmc.InsecureSkipVerify && ss.target.bmc.Fingerprint == "" && ss.target.bmc.CAFile == "" {
				opts = append(opts, supermicro.WithSecureTLS(nil))
			}
			drv := supermicro.NewClient(base, creds.Username, creds.Password, logr.Discard(), opts...)
			reg.Register(supermicro.ProviderName, supermicro.ProviderProtocol, supermicro.Features, nil, drv)
		case bmcredfish.ProviderName:
			drv := bmcredfish.New(base, creds.Username, creds.Password, logr.Discard(), bmcredfish.WithPort(ss.target.Port), bmcredfish.WithHttpClient(hc))
			reg.Register(bmcredfish.ProviderName, bmcredfish.ProviderProtocol, bmcredfish.Features, nil, drv)
		}
	}
	// The per-provider timeout becomes each provider's HTTP client timeout at Open: it bounds
	// every later request of this client (uploads set their own).
	c := bmclib.NewClient(ss.target.Host, creds.Username, creds.Password,
		bmclib.WithRegistry(reg), bmclib.WithPerProviderTimeout(ss.to.Connect), bmclib.WithLogger(logr.Discard()))
	_, err = within(ctx, ss, "login", ss.to.Connect+ss.to.Connect/4, func(cctx context.Context) (struct{}, error) {
		return struct{}{}, c.Open(cctx)
	})
	if err != nil {
		closeIdle(clients)
		if ss.s.Pinned(ss.target.Key()) != "" && classify(err) == classOther {
			// The BMC may have been replaced by another kind; detect again next time.
			ss.s.pin(ss.target.Key(), "")
		}
		return err
	}
	md := c.GetMetadata()
	provider := ""
	if len(md.SuccessfulOpenConns) > 0 {
		provider = md.SuccessfulOpenConns[0]
	}
	if !redfishPath {
		ss.s.pin(ss.target.Key(), provider)
	}
	ss.client, ss.clients, ss.provider = c, clients, provider
	return nil
}

// drop forgets the current client, logging it out in the background (bounded by its own HTTP
// timeout) so an abandoned call cannot delay the executor.
func (ss *Session) drop() {
	ss.dropRedfish()
	if ss.client == nil {
		return
	}
	c, clients := ss.client, ss.clients
	ss.client, ss.clients = nil, nil
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ss.stillHeld() == nil {
			_ = c.Close(ctx)
		}
		closeIdle(clients)
	}()
}

func closeIdle(clients []*http.Client) {
	for _, hc := range clients {
		hc.CloseIdleConnections()
	}
}

// Close logs out.
func (ss *Session) Close() { ss.drop() }

// ensure logs in again when the last call was abandoned or the BMC rebooted.
func (ss *Session) ensure(ctx context.Context) error {
	if ss.client != nil {
		return nil
	}
	return ss.connect(ctx)
}

// do runs one bmclib call under deadline d. A call that fails for a reason a new login could
// fix (deadline, connection lost, 401 after a BMC reboot) drops the client.
//
// A 401 on a session opened earlier (the BMC rebooted and forgot it) logs in again and repeats
// the call once: the BMC refused it, so repeating cannot do anything twice.
func do[T any](ctx context.Context, ss *Session, op string, d time.Duration, f func(context.Context, *bmclib.Client) (T, error)) (T, error) {
	var zero T
	for try := 1; ; try++ {
		fresh := ss.client == nil
		if err := ss.ensure(ctx); err != nil {
			return zero, err
		}
		if err := ss.stillHeld(); err != nil {
			return zero, err
		}
		c := ss.client
		v, err := within(ctx, ss, op, d, func(cctx context.Context) (T, error) { return f(cctx, c) })
		if err != nil {
			switch classify(err) {
			case classTimeout, classUnreachable:
				ss.drop()
			case classAuth:
				ss.drop()
				if !fresh && try == 1 {
					continue
				}
			}
		}
		return v, err
	}
}

// PowerState returns the host power state as the BMC says it ("On", "Off").
func (ss *Session) PowerState(ctx context.Context) (string, error) {
	return do(ctx, ss, "get power state", ss.to.Call, func(c context.Context, cl *bmclib.Client) (string, error) {
		return cl.GetPowerState(c)
	})
}

// SetPower asks for a power state: on, off, cycle.
func (ss *Session) SetPower(ctx context.Context, state string) error {
	_, err := do(ctx, ss, "set power "+state, ss.to.Call, func(c context.Context, cl *bmclib.Client) (bool, error) {
		return cl.SetPowerState(c, state)
	})
	return err
}

// Inventory reads the BMC's inventory.
func (ss *Session) Inventory(ctx context.Context) (*common.Device, error) {
	dev, err := do(ctx, ss, "inventory", ss.to.Inventory, func(c context.Context, cl *bmclib.Client) (*common.Device, error) {
		return cl.Inventory(c)
	})
	if err == nil && (dev == nil || dev.BMC == nil || dev.BMC.Firmware == nil || dev.BMC.Firmware.Installed == "") {
		// bmclib swallows the errors of the requests behind an inventory: a session the BMC
		// forgot (it rebooted) reads as an empty device. Log in again next time.
		ss.drop()
		return nil, errEmptyInventory
	}
	return dev, err
}

// errEmptyInventory is an inventory without even the BMC's own firmware version.
var errEmptyInventory = errors.New("the BMC returned an empty inventory (session lost or Redfish errors)")

// InstallSteps returns the install steps the BMC lists for a component. bmclib's lists are
// constants of each provider's code, chosen by component alone (dell: one list; openbmc: per
// component), so each provider is asked once per component and the answer is remembered for
// every BMC it serves; the vendor check bmclib runs first already passed at login. Failures
// are not remembered.
func (ss *Session) InstallSteps(ctx context.Context, component string) ([]constants.FirmwareInstallStep, error) {
	key := ss.provider + "|" + strings.ToUpper(component)
	ss.s.mu.Lock()
	steps, ok := ss.s.steps[key]
	ss.s.mu.Unlock()
	if ok {
		return steps, nil
	}
	steps, err := do(ctx, ss, "firmware install steps", ss.to.Call, func(c context.Context, cl *bmclib.Client) ([]constants.FirmwareInstallStep, error) {
		return cl.FirmwareInstallSteps(c, component)
	})
	if err == nil && ss.provider != supermicro.ProviderName { // X11 and X12 list different steps
		ss.s.mu.Lock()
		ss.s.steps[key] = steps
		ss.s.mu.Unlock()
	}
	return steps, err
}

// TaskStatus polls a firmware job.
func (ss *Session) TaskStatus(ctx context.Context, component, jobID string) (constants.TaskState, string, error) {
	type res struct {
		state  constants.TaskState
		status string
	}
	r, err := do(ctx, ss, "firmware task status", ss.to.Call, func(c context.Context, cl *bmclib.Client) (res, error) {
		st, msg, err := cl.FirmwareTaskStatus(c, constants.FirmwareInstallStepInstallStatus, component, jobID, "")
		return res{st, msg}, err
	})
	return r.state, r.status, err
}

// ResetBMC restarts the BMC gracefully. The session is dropped: the BMC forgets it.
func (ss *Session) ResetBMC(ctx context.Context) error {
	_, err := do(ctx, ss, "reset BMC", ss.to.Call, func(c context.Context, cl *bmclib.Client) (bool, error) {
		return cl.ResetBMC(c, "GracefulRestart")
	})
	if err == nil {
		ss.drop()
	}
	return err
}

// uploadLibDeadline is what bmclib demands before it uploads (it refuses with less than ten
// minutes left); Flasher's own deadline (Timeouts.Upload) is enforced separately.
const uploadLibDeadline = 11 * time.Minute

// Upload uploads an image and starts its install, returning the BMC's job id. It is not
// interrupted by ctx: an upload is either refused, finished or abandoned at Flasher's deadline,
// never cut half way by a shutdown. done is called once the upload call really returned (also
// when it was abandoned), so the caller can release the image then.
func (ss *Session) Upload(ctx context.Context, component string, f *os.File, done func()) (string, error) {
	return ss.upload(ctx, component, f, done, (*bmclib.Client).FirmwareInstallUploadAndInitiate)
}

func (ss *Session) upload(ctx context.Context, component string, f *os.File, done func(), send func(*bmclib.Client, context.Context, string, *os.File) (string, error)) (string, error) {
	if err := ss.ensure(ctx); err != nil {
		done()
		return "", err
	}
	if err := ss.stillHeld(); err != nil {
		done()
		return "", err
	}
	c := ss.client
	lib := max(uploadLibDeadline, ss.to.Upload+time.Minute)
	id, err := within(context.WithoutCancel(ctx), ss, "upload", ss.to.Upload, func(context.Context) (string, error) {
		defer done()
		lctx, cancel := context.WithTimeout(context.Background(), lib)
		defer cancel()
		return send(c, lctx, component, f)
	})
	if err != nil {
		switch classify(err) {
		case classTimeout, classUnreachable, classAuth:
			ss.drop()
		}
	}
	return id, err
}

// within runs f in its own goroutine and returns when f returns, when d passes or when ctx ends,
// whichever comes first. bmclib's HTTP requests ignore ctx and stop only at their client's
// timeout, so a call that outlives d is abandoned: its goroutine ends at that timeout.
//
// Each call is a span (a child of the task's step when tracing is on) and a failed one is told
// to the session layer's CallObserver.
func within[T any](ctx context.Context, ss *Session, op string, d time.Duration, f func(context.Context) (T, error)) (v T, err error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	ctx, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, "BMC "+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("bmc.address", ss.target.Key()), attribute.String("server.vendor", ss.target.Vendor)))
	defer func() {
		if err != nil {
			kind := classify(err)
			span.SetStatus(codes.Error, kind.String())
			span.SetAttributes(attribute.String("bmc.error_kind", kind.String()))
			if kind != classShutdown && ss.s.calls != nil {
				ss.s.calls.BMCCallFailed(ss.target.Vendor, op, kind.String())
			}
		}
		span.End()
	}()
	cctx, cancel := context.WithTimeout(ctx, d)
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := f(cctx)
		ch <- res{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-ch:
		cancel()
		return r.v, r.err
	case <-timer.C:
		cancel()
		return zero, &deadlineError{op: op, d: d}
	case <-ctx.Done():
		cancel()
		return zero, ctx.Err()
	}
}

// newBackoff returns the jittered exponential waits between retries: from to.Backoff, doubling
// up to to.MaxBackoff, each ±50% at random so retries of many tasks do not synchronise.
func newBackoff(to Timeouts) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: to.Backoff, Multiplier: 2,
		RandomizationFactor: 0.5, MaxInterval: to.MaxBackoff}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dialable reports whether the BMC accepts TCP connections now.
func dialable(t Target) bool {
	c, err := net.DialTimeout("tcp", t.Key(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
