package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth/ca"
)

// EnrollConfig says where an agent keeps its certificate and how it gets one.
type EnrollConfig struct {
	// Server is the server's address; CAFile the Flasher CA its certificate chains to.
	Server, CAFile string
	// CertFile and KeyFile are where the agent's certificate and key live (key mode 0600).
	CertFile, KeyFile string
	// ServerID is the server this agent runs on, named in its enrollment.
	ServerID string
	// JoinTokenFile holds the join token for a first enrollment (a mounted Secret). It is read
	// only when needed, and never logged.
	JoinTokenFile string
	// Now is the clock (nil: time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Enroller gets the agent its certificate with a join token when it has none (or it
// expired), and renews it over the agent's own connection before it expires.
type Enroller struct {
	cfg EnrollConfig
	log *slog.Logger
}

// NewEnroller returns an Enroller.
func NewEnroller(cfg EnrollConfig) (*Enroller, error) {
	if cfg.Server == "" || cfg.CAFile == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("agent enroll: server, CA file, certificate and key files are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Enroller{cfg: cfg, log: cfg.Logger.With("part", "enroll")}, nil
}

// current returns the certificate on disk, or nil when there is none or it does not parse.
func (e *Enroller) current() *x509.Certificate {
	b, err := os.ReadFile(e.cfg.CertFile)
	if err != nil {
		return nil
	}
	c, err := ca.ParseCertPEM(b)
	if err != nil {
		return nil
	}
	return c
}

// RenewAt is when a certificate is renewed: after two thirds of its life, so a renewal that
// fails has the last third to be retried in.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// Ensure makes sure a usable certificate is on disk before the agent dials with it: it
// enrolls with the join token when there is none, or the one there expired or is not yet
// valid. A certificate past its renewal time but still valid is left to RenewLoop.
func (e *Enroller) Ensure(ctx context.Context) error {
	now := e.cfg.Now()
	if c := e.current(); c != nil && now.After(c.NotBefore) && now.Before(c.NotAfter) {
		if _, err := os.Stat(e.cfg.KeyFile); err == nil {
			return nil
		}
	}
	return e.Enroll(ctx)
}

// Enroll enrolls with the join token over a TLS connection that presents no certificate.
func (e *Enroller) Enroll(ctx context.Context) error {
	if e.cfg.JoinTokenFile == "" {
		return errors.New("agent enroll: no valid certificate at " + e.cfg.CertFile + " and no join token file to enroll with")
	}
	if e.cfg.ServerID == "" {
		return errors.New("agent enroll: a join token enrollment needs the server id (-server-id)")
	}
	b, err := os.ReadFile(e.cfg.JoinTokenFile)
	if err != nil {
		return fmt.Errorf("agent enroll: join token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	tlsCfg, err := ca.ClientTLSConfig(e.cfg.CAFile, "")
	if err != nil {
		return fmt.Errorf("agent enroll: %w", err)
	}
	conn, err := grpc.NewClient(e.cfg.Server, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return fmt.Errorf("agent enroll: server %s: %w", e.cfg.Server, err)
	}
	defer conn.Close()
	if err := e.request(ctx, conn, token, e.cfg.ServerID); err != nil {
		return err
	}
	e.log.Info("enrolled with a join token", "server_id", e.cfg.ServerID)
	return nil
}

// Renew renews the certificate over conn, which presents the current one.
func (e *Enroller) Renew(ctx context.Context, conn grpc.ClientConnInterface) error {
	return e.request(ctx, conn, "", "")
}

// request makes a new key, asks for its certificate and writes both (key first: a reader
// seeing the new key with the old certificate keeps its previous pair, see ca.keyPair).
func (e *Enroller) request(ctx context.Context, conn grpc.ClientConnInterface, token, serverID string) error {
	keyPEM, csrPEM, err := ca.NewAgentKey(e.cfg.ServerID)
	if err != nil {
		return err
	}
	resp, err := flasherv1.NewAgentServiceClient(conn).Enroll(ctx, &flasherv1.EnrollRequest{
		JoinToken: token, ServerId: serverID, CsrPem: csrPEM,
	})
	if err != nil {
		return fmt.Errorf("agent enroll: %w", err)
	}
	cert, err := ca.ParseCertPEM(resp.GetCertificatePem())
	if err != nil {
		return fmt.Errorf("agent enroll: server sent no certificate: %w", err)
	}
	if e.cfg.ServerID != "" && resp.GetServerId() != e.cfg.ServerID {
		return fmt.Errorf("agent enroll: certificate is for server %q, not %q", resp.GetServerId(), e.cfg.ServerID)
	}
	for _, f := range []string{e.cfg.CertFile, e.cfg.KeyFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return fmt.Errorf("agent enroll: %w", err)
		}
	}
	if err := (&ca.Issued{CertPEM: resp.GetCertificatePem(), KeyPEM: keyPEM}).Write(e.cfg.CertFile, e.cfg.KeyFile); err != nil {
		return fmt.Errorf("agent enroll: %w", err)
	}
	e.log.Info("certificate written", "serial", resp.GetSerial(), "server_id", resp.GetServerId(),
		"not_after", cert.NotAfter.UTC(), "renew_at", RenewAt(cert).UTC())
	return nil
}

// RenewLoop renews the certificate at its renewal time, over conn, and redials conn so that
// its streams present the new certificate. A renewal that fails is retried with backoff; once
// the certificate has expired it enrolls again with the join token, if it has one. It returns
// when ctx ends, or at once when the server does not serve Enroll.
func (e *Enroller) RenewLoop(ctx context.Context, conn *SwapConn) {
	bo := &backoff.ExponentialBackOff{InitialInterval: time.Second, MaxInterval: 5 * time.Minute, Multiplier: 2, RandomizationFactor: 0.5}
	bo.Reset()
	for {
		wait := time.Minute
		if c := e.current(); c != nil {
			wait = RenewAt(c).Sub(e.cfg.Now())
		}
		if err := sleep(ctx, wait); err != nil {
			return
		}
		var err error
		if c := e.current(); c != nil && e.cfg.Now().Before(c.NotAfter) {
			err = e.Renew(ctx, conn)
		} else {
			err = e.Enroll(ctx)
		}
		if status.Code(err) == codes.Unimplemented {
			e.log.Warn("the server does not renew certificates (no -enroll-ca-dir); rotate them by other means", "err", err)
			return
		}
		if err != nil {
			retry := bo.NextBackOff()
			e.log.Error("certificate renewal failed", "err", err, "retry_in", retry.Round(time.Second))
			if sleep(ctx, retry) != nil {
				return
			}
			continue
		}
		bo.Reset()
		if err := conn.Redial(); err != nil {
			e.log.Error("reconnecting with the renewed certificate", "err", err)
		}
	}
}

// SwapConn is a client connection that can be replaced underneath its users: after a renewal
// the agent dials anew so that its next handshake presents the new certificate (an open
// connection keeps the one it was made with). Streams on the old connection end and reconnect.
type SwapConn struct {
	dial func() (*grpc.ClientConn, error)
	mu   sync.RWMutex
	cc   *grpc.ClientConn
}

// NewSwapConn dials once with dial and returns the connection.
func NewSwapConn(dial func() (*grpc.ClientConn, error)) (*SwapConn, error) {
	cc, err := dial()
	if err != nil {
		return nil, err
	}
	return &SwapConn{dial: dial, cc: cc}, nil
}

func (s *SwapConn) current() *grpc.ClientConn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cc
}

// Invoke implements grpc.ClientConnInterface.
func (s *SwapConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return s.current().Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (s *SwapConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return s.current().NewStream(ctx, desc, method, opts...)
}

// Redial replaces the connection with a new one and closes the old.
func (s *SwapConn) Redial() error {
	cc, err := s.dial()
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cc
	s.cc = cc
	s.mu.Unlock()
	return old.Close()
}

// Close closes the connection.
func (s *SwapConn) Close() error { return s.current().Close() }
