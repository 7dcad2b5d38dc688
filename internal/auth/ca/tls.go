package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Pool reads a PEM CA bundle into a certificate pool.
func Pool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca bundle %s: %w", caFile, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca bundle %s: no certificates", caFile)
	}
	return p, nil
}

// keyPair serves a certificate from files and re-reads them when they change, so rotated
// certificates are picked up by the next handshake without a restart.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	k := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := k.get(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cfi, cerr := os.Stat(k.certFile)
	kfi, kerr := os.Stat(k.keyFile)
	if cerr == nil && kerr == nil && k.cert != nil && cfi.ModTime().Equal(k.certMod) && kfi.ModTime().Equal(k.keyMod) {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil // mid-rotation (one file written, not the other): keep the old pair
		}
		return nil, fmt.Errorf("key pair %s: %w", k.certFile, err)
	}
	k.cert = &c
	if cerr == nil && kerr == nil {
		k.certMod, k.keyMod = cfi.ModTime(), kfi.ModTime()
	}
	return k.cert, nil
}

// ServerTLS names the server's files.
type ServerTLS struct {
	CertFile, KeyFile string
	// ClientCAFile is the Flasher CA that agent certificates must chain to.
	ClientCAFile string
}

// ServerTLSConfig builds the gRPC listener's TLS configuration: TLS 1.3, the server
// certificate (reloaded on change), and client certificates optional, so token clients
// connect without one, but verified against the Flasher CA when presented: a certificate from
// another CA never completes the handshake.
func ServerTLSConfig(c ServerTLS) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" || c.ClientCAFile == "" {
		return nil, errors.New("server tls: cert, key and client CA files are required")
	}
	kp, err := newKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("server tls: %w", err)
	}
	pool, err := Pool(c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("server tls: %w", err)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
	}, nil
}

// AgentTLS names an agent's files.
type AgentTLS struct {
	CertFile, KeyFile string
	// CAFile is the Flasher CA the server's certificate must chain to.
	CAFile string
	// ServerName overrides the name checked in the server's certificate (default: the host
	// part of the dialled address).
	ServerName string
}

// AgentTLSConfig builds an agent's TLS configuration: it trusts only the Flasher CA and
// presents the agent certificate, re-read from disk when rotated.
func AgentTLSConfig(c AgentTLS) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" || c.CAFile == "" {
		return nil, errors.New("agent tls: cert, key and CA files are required")
	}
	kp, err := newKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("agent tls: %w", err)
	}
	pool, err := Pool(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("agent tls: %w", err)
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		ServerName:           c.ServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() },
	}, nil
}

// ClientTLSConfig is the TLS configuration of token clients (flasherctl, tests): they trust
// caFile and present no certificate.
func ClientTLSConfig(caFile, serverName string) (*tls.Config, error) {
	pool, err := Pool(caFile)
	if err != nil {
		return nil, fmt.Errorf("client tls: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: serverName}, nil
}
