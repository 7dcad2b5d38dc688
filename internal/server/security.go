package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/enroll"
	"github.com/flasher-dev/flasher/internal/store"
)

// security is the wired TLS, authentication, authorization and audit of one server.
type security struct {
	authUnary   grpc.UnaryServerInterceptor
	authStream  grpc.StreamServerInterceptor
	auditUnary  grpc.UnaryServerInterceptor
	auditStream grpc.StreamServerInterceptor
	options     []grpc.ServerOption
	// trail is nil when the audit trail is left out (WithoutAudit).
	trail *audit.Log
	close func() error
}

// newSecurity builds TLS (unless -insecure), the token and certificate authentication with
// per-method scopes and the audit trail. api.NewServer puts the audit interceptor outside
// authentication, so refused calls are recorded too. The trail goes to auditStore, or, when it
// is nil, to the SQLite file -audit-db.
func newSecurity(ctx context.Context, cfg Config, o *options, log *slog.Logger, auditStore audit.Store) (*security, error) {
	sec := &security{close: func() error { return nil }}
	var agents *auth.AgentVerifier
	if !cfg.Insecure {
		if cfg.TLSCert == "" || cfg.TLSKey == "" || cfg.CAFile == "" {
			return nil, errors.New("TLS is on by default: give -tls-cert, -tls-key and -ca-file " +
				"(`flasher-server ca init` and `ca issue-server` create them), or -insecure for plaintext on a trusted host")
		}
		tlsCfg, err := ca.ServerTLSConfig(ca.ServerTLS{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, ClientCAFile: cfg.CAFile})
		if err != nil {
			return nil, err
		}
		if o.clientAuth != nil {
			tlsCfg.ClientAuth = *o.clientAuth
		}
		sec.options = append(sec.options, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	if cfg.CAFile != "" {
		roots, err := ca.Pool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("agent CA: %w", err)
		}
		denyPath := cfg.DenyList
		if denyPath == "" {
			denyPath = filepath.Join(filepath.Dir(cfg.CAFile), ca.DenyListFile)
		}
		deny, err := ca.OpenDenyList(denyPath)
		if err != nil {
			return nil, fmt.Errorf("deny list: %w", err)
		}
		if agents, err = auth.NewAgentVerifier(auth.AgentVerifierConfig{Roots: roots, Revoked: deny}); err != nil {
			return nil, err
		}
	}
	var tokens auth.TokenAuthenticator
	if cfg.TokenFile != "" {
		st, err := auth.NewStaticTokens(cfg.TokenFile, nil)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		tokens = st
	}
	var jwt *auth.JWTVerifier
	if cfg.JWTIssuer != "" || cfg.JWKSURL != "" || cfg.JWKSFile != "" {
		keys, err := auth.NewJWKS(auth.JWKSConfig{URL: cfg.JWKSURL, File: cfg.JWKSFile})
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		if jwt, err = auth.NewJWTVerifier(auth.JWTConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Keys: keys}); err != nil {
			return nil, err
		}
	}

	if !o.noAudit {
		store := auditStore
		if store == nil {
			st, err := audit.OpenSQLite(ctx, cfg.AuditDB)
			if err != nil {
				return nil, fmt.Errorf("audit log %s: %w", cfg.AuditDB, err)
			}
			store = st
		}
		sec.close = store.Close
		var err error
		if sec.trail, err = audit.New(audit.Config{Store: store, Logger: log}); err != nil {
			store.Close()
			return nil, err
		}
		sec.auditUnary, sec.auditStream = sec.trail.Unary(), sec.trail.Stream()
	}
	if o.ownAuth {
		sec.authUnary, sec.authStream = o.authUnary, o.authStream
		return sec, nil
	}
	if tokens == nil && jwt == nil {
		if !cfg.Insecure {
			sec.close()
			return nil, errors.New("no client authentication: give -token-file (`flasher-server ca token` makes entries) or -jwt-issuer with -jwks-url/-jwks-file")
		}
		log.Warn("no client authentication (-token-file, -jwt-issuer): every caller is anonymous and may do anything; use only on a trusted host")
		// Without identities, -create-rate holds per connection.
		limits, err := auth.NewCallLimits(createLimits(cfg), nil)
		if err != nil {
			sec.close()
			return nil, err
		}
		sec.authUnary = limits.Unary()
		return sec, nil
	}
	authn, err := auth.New(auth.Config{
		Tokens: tokens, JWT: jwt, Agents: agents, InsecureAgents: cfg.AllowUnauthenticatedAgents, Logger: log,
		AgentRecheck: o.recheck,
		RateLimits:   createLimits(cfg),
	})
	if err != nil {
		sec.close()
		return nil, err
	}
	sec.authUnary, sec.authStream = authn.Unary(), authn.Stream()
	return sec, nil
}

// createLimits is -create-rate and -create-burst.
func createLimits(cfg Config) map[string]auth.RateLimit {
	return map[string]auth.RateLimit{auth.CreateTaskMethod: {PerSecond: cfg.CreateRate, Burst: cfg.CreateBurst}}
}

// newEnroller is AgentService.Enroll's issuer when -enroll-ca-dir is set: it needs the CA key,
// TLS (a join token never crosses plaintext) and a store that keeps join tokens.
func newEnroller(cfg Config, st store.Store, log *slog.Logger) (*enroll.Service, error) {
	if cfg.EnrollCADir == "" {
		return nil, nil
	}
	if cfg.Insecure {
		return nil, errors.New("-enroll-ca-dir needs TLS: join tokens never cross a plaintext connection")
	}
	enrollments, ok := st.(store.Enrollments)
	if !ok {
		return nil, fmt.Errorf("-enroll-ca-dir: the %T store keeps no join tokens", st)
	}
	authority, err := ca.Load(cfg.EnrollCADir)
	if err != nil {
		return nil, fmt.Errorf("-enroll-ca-dir: %w", err)
	}
	return enroll.New(enroll.Config{Store: enrollments, CA: authority, Validity: cfg.EnrollCertValidity, Logger: log})
}
