package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
)

func writeTokens(t *testing.T, path string, entries ...auth.TokenEntry) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, e := range entries {
		y, err := auth.MarshalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(y)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStaticTokens(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	alice, aliceE, err := auth.GenerateToken("alice", []string{"tasks:read", "tasks:write"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bob, bobE, err := auth.GenerateToken("bob", []string{"admin"}, &exp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(alice, auth.TokenPrefix) || aliceE.SHA256 != auth.HashToken(alice) {
		t.Fatalf("token %q entry %+v", alice[:4], aliceE)
	}
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokens(t, path, aliceE, bobE)
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), alice) || strings.Contains(string(data), bob) {
		t.Fatal("token file holds a token in clear")
	}
	clock := now
	src, err := auth.NewStaticTokens(path, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		token    string
		at       time.Time
		wantName string
	}{
		{name: "alice", token: alice, at: now, wantName: "alice"},
		{name: "bob before expiry", token: bob, at: now, wantName: "bob"},
		{name: "bob at expiry", token: bob, at: exp},
		{name: "unknown", token: auth.TokenPrefix + "nope", at: now},
		{name: "alice with a suffix", token: alice + "x", at: now},
		{name: "no prefix", token: strings.TrimPrefix(alice, auth.TokenPrefix), at: now},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock = tc.at
			id, err := src.Authenticate(tc.token)
			if tc.wantName == "" {
				if !errors.Is(err, auth.ErrInvalidToken) {
					t.Fatalf("err = %v, want ErrInvalidToken", err)
				}
				return
			}
			if err != nil || id.Name != tc.wantName {
				t.Fatalf("id = %+v, err = %v", id, err)
			}
		})
	}

	t.Run("reload drops removed tokens", func(t *testing.T) {
		clock = now
		writeTokens(t, path, bobE)
		future := time.Now().Add(time.Hour)
		os.Chtimes(path, future, future)
		if _, err := src.Authenticate(alice); err == nil {
			t.Fatal("alice still accepted after removal")
		}
		if _, err := src.Authenticate(bob); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("broken edit keeps the last good set", func(t *testing.T) {
		os.WriteFile(path, []byte("tokens: [{name: x"), 0o600)
		future := time.Now().Add(2 * time.Hour)
		os.Chtimes(path, future, future)
		if _, err := src.Authenticate(bob); err != nil {
			t.Fatalf("bob refused after a broken edit: %v", err)
		}
	})
}

func TestParseTokenFile(t *testing.T) {
	h := strings.Repeat("ab", 32)
	tests := []struct {
		name, yaml, wantErr string
	}{
		{name: "empty", yaml: ""},
		{name: "ok", yaml: "tokens:\n- name: a\n  sha256: " + h + "\n  scopes: [admin]\n"},
		{name: "unknown scope", yaml: "tokens:\n- name: a\n  sha256: " + h + "\n  scopes: [root]\n", wantErr: "unknown scope"},
		{name: "agent scope refused", yaml: "tokens:\n- name: a\n  sha256: " + h + "\n  scopes: [agent]\n", wantErr: "unknown scope"},
		{name: "short hash", yaml: "tokens:\n- name: a\n  sha256: abc\n  scopes: [admin]\n", wantErr: "64 hex"},
		{name: "no scopes", yaml: "tokens:\n- name: a\n  sha256: " + h + "\n", wantErr: "no scopes"},
		{name: "duplicate", yaml: "tokens:\n- name: a\n  sha256: " + h + "\n  scopes: [admin]\n- name: b\n  sha256: " + h + "\n  scopes: [admin]\n", wantErr: "duplicate"},
		{name: "clear token field refused", yaml: "tokens:\n- name: a\n  token: flt_x\n  sha256: " + h + "\n  scopes: [admin]\n", wantErr: "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.ParseTokenFile([]byte(tc.yaml))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
