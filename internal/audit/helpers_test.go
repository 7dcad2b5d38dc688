package audit_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flasher-dev/flasher/internal/auth"
)

func tokensOf(t *testing.T, entries ...auth.TokenEntry) *auth.StaticTokens {
	t.Helper()
	data := []byte("tokens:\n")
	for _, e := range entries {
		y, err := auth.MarshalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, y...)
	}
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewStaticTokens(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
