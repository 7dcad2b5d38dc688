package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
)

func TestRunCA(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := runCA(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("ca %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	run("init", "--dir", caDir)
	if fi, err := os.Stat(filepath.Join(caDir, ca.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", fi, err)
	}
	run("issue-server", "--dir", caDir, "--dns", "localhost", "--ip", "127.0.0.1",
		"--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key"))
	out := run("issue-agent", "--dir", caDir, "--server-id", "srv-7",
		"--cert", filepath.Join(dir, "agent.crt"), "--key", filepath.Join(dir, "agent.key"))
	serial := regexp.MustCompile(`serial:\s+([0-9a-f]+)`).FindStringSubmatch(out)
	if serial == nil {
		t.Fatalf("issue-agent printed no serial:\n%s", out)
	}
	pemBytes, _ := os.ReadFile(filepath.Join(dir, "agent.crt"))
	cert, err := ca.ParseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := auth.ServerIDFromCert(cert); err != nil || id != "srv-7" || auth.SerialString(cert.SerialNumber) != serial[1] {
		t.Fatalf("agent certificate names %q (%v), serial %s vs printed %s", id, err, auth.SerialString(cert.SerialNumber), serial[1])
	}
	if cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatal("agent certificate is not for client auth")
	}

	run("revoke", "--dir", caDir, "--serial", serial[1], "--reason", "host decommissioned")
	deny, err := ca.OpenDenyList(filepath.Join(caDir, ca.DenyListFile))
	if err != nil {
		t.Fatal(err)
	}
	if !deny.Revoked(cert.SerialNumber) {
		t.Fatal("revoked serial not in the deny list")
	}

	out = run("token", "--name", "ci", "--scopes", "tasks:read,tasks:write")
	tok := regexp.MustCompile(auth.TokenPrefix + `[A-Za-z0-9_-]{43}`).FindString(out)
	if tok == "" {
		t.Fatalf("no token printed:\n%s", out)
	}
	entry := out[strings.Index(out, "- name:"):]
	f, err := auth.ParseTokenFile([]byte("tokens:\n" + entry))
	if err != nil || len(f.Tokens) != 1 || f.Tokens[0].SHA256 != auth.HashToken(tok) || strings.Contains(entry, tok) {
		t.Fatalf("printed entry does not authenticate the printed token (or holds it): %v\n%s", err, entry)
	}

	for _, bad := range [][]string{
		{},
		{"init", "--dir", caDir},        // refuses to replace the CA
		{"issue-agent", "--dir", caDir}, // no server id
		{"issue-agent", "--dir", caDir, "--server-id", "a/b"},
		{"revoke", "--dir", caDir, "--serial", "xyz"},
		{"token", "--name", "x", "--scopes", "root"},
		{"frobnicate"},
	} {
		if err := runCA(context.Background(), bad, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("ca %v succeeded", bad)
		}
	}
}
