package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// CreateTaskMethod is the full name of the call RateLimits usually names.
const CreateTaskMethod = "/flasher.v1.TaskService/CreateTask"

// TokenAuthenticator turns a static token into an identity (StaticTokens).
type TokenAuthenticator interface {
	Authenticate(token string) (Identity, error)
}

// Config configures the authentication and authorization interceptors.
type Config struct {
	// Tokens authenticates static "flt_" tokens; nil refuses them.
	Tokens TokenAuthenticator
	// JWT verifies OIDC tokens; nil refuses them.
	JWT *JWTVerifier
	// Agents verifies agent client certificates; nil refuses agents (unless InsecureAgents).
	Agents *AgentVerifier
	// InsecureAgents lets agent calls without a client certificate through with no identity,
	// for the explicitly enabled header-based agent mode that runs after this interceptor.
	// A presented certificate is still verified and must be valid.
	InsecureAgents bool
	// AgentRecheck is how often an open agent stream's certificate is verified again (expiry,
	// revocation); a failure ends the stream with Unauthenticated (0: 30s; negative: never).
	AgentRecheck time.Duration
	// Policy maps methods to rules (nil: DefaultPolicy).
	Policy Policy
	// RateLimits limits calls per identity, by full method name (see CallLimits).
	RateLimits map[string]RateLimit
	// Now is the clock of the rate limiters (nil: time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Authenticator is the authentication and authorization step of the interceptor chain.
type Authenticator struct {
	cfg    Config
	limits *CallLimits
	log    *slog.Logger
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Tokens == nil && cfg.JWT == nil && cfg.Agents == nil && !cfg.InsecureAgents {
		return nil, errors.New("auth: no token source and no agent verifier configured")
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AgentRecheck == 0 {
		cfg.AgentRecheck = 30 * time.Second
	}
	limits, err := NewCallLimits(cfg.RateLimits, cfg.Now)
	if err != nil {
		return nil, err
	}
	return &Authenticator{cfg: cfg, limits: limits, log: cfg.Logger.With("part", "auth")}, nil
}

// Unary is the unary server interceptor.
func (a *Authenticator) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream is the stream server interceptor.
func (a *Authenticator) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if FromContext(ctx).ServerID == "" || a.cfg.Agents == nil || a.cfg.AgentRecheck < 0 {
			return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
		}
		// Agent streams live for days; a certificate revoked or expired meanwhile must not
		// keep its stream. The handler sees its context cancelled and the caller gets the
		// verification error.
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		go a.recheck(ctx, cancel)
		err = handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
		if cause := context.Cause(ctx); cause != nil && status.Code(cause) == codes.Unauthenticated {
			return cause
		}
		return err
	}
}

func (a *Authenticator) recheck(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(a.cfg.AgentRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := a.cfg.Agents.AgentIdentity(ctx); err != nil {
				a.log.WarnContext(ctx, "agent stream ended: certificate no longer valid", "server", FromContext(ctx).ServerID, "error", err)
				cancel(err)
				return
			}
		}
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

// Authorize authenticates the caller of fullMethod, checks the method's rule and rate limit,
// and returns ctx carrying the caller's Identity. Errors are gRPC statuses.
func (a *Authenticator) Authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	rule := a.cfg.Policy.Rule(fullMethod)
	var id Identity
	if rule.Agent {
		if a.cfg.Agents == nil && !a.cfg.InsecureAgents {
			return ctx, status.Error(codes.Unauthenticated, "agent: client certificates are not configured on this server")
		}
		if a.cfg.InsecureAgents {
			if _, err := peerChain(ctx); err != nil || a.cfg.Agents == nil {
				return ctx, nil // the insecure header interceptor decides
			}
		}
		if rule.Bootstrap && a.cfg.Agents != nil {
			if _, err := peerChain(ctx); errors.Is(err, ErrNoClientCert) {
				return ctx, nil // the handler authenticates the join token
			}
		}
		serverID, err := a.cfg.Agents.AgentIdentity(ctx)
		if err != nil {
			a.log.WarnContext(ctx, "agent refused", "method", fullMethod, "error", err)
			return ctx, err
		}
		id = Identity{Name: "agent:" + serverID, ServerID: serverID, Scopes: []string{ScopeAgent}}
	} else {
		var err error
		if id, err = a.authenticateToken(ctx); err != nil {
			a.log.InfoContext(ctx, "call unauthenticated", "method", fullMethod, "error", err)
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		}
	}
	notify(ctx, id)
	ctx = WithIdentity(ctx, id)
	if !id.HasScope(rule.Scope) {
		a.log.InfoContext(ctx, "call denied", "method", fullMethod, "identity", id.Name, "missing_scope", rule.Scope)
		return ctx, status.Errorf(codes.PermissionDenied, "%s needs scope %q, which %q does not hold", fullMethod, rule.Scope, id.Name)
	}
	return ctx, a.limits.Check(ctx, fullMethod)
}

// authenticateToken reads the bearer token. Error texts are safe to return to the client:
// they never include the token.
func (a *Authenticator) authenticateToken(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return Identity{}, errors.New("missing bearer token in the authorization header")
	}
	if len(vals) > 1 {
		return Identity{}, errors.New("more than one authorization header")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return Identity{}, errors.New("authorization header is not \"Bearer <token>\"")
	}
	token = strings.TrimSpace(token)
	switch {
	case strings.HasPrefix(token, TokenPrefix):
		if a.cfg.Tokens == nil {
			return Identity{}, errors.New("static tokens are not accepted by this server")
		}
		return a.cfg.Tokens.Authenticate(token)
	case strings.Count(token, ".") == 2:
		if a.cfg.JWT == nil {
			return Identity{}, errors.New("JWTs are not accepted by this server")
		}
		return a.cfg.JWT.Verify(ctx, token)
	}
	return Identity{}, ErrInvalidToken
}

type observerKey struct{}

// WithObserver returns ctx in which the interceptors report the identity they establish to
// fn, even when the call is then refused (missing scope, rate limit). The audit log, which
// wraps authentication, uses it to record who was refused.
func WithObserver(ctx context.Context, fn func(Identity)) context.Context {
	return context.WithValue(ctx, observerKey{}, fn)
}

// Establish sets id as the caller's identity and tells the observer (the audit trail), for an
// identity established after this package's interceptor (the insecure agent header mode).
func Establish(ctx context.Context, id Identity) context.Context {
	notify(ctx, id)
	return WithIdentity(ctx, id)
}

func notify(ctx context.Context, id Identity) {
	if fn, ok := ctx.Value(observerKey{}).(func(Identity)); ok {
		fn(id)
	}
}

// ChainUnary composes interceptors into one (the first is outermost), for the single AuthUnary
// slot of the server's chain: audit around authentication.
func ChainUnary(ics ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		h := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, next := ics[i], h
			h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
		}
		return h(ctx, req)
	}
}

// ChainStream composes stream interceptors (the first is outermost).
func ChainStream(ics ...grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		h := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, next := ics[i], h
			h = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
		}
		return h(srv, ss)
	}
}
