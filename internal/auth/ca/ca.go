// Package ca is Flasher's certificate authority: it creates the CA that proves agents' server
// ids, issues server and agent certificates, keeps the deny list of revoked serials, and
// builds the TLS configurations of the server and of agents. It holds keys on disk only in the
// CA directory (key files mode 0600) and never logs key material.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
)

// File names inside a CA directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
	// DenyListFile holds revoked serials, one per line.
	DenyListFile = "revoked.txt"
)

// Default validities. Agent certificates are short-lived so that a stolen one is worth little;
// agents are expected to be re-issued daily (see docs/security.md).
const (
	DefaultCAValidity     = 10 * 365 * 24 * time.Hour
	DefaultServerValidity = 90 * 24 * time.Hour
	DefaultAgentValidity  = 24 * time.Hour
	// Backdate is how far before its issue a certificate's NotBefore lies: it tolerates clocks
	// slightly behind the CA's.
	Backdate = 5 * time.Minute
)

// CA is a loaded Flasher CA.
type CA struct {
	Dir     string
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	// Now is the clock certificates are dated by (nil: time.Now).
	Now func() time.Time
}

func (c *CA) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Init creates a new CA in dir (created if needed, mode 0700). It refuses to overwrite an
// existing CA key.
func Init(dir, commonName string, validity time.Duration, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	if commonName == "" {
		commonName = "Flasher CA"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("ca %s: %s exists; refusing to replace the CA", dir, KeyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Flasher"}},
		NotBefore:             t.Add(-Backdate),
		NotAfter:              t.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // no intermediates: the CA signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Dir: dir, Cert: cert, CertPEM: certPEM, key: key, Now: now}, nil
}

// Load reads the CA in dir.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca %s: %s is readable by others (mode %o); chmod 600 it", dir, KeyFile, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", dir, err)
	}
	return &CA{Dir: dir, Cert: cert, CertPEM: certPEM, key: key}, nil
}

// Issued is a freshly issued certificate and its private key.
type Issued struct {
	CertPEM  []byte
	KeyPEM   []byte
	Serial   *big.Int
	NotAfter time.Time
}

// Write stores the certificate and key (key mode 0600).
func (i *Issued) Write(certPath, keyPath string) error {
	if err := writeFile(keyPath, i.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certPath, i.CertPEM, 0o644)
}

// IssueServer issues the gRPC server's certificate for the given names and addresses.
func (c *CA) IssueServer(dnsNames []string, ips []net.IP, validity time.Duration) (*Issued, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("ca: a server certificate needs at least one DNS name or IP")
	}
	if validity <= 0 {
		validity = DefaultServerValidity
	}
	cn := "flasher-server"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	return c.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"Flasher"}},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, validity)
}

// IssueAgent issues an agent's client certificate naming serverID in its one URI SAN.
func (c *CA) IssueAgent(serverID string, validity time.Duration) (*Issued, error) {
	u, err := auth.AgentURI(serverID)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if validity <= 0 {
		validity = DefaultAgentValidity
	}
	return c.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "flasher-agent " + serverID, Organization: []string{"Flasher"}},
		URIs:        []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

func (c *CA) issue(tmpl *x509.Certificate, validity time.Duration) (*Issued, error) {
	if c.key == nil {
		return nil, errors.New("ca: no CA key loaded")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	is, err := c.sign(tmpl, key.Public(), validity)
	if err != nil {
		return nil, err
	}
	if is.KeyPEM, err = encodeKey(key); err != nil {
		return nil, err
	}
	return is, nil
}

// SignAgentCSR issues an agent certificate naming serverID for the public key of a CSR the
// agent made (ParseCSR): the key never leaves the agent, so Issued.KeyPEM is empty. Nothing of
// the CSR but its key is used: the names are the CA's to choose.
func (c *CA) SignAgentCSR(csr *x509.CertificateRequest, serverID string, validity time.Duration) (*Issued, error) {
	u, err := auth.AgentURI(serverID)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if validity <= 0 {
		validity = DefaultAgentValidity
	}
	if c.key == nil {
		return nil, errors.New("ca: no CA key loaded")
	}
	return c.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "flasher-agent " + serverID, Organization: []string{"Flasher"}},
		URIs:        []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey, validity)
}

// ParseCSR parses a PEM certificate request, checks its self-signature and accepts only keys
// worth a certificate: ECDSA P-256 or P-384, Ed25519, RSA of 2048 bits or more.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr: no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: signature: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("csr: ECDSA curve %s not accepted (P-256, P-384)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("csr: RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("csr: key type %T not accepted", k)
	}
	return csr, nil
}

// NewAgentKey makes an agent's key and a CSR for it (PEM both); the CA ignores the CSR's
// subject, so it names the server for the operator reading it only.
func NewAgentKey(serverID string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("agent key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "flasher-agent " + serverID},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("agent csr: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// sign issues tmpl for pub, valid from now (backdated) for validity, capped at the CA's end.
func (c *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) (*Issued, error) {
	var err error
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	t := c.now()
	tmpl.NotBefore = t.Add(-Backdate)
	tmpl.NotAfter = t.Add(validity)
	if tmpl.NotAfter.After(c.Cert.NotAfter) {
		tmpl.NotAfter = c.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return &Issued{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Serial:   tmpl.SerialNumber,
		NotAfter: tmpl.NotAfter,
	}, nil
}

// newSerial returns a random positive 128-bit serial (RFC 5280 allows up to 20 octets).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("ca: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("key: no PRIVATE KEY PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key: not a signing key")
	}
	return s, nil
}

// ParseCertPEM parses the first CERTIFICATE block of b.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// writeFile writes atomically (temp file + rename) so a reader never sees half a key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
