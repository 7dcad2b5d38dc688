package redfish

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
)

var rawClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// newRequest builds a request with basic auth (the BMC accepts it like a session).
func newRequest(t *testing.T, b *BMC, method, path, body string) (*http.Request, error) {
	t.Helper()
	req, err := http.NewRequest(method, b.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	req.SetBasicAuth(cfg.Username, cfg.Password)
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
