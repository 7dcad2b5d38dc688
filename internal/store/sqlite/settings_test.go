package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestNewDatabaseSettings checks the file-level settings a new database gets: WAL (durable
// commits without blocking readers) and the larger page size, which SQLite accepts only before
// the database turns to WAL.
func TestNewDatabaseSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flasher.db")
	s := openAt(t, path)
	defer s.Close()

	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		pragma, want string
	}{
		{"journal_mode", "wal"},
		{"page_size", "16384"},
	} {
		t.Run(tc.pragma, func(t *testing.T) {
			var got string
			if err := db.QueryRowContext(context.Background(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
			}
		})
	}
}
