package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

func schemaVersions(t *testing.T, path string) []int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_migrations'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return nil
	}
	rows, err := db.Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestEmbeddedMigrationsLoad(t *testing.T) {
	ms, err := loadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("embedded migrations = %+v, want 1..n", ms)
	}
}

func TestMigrationVersioning(t *testing.T) {
	ctx := context.Background()
	embedded, err := loadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	// A second migration, as a later release would ship it.
	v2 := store.Migration{Version: len(embedded) + 1, Name: "next_add_note.sql", SQL: "ALTER TABLE tasks ADD COLUMN note TEXT NOT NULL DEFAULT ''"}
	newer := append(append([]store.Migration(nil), embedded...), v2)

	path := filepath.Join(t.TempDir(), "flasher.db")
	openWith := func(ms []store.Migration) error {
		s, err := open(ctx, Config{Path: path}, ms)
		if err != nil {
			return err
		}
		return s.Close()
	}

	steps := []struct {
		name    string
		ms      []store.Migration
		wantErr error
		want    int // schema version after the step
	}{
		{"fresh database gets every migration", embedded, nil, len(embedded)},
		{"reopen applies nothing again", embedded, nil, len(embedded)},
		{"newer binary applies only its new migration", newer, nil, len(newer)},
		{"older binary refuses the newer schema", embedded, ErrSchemaTooNew, len(newer)},
		{"newer binary reopens", newer, nil, len(newer)},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := openWith(st.ms)
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("Open = %v, want %v", err, st.wantErr)
			}
			got := schemaVersions(t, path)
			if len(got) != st.want || got[len(got)-1] != st.want {
				t.Errorf("schema_migrations = %v, want 1..%d", got, st.want)
			}
		})
	}
}

func TestMigrationFailureLeavesSchemaAlone(t *testing.T) {
	ctx := context.Background()
	embedded, err := loadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flasher.db")
	broken := append(append([]store.Migration(nil), embedded...),
		store.Migration{Version: len(embedded) + 1, Name: "broken.sql", SQL: "CREATE TABLE extra (x INTEGER); THIS IS NOT SQL"})
	if s, err := open(ctx, Config{Path: path}, broken); err == nil {
		s.Close()
		t.Fatal("Open with a broken migration succeeded")
	}
	// The whole run is one transaction: not even the first migration is recorded.
	if got := schemaVersions(t, path); len(got) != 0 {
		t.Errorf("schema_migrations after a failed run = %v, want empty", got)
	}
	s, err := open(ctx, Config{Path: path}, embedded)
	if err != nil {
		t.Fatalf("Open after a failed migration run: %v", err)
	}
	s.Close()
}

func TestLoadMigrationsRejectsBadSets(t *testing.T) {
	tests := []struct {
		name  string
		files fstest.MapFS
	}{
		{"gap", fstest.MapFS{"m/0001_a.sql": {Data: []byte("SELECT 1")}, "m/0003_c.sql": {Data: []byte("SELECT 1")}}},
		{"bad name", fstest.MapFS{"m/first.sql": {Data: []byte("SELECT 1")}}},
		{"zero", fstest.MapFS{"m/0000_a.sql": {Data: []byte("SELECT 1")}}},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": {Data: []byte("SELECT 1")}, "m/0001_b.sql": {Data: []byte("SELECT 1")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ms, err := loadMigrations(tc.files, "m"); err == nil {
				t.Errorf("loadMigrations = %+v, want an error", ms)
			}
		})
	}
}

// TestObservationsMigrationKeepsTasks opens a database made by a binary that knew only the
// first migration: the observation tables are added and its tasks are kept.
func TestObservationsMigrationKeepsTasks(t *testing.T) {
	ctx := context.Background()
	embedded, err := loadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flasher.db")
	old, err := open(ctx, Config{Path: path}, embedded[:1])
	if err != nil {
		t.Fatal(err)
	}
	tk, ev := task.New(task.Task{ID: "t1", ServerID: "srv-1", Method: task.MethodOutOfBand, Requester: "alice",
		Mode: task.ModeFirmwareSet, FirmwareSet: "set-1"}, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if _, _, err := old.CreateTask(ctx, tk, ev); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := schemaVersions(t, path); len(got) != len(embedded) {
		t.Errorf("schema versions %v, want 1..%d", got, len(embedded))
	}
	if _, err := s.GetTask(ctx, "t1"); err != nil {
		t.Errorf("task made before the migration: %v", err)
	}
	o := store.Observation{ServerID: "srv-1", Instance: "bios", Component: "BIOS", Version: "2.1.0",
		Source: store.SourceBMC, ObservedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := s.RecordObservations(ctx, []store.Observation{o}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CurrentObservations(ctx, nil); err != nil || len(got) != 1 {
		t.Errorf("CurrentObservations = %v, %v; want the one recorded", got, err)
	}
}
