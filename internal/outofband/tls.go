package outofband

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// httpClient builds one provider's HTTP client. BMC certificates are verified: against the
// inventory's pinned fingerprint, else its CA file, else the system roots. Verification is off
// only for a BMC the inventory marks insecure_skip_verify (factory self-signed certificates);
// the executor then says so in the task.
func (t Target) httpClient(held func() error) (*http.Client, error) {
	tc, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	tr.IdleConnTimeout = 30 * time.Second
	tr.TLSClientConfig = tc
	return &http.Client{Transport: keepAlive{tr: tr, held: held}}, nil
}

// tlsConfig is how the BMC's certificate is verified (see httpClient).
func (t Target) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // verified below, or off by the inventory's choice
	switch {
	case t.bmc.Fingerprint != "":
		want := strings.ToLower(strings.ReplaceAll(t.bmc.Fingerprint, ":", ""))
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("BMC presented no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if hex.EncodeToString(sum[:]) != want {
				return fmt.Errorf("BMC certificate fingerprint %x does not match the inventory", sum)
			}
			return nil
		}
	case t.bmc.CAFile != "" && !t.bmc.InsecureSkipVerify:
		pemData, err := os.ReadFile(t.bmc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("BMC CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("BMC CA file %s holds no certificate", t.bmc.CAFile)
		}
		// The chain is verified against the CA first, so a wrong CA is reported as such. Factory
		// BMC certificates name no host at all: for those the chain is what is verified (the task
		// says so); a certificate that names hosts must name this one.
		host := t.Host
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("BMC certificate: %w", err)
				}
				certs = append(certs, c)
			}
			if len(certs) == 0 {
				return errors.New("BMC presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter}); err != nil {
				return fmt.Errorf("BMC certificate not signed by the CA in %s: %w", t.bmc.CAFile, err)
			}
			if namesHosts(certs[0]) {
				return certs[0].VerifyHostname(host)
			}
			return nil
		}
	case !t.bmc.InsecureSkipVerify:
		tc.InsecureSkipVerify = false // the system roots
		tc.ServerName = t.Host
	}
	return tc, nil
}

// keepAlive lets a session reuse its connections. gofish (under bmclib) marks every request
// Connection: close unless it built the HTTP client itself, and bmclib always hands it one; so
// without this each Redfish request costs a TCP connection, and over HTTPS a TLS handshake, on
// both ends. Reuse is bounded to the session: each login builds a new transport and logging
// out closes its idle connections. A request sent on a connection the BMC closed meanwhile is
// retried by net/http when nothing was written or the request can be replayed; otherwise it
// fails as a lost connection, which the executor already treats as such (new login; an upload
// is retried, behind bmclib's queue check).
//
// held (task.HoldCheck, nil outside a leased task) is checked before every request, the logout
// included: a replica whose lease on the task is gone sends the BMC nothing more.
type keepAlive struct {
	tr   *http.Transport
	held func() error
}

func (k keepAlive) RoundTrip(r *http.Request) (*http.Response, error) {
	if k.held != nil {
		if err := k.held(); err != nil {
			if r.Body != nil {
				r.Body.Close() // a RoundTripper closes the body, even on error
			}
			return nil, fmt.Errorf("BMC request not sent: %w", err)
		}
	}
	if r.Close {
		r2 := *r // a RoundTripper must not modify the caller's request
		r2.Close = false
		r = &r2
	}
	return k.tr.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (k keepAlive) CloseIdleConnections() { k.tr.CloseIdleConnections() }

// namesHosts reports whether a certificate names any host (SAN), as CA-issued ones do and
// factory BMC certificates often do not.
func namesHosts(c *x509.Certificate) bool {
	return len(c.DNSNames) > 0 || len(c.IPAddresses) > 0 || len(c.URIs) > 0
}

// TLSNote says how the BMC's certificate is checked, for the task: "" when by the usual rules.
func (t Target) TLSNote() string {
	switch {
	case t.Scheme != "https":
		return ""
	case t.TLSUnverified():
		return "TLS certificate of the BMC NOT verified (inventory: insecure_skip_verify)"
	case t.bmc.Fingerprint != "":
		return "TLS certificate of the BMC verified by its pinned fingerprint"
	case t.bmc.CAFile != "":
		return "TLS certificate of the BMC verified against the CA in ca_file (a certificate naming no host is checked by its chain only)"
	}
	return ""
}

// TLSUnverified reports whether this BMC's certificate goes unverified (the inventory marks it
// insecure_skip_verify and pins no fingerprint) over HTTPS.
func (t Target) TLSUnverified() bool {
	return t.Scheme == "https" && t.bmc.InsecureSkipVerify && t.bmc.Fingerprint == ""
}
