package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/store/postgres/pgtest"
	"github.com/flasher-dev/flasher/internal/task"
)

// TestBatchIsOneTransaction: a batch is sent as one pipeline without BEGIN or COMMIT, relying on
// PostgreSQL to run it as one implicit transaction. When its second operation fails (a NUL byte
// PostgreSQL text refuses), the first must not be committed either; the writer then retries each
// operation alone, so the good one is stored once and the bad one fails alone.
func TestBatchIsOneTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{DSN: pgtest.DSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mk := func(id, server string) *op {
		tk, ev := task.New(task.Task{ID: id, ServerID: server, Method: task.MethodOutOfBand, Requester: "alice", Mode: task.ModeFirmware,
			Firmware: []task.Firmware{{Component: "BMC", Version: "1.0"}}}, time.Now())
		o, err := newTaskOp(ctx, opCreate, tk, ev)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	good, bad := mk("good", "srv-good"), mk("bad", "srv-\x00")
	if _, err := s.commitBatch([]*op{good, bad}); err == nil {
		t.Fatal("a batch with an operation PostgreSQL refuses committed")
	}
	if _, err := s.GetTask(ctx, "good"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the failed batch, GetTask(good) = %v, want ErrNotFound: the batch was not one transaction", err)
	}
	if rev, err := s.Revision(ctx); err != nil || rev != 0 {
		t.Fatalf("revision after the failed batch = %d, %v; want 0", rev, err)
	}

	good, bad = mk("good", "srv-good"), mk("bad", "srv-\x00")
	s.commit([]*op{good, bad})
	if r := <-good.res; r.err != nil || !r.created || r.rev != 1 {
		t.Fatalf("good operation retried alone: %+v, want created at revision 1", r)
	}
	if r := <-bad.res; r.err == nil {
		t.Fatal("bad operation succeeded")
	}
	evs, err := s.Events(ctx, "good")
	if err != nil || len(evs) != 1 {
		t.Fatalf("events of the good task: %d, %v; want 1", len(evs), err)
	}
}
