package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// directStore is a store whose writer the test drives itself, one exact batch at a time.
type directStore struct {
	s *Store
	w *writer
}

func openDirect(t *testing.T, path string, savepointsOnly bool) *directStore {
	t.Helper()
	return openDirectConfig(t, Config{Path: path, PollInterval: -1}, savepointsOnly)
}

func openDirectConfig(t *testing.T, cfg Config, savepointsOnly bool) *directStore {
	t.Helper()
	ms, err := loadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	s, w, conn, err := openStore(context.Background(), cfg, ms)
	if err != nil {
		t.Fatal(err)
	}
	s.savepointsOnly = savepointsOnly
	t.Cleanup(func() {
		w.close()
		conn.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return &directStore{s: s, w: w}
}

// commit commits ops as one batch and returns their results.
func (d *directStore) commit(ops []*op) []result {
	d.s.commit(d.w, ops)
	out := make([]result, len(ops))
	for i, o := range ops {
		out[i] = <-o.res
	}
	return out
}

// opSpec describes an operation, so the same one can be built for both stores.
type opSpec struct {
	kind      opKind
	id, reqID string
	state     task.State
	expected  int64
	compact   int64
	cancelled bool
}

func (sp opSpec) op(t *testing.T, now time.Time) *op {
	t.Helper()
	ctx := context.Background()
	if sp.cancelled {
		c, cancel := context.WithCancel(ctx)
		cancel()
		ctx = c
	}
	if sp.kind == opCompact {
		return &op{ctx: ctx, kind: opCompact, compact: sp.compact, res: make(chan result, 1)}
	}
	tk, ev := task.New(task.Task{
		ID: sp.id, RequestID: sp.reqID, ServerID: "srv-" + sp.id, Method: task.MethodInBand,
		Requester: "ops", Mode: task.ModeFirmwareSet, FirmwareSet: "r750",
	}, now)
	if sp.kind == opUpdate {
		tk.State = sp.state
		ev = task.Event{Time: now, Kind: task.EventKind("test"), To: sp.state, Message: "to " + string(sp.state)}
	}
	o, err := newTaskOp(ctx, sp.kind, tk, ev)
	if err != nil {
		t.Fatal(err)
	}
	o.expected = sp.expected
	return o
}

// outcome is what a caller can observe of a result.
type outcome struct {
	Rev      int64
	Created  bool
	Existing *task.Task
	Err      string // the error class, not its text
}

func outcomeOf(r result) outcome {
	o := outcome{Rev: r.rev, Created: r.created, Existing: r.existing}
	switch {
	case r.err == nil:
	case errors.Is(r.err, store.ErrConflict):
		o.Err = "conflict"
	case errors.Is(r.err, store.ErrNotFound):
		o.Err = "not found"
	case errors.Is(r.err, context.Canceled):
		o.Err = "canceled"
	default:
		o.Err = "error"
	}
	return o
}

// dump reads every table the writer writes, in a stable order.
func dump(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	for _, q := range []string{
		"SELECT seq, id, COALESCE(request_id, '<null>'), server_id, method, state, requester, priority, revision, CAST(body AS TEXT) FROM tasks ORDER BY seq",
		"SELECT task_id, revision, time_ns, kind, from_state, to_state, message FROM task_events ORDER BY task_id, revision",
		"SELECT revision, task_id, CAST(task AS TEXT), CAST(event AS TEXT) FROM changes ORDER BY revision",
		"SELECT current, compacted FROM revision",
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(vals...))
		}
		rows.Close()
	}
	return out
}

// TestFastPathMatchesSavepoints runs the same random batches of creates (with and without
// request ids, duplicates among them), updates (current, stale and unknown revisions, several
// on one task), compactions and cancelled calls through the batched fast path and through the
// one-savepoint-per-operation path, and checks that callers see the same results and the
// databases end up the same.
func TestFastPathMatchesSavepoints(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	totals := map[string]int{}
	for seed := range 12 {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			dir := t.TempDir()
			fastPath, slowPath := filepath.Join(dir, "fast.db"), filepath.Join(dir, "slow.db")
			fast, slow := openDirect(t, fastPath, false), openDirect(t, slowPath, true)
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
			reqs := []string{"", "", "r1", "r2", "r3"}
			states := []task.State{task.StateActive, task.StateSucceeded, task.StateFailed}
			// pred guesses each task's revision, so most updates name the current one.
			pred := map[string]int64{}
			var cur int64
			for b := range 25 {
				var specs []opSpec
				for range 1 + rng.IntN(12) {
					id := ids[rng.IntN(len(ids))]
					switch n := rng.IntN(20); {
					case n < 9:
						sp := opSpec{kind: opCreate, id: id, reqID: reqs[rng.IntN(len(reqs))]}
						if _, ok := pred[id]; !ok {
							cur++
							pred[id] = cur
						}
						specs = append(specs, sp)
					case n < 17:
						exp := pred[id] - int64(rng.IntN(2))*int64(rng.IntN(3))
						specs = append(specs, opSpec{kind: opUpdate, id: id, state: states[rng.IntN(len(states))], expected: exp})
						if exp == pred[id] && exp > 0 {
							cur++
							pred[id] = cur
						}
					case n < 19:
						specs = append(specs, opSpec{kind: opCompact, compact: cur + int64(rng.IntN(7)) - 3})
					default:
						specs = append(specs, opSpec{kind: opCreate, id: "x" + id, cancelled: true})
					}
				}
				var fastOps, slowOps []*op
				for _, sp := range specs {
					fastOps = append(fastOps, sp.op(t, now))
					slowOps = append(slowOps, sp.op(t, now))
				}
				fr, sr := fast.commit(fastOps), slow.commit(slowOps)
				for i := range specs {
					fo, so := outcomeOf(fr[i]), outcomeOf(sr[i])
					if diff := cmp.Diff(so, fo); diff != "" {
						t.Fatalf("batch %d op %d %+v: (-savepoints +fast):\n%s", b, i, specs[i], diff)
					}
					totals[fmt.Sprint(specs[i].kind, fo.Err, fo.Created, fo.Existing != nil)]++
				}
				// Resynchronise the guesses with what was stored.
				for _, id := range ids {
					if tk, err := fast.s.GetTask(context.Background(), id); err == nil {
						pred[id] = tk.Revision
					}
				}
				if cur, _ = fast.s.Revision(context.Background()); cur < 0 {
					t.Fatal("negative revision")
				}
			}
			if diff := cmp.Diff(dump(t, slowPath), dump(t, fastPath)); diff != "" {
				t.Errorf("databases differ (-savepoints +fast):\n%s", diff)
			}
			if st := fast.s.Stats(); st.Fallbacks != 0 {
				t.Errorf("fast path fell back %d times; want it to handle every batch itself", st.Fallbacks)
			}
		})
	}
	// The batches must have exercised every outcome, or the comparison proves little.
	for _, want := range []string{
		fmt.Sprint(opCreate, "", true, false),          // created
		fmt.Sprint(opCreate, "", false, true),          // request id already stored
		fmt.Sprint(opCreate, "error", false, false),    // duplicate id
		fmt.Sprint(opCreate, "canceled", false, false), // caller gave up
		fmt.Sprint(opUpdate, "", false, false),         // updated
		fmt.Sprint(opUpdate, "conflict", false, false), // stale revision
		fmt.Sprint(opUpdate, "not found", false, false),
		fmt.Sprint(opCompact, "", false, false),
	} {
		if totals[want] == 0 {
			t.Errorf("no operation with outcome %q; outcomes seen: %v", want, totals)
		}
	}
}

// TestFastPathFallsBack makes a batched statement fail (a stray event row takes the key the
// first create's event needs) and checks that the batch is replayed with savepoints: only the
// operation that cannot be stored fails.
func TestFastPathFallsBack(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "flasher.db")
	d := openDirect(t, path, false)

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO task_events (task_id, revision, time_ns, kind, from_state, to_state, message)
		VALUES ('ghost', 1, 0, 'stray', '', '', '')`); err != nil {
		t.Fatal(err)
	}

	specs := []opSpec{{kind: opCreate, id: "ghost"}, {kind: opCreate, id: "a", reqID: "r-a"}, {kind: opCreate, id: "b"}}
	var ops []*op
	for _, sp := range specs {
		ops = append(ops, sp.op(t, now))
	}
	got := d.commit(ops)
	want := []outcome{{Err: "error"}, {Rev: 1, Created: true}, {Rev: 2, Created: true}}
	for i := range got {
		if diff := cmp.Diff(want[i], outcomeOf(got[i])); diff != "" {
			t.Errorf("op %d (%s): (-want +got):\n%s", i, specs[i].id, diff)
		}
	}
	if st := d.s.Stats(); st.Fallbacks != 1 || st.Commits != 1 {
		t.Errorf("Stats = %+v, want 1 fallback and 1 commit", st)
	}
	if _, err := d.s.GetTask(context.Background(), "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTask(ghost) = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := d.s.GetTask(context.Background(), id); err != nil {
			t.Errorf("GetTask(%s): %v", id, err)
		}
	}
}

// TestLockedDatabaseIsNotReplayed holds the write lock from another connection past the busy
// timeout: the batch fails at once instead of waiting for the lock a second time on the savepoint
// path, and the next batch goes through once the lock is released.
func TestLockedDatabaseIsNotReplayed(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "flasher.db")
	d := openDirectConfig(t, Config{Path: path, PollInterval: -1, BusyTimeout: 20 * time.Millisecond}, false)

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	got := d.commit([]*op{opSpec{kind: opCreate, id: "a"}.op(t, now)})
	if got[0].err == nil {
		t.Fatal("CreateTask succeeded while another connection held the write lock")
	}
	if st := d.s.Stats(); st.Fallbacks != 0 || st.Commits != 0 {
		t.Errorf("Stats = %+v, want no fallback and no commit", st)
	}

	if _, err := other.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	got = d.commit([]*op{opSpec{kind: opCreate, id: "a"}.op(t, now)})
	if diff := cmp.Diff(outcome{Rev: 1, Created: true}, outcomeOf(got[0])); diff != "" {
		t.Errorf("create after the lock was released (-want +got):\n%s", diff)
	}
}
