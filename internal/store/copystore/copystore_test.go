package copystore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/audit"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/copystore"
	"github.com/flasher-dev/flasher/internal/store/postgres"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

// TestCopy fills a SQLite store and audit trail as a server would, copies them into an empty
// PostgreSQL database, and reads everything back through the PostgreSQL store: tasks with their
// revisions, events and change log, observations with history, join tokens and agent
// revocations, the audit trail; new writes continue above the copied revisions; a second copy
// into the now used database is refused and changes nothing.
func TestCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	src := copystore.Source{Store: filepath.Join(dir, "flasher.db"), Audit: filepath.Join(dir, "audit.db")}
	lite, err := sqlite.Open(ctx, sqlite.Config{Path: src.Store})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0).UTC()
	var ids []string
	for i := range 5 {
		tk, ev := task.New(task.Task{ID: fmt.Sprintf("task-%d", i), RequestID: fmt.Sprintf("req-%d", i), ServerID: fmt.Sprintf("srv-%d", i),
			Method: task.MethodOutOfBand, Requester: "alice", Mode: task.ModeFirmware,
			Firmware: []task.Firmware{{Component: "BMC", Version: "7.10"}}}, now)
		stored, _, err := lite.CreateTask(ctx, tk, ev)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, stored.ID)
		if i%2 == 0 {
			ev, err := stored.Start("replica-a", now.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lite.UpdateTask(ctx, stored, stored.Revision, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	obs := []store.Observation{
		{ServerID: "srv-0", Instance: "bmc", Component: "BMC", Version: "7.00", Source: store.SourceBMC, ObservedAt: now},
		{ServerID: "srv-0", Instance: "bmc", Component: "BMC", Version: "7.10", Source: store.SourceBMC, ObservedAt: now.Add(time.Minute), TaskID: "task-0"},
	}
	if err := lite.RecordObservations(ctx, obs); err != nil {
		t.Fatal(err)
	}
	tok := store.JoinToken{ID: "tok-1", SHA256: []byte{1, 2, 3}, ServerID: "srv-1", MaxUses: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour), Note: "rack 4"}
	if err := lite.CreateJoinTokens(ctx, []store.JoinToken{tok}); err != nil {
		t.Fatal(err)
	}
	if _, err := lite.RevokeAgent(ctx, "srv-2", now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantRev, err := lite.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantTasks := map[string]*task.Task{}
	wantEvents := map[string][]task.Event{}
	for _, id := range ids {
		if wantTasks[id], err = lite.GetTask(ctx, id); err != nil {
			t.Fatal(err)
		}
		if wantEvents[id], err = lite.Events(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	wantChanges, err := lite.Changes(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	lite.Close()
	al, err := audit.OpenSQLite(ctx, src.Audit)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := al.Append(ctx, audit.Event{Time: now.Add(time.Duration(i) * time.Second), Identity: "alice", Action: "/flasher.v1.TaskService/CreateTask",
			ServerID: "srv-0", TaskID: "task-0", Code: "OK", Peer: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	al.Close()

	dst := postgres.Config{DSN: pgtest.DSN(t)}
	counts, err := copystore.Copy(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	want := copystore.Counts{Tasks: 5, Events: 8, Changes: 8, Observations: 1, History: 2, Audit: 3, JoinTokens: 1, AgentRevocations: 1, Revision: wantRev}
	if counts != want {
		t.Errorf("counts %+v, want %+v", counts, want)
	}

	pg, err := postgres.Open(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if rev, err := pg.Revision(ctx); err != nil || rev != wantRev {
		t.Errorf("PostgreSQL revision %d, %v; want %d", rev, err, wantRev)
	}
	for _, id := range ids {
		got, err := pg.GetTask(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, wantTasks[id]) {
			t.Errorf("task %s:\n got %+v\nwant %+v", id, got, wantTasks[id])
		}
		evs, err := pg.Events(ctx, id)
		if err != nil || !reflect.DeepEqual(evs, wantEvents[id]) {
			t.Errorf("events of %s: %+v, %v; want %+v", id, evs, err, wantEvents[id])
		}
	}
	changes, err := pg.Changes(ctx, 0, 100)
	if err != nil || !reflect.DeepEqual(changes, wantChanges) {
		t.Errorf("change log differs (%v):\n got %+v\nwant %+v", err, changes, wantChanges)
	}
	if hist, err := pg.ObservationHistory(ctx, "srv-0", "bmc"); err != nil || len(hist) != 2 || hist[0].Version != "7.10" {
		t.Errorf("observation history %+v, %v; want 7.10 then 7.00", hist, err)
	}
	if at, err := pg.AgentRevokedAt(ctx, "srv-2"); err != nil || !at.Equal(now.Add(2*time.Minute)) {
		t.Errorf("agent revocation %v, %v; want %v", at, err, now.Add(2*time.Minute))
	}
	if toks, err := pg.JoinTokens(ctx); err != nil || len(toks) != 1 || toks[0].Note != "rack 4" || !toks[0].ExpiresAt.Equal(tok.ExpiresAt) || !toks[0].RevokedAt.IsZero() {
		t.Errorf("join tokens %+v, %v; want %+v", toks, err, tok)
	}
	events, err := audit.NewPostgres(pg.Pool(), pg.Name()).Query(ctx, audit.Filter{TaskID: "task-0"})
	if err != nil || len(events) != 3 || events[0].Identity != "alice" {
		t.Errorf("audit events %+v, %v; want 3 of alice", events, err)
	}

	// New writes continue the revisions, and the request ids still deduplicate.
	tk, ev := task.New(task.Task{ID: "after", RequestID: "req-1", ServerID: "srv-1", Method: task.MethodOutOfBand, Requester: "alice",
		Mode: task.ModeFirmware, Firmware: []task.Firmware{{Component: "BMC", Version: "7.10"}}}, now)
	if got, created, err := pg.CreateTask(ctx, tk, ev); err != nil || created || got.ID != "task-1" {
		t.Errorf("CreateTask with a copied request id: %v created=%v err=%v; want task-1 returned", got, created, err)
	}
	tk, ev = task.New(task.Task{ID: "new", ServerID: "srv-9", Method: task.MethodOutOfBand, Requester: "alice",
		Mode: task.ModeFirmware, Firmware: []task.Firmware{{Component: "BMC", Version: "7.10"}}}, now)
	if got, _, err := pg.CreateTask(ctx, tk, ev); err != nil || got.Revision != wantRev+1 {
		t.Errorf("first new task: %+v, %v; want revision %d", got, err, wantRev+1)
	}

	if _, err := copystore.Copy(ctx, src, dst); !errors.Is(err, copystore.ErrNotEmpty) {
		t.Errorf("second copy: %v, want ErrNotEmpty", err)
	}
	if all, _, err := pg.ListTasks(ctx, store.Filter{}, 100, ""); err != nil || len(all) != 6 {
		t.Errorf("after the refused copy: %d tasks, %v; want 6", len(all), err)
	}
}
