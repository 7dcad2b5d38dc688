package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// An agent certificate names its server with exactly one URI SAN of the form
// flasher://server/<server-id>. A scheme of Flasher's own (rather than spiffe://<trust
// domain>/...) keeps the format independent of any SPIFFE deployment; a SPIFFE ID would need a
// trust-domain name operators must choose and keep consistent, for no gain inside one CA.
const (
	AgentURIScheme = "flasher"
	AgentURIHost   = "server"
)

var serverIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidServerID reports whether id can be named in an agent certificate: 1–128 characters of
// letters, digits, '.', '_' and '-', not starting with a punctuation mark.
func ValidServerID(id string) bool { return serverIDPattern.MatchString(id) }

// AgentURI returns the URI SAN an agent certificate for serverID carries.
func AgentURI(serverID string) (*url.URL, error) {
	if !ValidServerID(serverID) {
		return nil, fmt.Errorf("server id %q: want 1-128 of [A-Za-z0-9._-]", truncate(serverID))
	}
	return &url.URL{Scheme: AgentURIScheme, Host: AgentURIHost, Path: "/" + serverID}, nil
}

// ServerIDFromCert returns the server id an agent certificate names. The certificate must
// carry exactly one URI SAN and it must be a well-formed flasher://server/<id>: a certificate
// naming two servers, or anything else besides, is refused rather than guessed at.
func ServerIDFromCert(cert *x509.Certificate) (string, error) {
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("certificate has %d URI SANs, want exactly one %s://%s/<id>", len(cert.URIs), AgentURIScheme, AgentURIHost)
	}
	u := cert.URIs[0]
	if u.Scheme != AgentURIScheme || u.Host != AgentURIHost || u.User != nil || u.RawQuery != "" ||
		u.Fragment != "" || u.Opaque != "" || u.RawPath != "" || !strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("URI SAN is not %s://%s/<id>", AgentURIScheme, AgentURIHost)
	}
	id := u.Path[1:]
	if !ValidServerID(id) {
		return "", errors.New("URI SAN names an invalid server id")
	}
	return id, nil
}

// Revocations says whether a certificate serial number is revoked (the CA's deny list).
type Revocations interface {
	Revoked(serial *big.Int) bool
}

// AgentVerifierConfig configures agent certificate checks.
type AgentVerifierConfig struct {
	// Roots is the Flasher CA.
	Roots *x509.CertPool
	// Revoked is the deny list; nil revokes nothing.
	Revoked Revocations
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// AgentVerifier proves an agent's server id from its TLS client certificate.
type AgentVerifier struct{ cfg AgentVerifierConfig }

// NewAgentVerifier returns a verifier; Roots is required.
func NewAgentVerifier(cfg AgentVerifierConfig) (*AgentVerifier, error) {
	if cfg.Roots == nil {
		return nil, errors.New("agent verifier: no CA roots")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AgentVerifier{cfg: cfg}, nil
}

// ErrNoClientCert is returned when the peer presented no certificate.
var ErrNoClientCert = errors.New("no client certificate")

// VerifyChain checks a presented chain (leaf first) against the Flasher CA at the current
// time, for client authentication, and against the deny list, and returns the server id the
// leaf names. It repeats the TLS layer's verification on purpose: the check holds whatever
// the listener's ClientAuth setting, and it runs on every call, so a certificate that expired
// or was revoked while its connection stayed open stops working.
func (v *AgentVerifier) VerifyChain(chain []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", ErrNoClientCert
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: v.cfg.Roots, Intermediates: inter, CurrentTime: v.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", fmt.Errorf("certificate serial %s: %w", SerialString(leaf.SerialNumber), err)
	}
	if v.cfg.Revoked != nil {
		for _, c := range chain {
			if v.cfg.Revoked.Revoked(c.SerialNumber) {
				return "", fmt.Errorf("certificate serial %s is revoked", SerialString(c.SerialNumber))
			}
		}
	}
	id, err := ServerIDFromCert(leaf)
	if err != nil {
		return "", fmt.Errorf("certificate serial %s: %w", SerialString(leaf.SerialNumber), err)
	}
	return id, nil
}

// AgentIdentity returns the server id proven by the calling agent's TLS client certificate.
// Every failure (no TLS, no certificate, another CA, expired, revoked, malformed URI SAN) is
// codes.Unauthenticated.
func (v *AgentVerifier) AgentIdentity(ctx context.Context) (string, error) {
	chain, err := peerChain(ctx)
	if err != nil {
		return "", status.Errorf(codes.Unauthenticated, "agent: %v", err)
	}
	id, err := v.VerifyChain(chain)
	if err != nil {
		return "", status.Errorf(codes.Unauthenticated, "agent: %v", err)
	}
	return id, nil
}

// PeerLeaf returns the client certificate the caller presented, or ErrNoClientCert. It does
// not verify it: the interceptor has, for agent methods.
func PeerLeaf(ctx context.Context) (*x509.Certificate, error) {
	chain, err := peerChain(ctx)
	if err != nil {
		return nil, err
	}
	return chain[0], nil
}

func peerChain(ctx context.Context) ([]*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, errors.New("no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, errors.New("connection is not TLS")
	}
	if len(ti.State.PeerCertificates) == 0 {
		return nil, ErrNoClientCert
	}
	return ti.State.PeerCertificates, nil
}

// SerialString formats a certificate serial the way the CA tooling prints and the deny list
// stores it: lower-case hex without separators.
func SerialString(n *big.Int) string {
	if n == nil {
		return "<nil>"
	}
	return n.Text(16)
}
