package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/enroll"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
)

// TestJoinTokenCommands drives `flasher-server ca join-token`, `join-tokens`, `revoke-token`
// and `revoke-agent` against a SQLite database, then checks what they stored.
func TestJoinTokenCommands(t *testing.T) {
	dir := t.TempDir()
	caDir, db := filepath.Join(dir, "ca"), filepath.Join(dir, "flasher.db")
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runCA(context.Background(), args, &out, &errb)
		return out.String() + errb.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("ca %v: %v\n%s", args, err, out)
		}
		return out
	}
	mustRun("init", "--dir", caDir)

	out := mustRun("join-token", "--database", db, "--server", "srv-1", "--ttl", "30m")
	bound := regexp.MustCompile(`fjt_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}`).FindString(out)
	if bound == "" || !strings.Contains(out, "for server srv-1") {
		t.Fatalf("join-token --server printed no token:\n%s", out)
	}
	batch := strings.TrimSpace(mustRun("join-token", "--database", db, "--count", "50", "--ttl", "1h", "--note", "rack 7", "-q"))
	if !strings.HasPrefix(batch, "fjt_") || strings.ContainsAny(batch, " \n") {
		t.Fatalf("join-token -q printed %q, want the token alone", batch)
	}
	for _, bad := range [][]string{
		{"join-token", "--database", db},
		{"join-token", "--database", db, "--server", "srv-1", "--count", "2"},
		{"join-token", "--database", db, "--count", "2", "--ttl", "720h"},
		{"revoke-token", "--database", db, "--id", "0000000000000000"},
		{"revoke-agent", "--database", db},
	} {
		if out, err := run(bad...); err == nil {
			t.Errorf("ca %v succeeded:\n%s", bad, out)
		}
	}

	mustRun("revoke-token", "--database", db, "--id", enroll.TokenID(bound))
	list := mustRun("join-tokens", "--database", db)
	for _, want := range []string{enroll.TokenID(bound) + "  srv-1", "revoked", enroll.TokenID(batch) + "  (batch)", "0/50", "rack 7"} {
		if !strings.Contains(list, want) {
			t.Errorf("join-tokens lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, bound) || strings.Contains(list, batch) {
		t.Fatal("join-tokens printed a token")
	}

	// Enroll srv-2 with the batch token, then revoke its agent from the command line.
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	authority, err := ca.Load(caDir)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := enroll.New(enroll.Config{Store: st, CA: authority})
	if err != nil {
		t.Fatal(err)
	}
	_, csr, _ := ca.NewAgentKey("srv-2")
	c, err := svc.Enroll(context.Background(), batch, "srv-2", csr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Enroll(context.Background(), bound, "srv-1", csr); err == nil {
		t.Fatal("a revoked token enrolled")
	}
	out = mustRun("revoke-agent", "--dir", caDir, "--database", db, "--server", "srv-2", "--reason", "decommissioned")
	if !strings.Contains(out, c.Serial) {
		t.Fatalf("revoke-agent did not name the certificate %s:\n%s", c.Serial, out)
	}
	deny, err := ca.OpenDenyList(filepath.Join(caDir, ca.DenyListFile))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := ca.ParseSerial(c.Serial); !deny.Revoked(n) {
		t.Fatal("revoke-agent left the certificate off the deny list")
	}
	if at, err := st.AgentRevokedAt(context.Background(), "srv-2"); err != nil || at.IsZero() || time.Since(at) > time.Hour {
		t.Fatalf("AgentRevokedAt(srv-2) = %v, %v", at, err)
	}
	var _ store.Enrollments = st
}

// TestCAHelpExitsZero: every ca command answers -h with its usage and no error.
func TestCAHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"init", "issue-agent", "join-token", "join-tokens", "revoke-token", "revoke-agent"} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"ca", cmd, "-h"}, &out, &errb); err != nil {
			t.Errorf("ca %s -h: %v", cmd, err)
		}
		if !strings.Contains(errb.String(), "Usage of flasher-server ca "+cmd) {
			t.Errorf("ca %s -h printed no usage:\n%s", cmd, errb.String())
		}
	}
}
