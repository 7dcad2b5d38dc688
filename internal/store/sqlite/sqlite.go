// Package sqlite is the embedded default store.Store: one SQLite file (modernc.org/sqlite, pure
// Go) in WAL mode with synchronous=FULL, so a call that returned nil survives kill -9 and power
// loss. Writes go through a single writer goroutine that commits many concurrent operations in one
// transaction (group commit: one fsync covers a whole batch), deciding the batch's outcomes from
// one lookup instead of a savepoint per operation (batch.go), on a connection whose statements are
// compiled once (raw.go); reads use a separate pool of connections that WAL lets run alongside
// the writer. It holds no business rules: task changes are made by internal/task and only
// recorded here.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("sqlite store: closed")

// Config configures Open. Only Path is required.
type Config struct {
	// Path is the database file; it is created when missing.
	Path string
	// BusyTimeout is how long a connection waits for a lock held by another process
	// (default 5s).
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool (default: max(4, GOMAXPROCS)).
	ReadConns int
	// MaxBatch caps how many operations one write transaction commits (default 256).
	MaxBatch int
	// PollInterval is how often the store looks for commits made by other processes sharing
	// the file, to signal subscribers (default 250ms; negative disables polling).
	PollInterval time.Duration
}

const (
	// writerCacheKiB is the writer's page cache (PRAGMA cache_size takes negative KiB).
	writerCacheKiB = -32 << 10
	// newPageSize is the page size of new databases. Larger than SQLite's 4 KiB default: a
	// task's JSON is 0.5-3 KiB and stored twice (tasks, changes), so 4 KiB pages split often;
	// 16 KiB pages cut the writer's CPU per task by about a tenth in bench/store.
	newPageSize = 16384

	defaultPageSize    = 100
	maxPageSize        = 1000
	defaultChangeLimit = 100
	maxChangeLimit     = 1000
)

// Store is the SQLite store.Store. Create it with Open.
type Store struct {
	cfg  Config
	wdb  *sql.DB // one connection, owned by the writer goroutine
	rdb  *sql.DB // read pool
	ops  chan *op
	quit chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	store.Signals // Subscribe

	commits, committedOps atomic.Int64 // for Stats
	fallbacks             atomic.Int64 // for Stats

	// savepointsOnly makes the writer skip the batched fast path, so tests can compare the
	// two paths on the same batches.
	savepointsOnly bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, applies pending migrations and
// starts the writer. It fails with ErrSchemaTooNew on a database migrated by a newer binary.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	ms, err := loadMigrations(embeddedMigrations, "migrations")
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg, ms)
}

func open(ctx context.Context, cfg Config, ms []store.Migration) (*Store, error) {
	s, w, conn, err := openStore(ctx, cfg, ms)
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer conn.Close()
		defer w.close()
		s.write(w)
	}()
	if s.cfg.PollInterval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.poll()
		}()
	}
	return s, nil
}

// openStore opens the database and prepares the writer without starting any goroutine; the
// caller owns w and conn.
func openStore(ctx context.Context, cfg Config, ms []store.Migration) (_ *Store, _ *writer, _ *sql.Conn, err error) {
	if cfg.Path == "" {
		return nil, nil, nil, errors.New("sqlite store: Config.Path is empty")
	}
	if strings.ContainsAny(cfg.Path, "?#") {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: path must not contain '?' or '#'", cfg.Path)
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}

	busy := fmt.Sprintf("_pragma=busy_timeout(%d)", cfg.BusyTimeout.Milliseconds())
	// The writer keeps a larger page cache than the default 2 MiB: every batch touches pages
	// all over the secondary indexes, which would otherwise be read again and again.
	wdb, err := sql.Open("sqlite", cfg.Path+"?"+busy+
		"&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"+
		fmt.Sprintf("&_pragma=cache_size(%d)", writerCacheKiB))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: %w", cfg.Path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	defer func() {
		if err != nil {
			wdb.Close()
		}
	}()
	conn, err := wdb.Conn(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: open: %w", cfg.Path, err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	var mode string
	// The page size takes effect only on a new, empty database, and only before it turns to
	// WAL; the driver runs DSN pragmas in alphabetical order, so both are set here.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA page_size = %d", newPageSize)); err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: %w", cfg.Path, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: %w", cfg.Path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: journal mode is %q, want wal", cfg.Path, mode)
	}
	if err := migrate(ctx, conn, ms, time.Now()); err != nil {
		return nil, nil, nil, fmt.Errorf("%w (database %s)", err, cfg.Path)
	}
	raw, err := openRaw(cfg.Path, cfg.BusyTimeout)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: open writer: %w", cfg.Path, err)
	}
	w, err := prepareWriter(ctx, conn, raw)
	if err != nil {
		raw.close()
		return nil, nil, nil, fmt.Errorf("sqlite store %s: %w", cfg.Path, err)
	}

	// query_only keeps the read pool honest: every write must go through the writer.
	rdb, err := sql.Open("sqlite", cfg.Path+"?"+busy+"&_pragma=query_only(1)")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sqlite store %s: %w", cfg.Path, err)
	}
	rdb.SetMaxOpenConns(cfg.ReadConns)
	rdb.SetMaxIdleConns(cfg.ReadConns)

	s := &Store{
		cfg:  cfg,
		wdb:  wdb,
		rdb:  rdb,
		ops:  make(chan *op),
		quit: make(chan struct{}),
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		w.close()
		rdb.Close()
		return nil, nil, nil, err
	}
	s.SetSignalled(rev)
	return s, w, conn, nil
}

// Stats counts the writer's work since Open.
type Stats struct {
	// Commits is the number of write transactions committed (each one fsync of the WAL).
	Commits int64
	// Operations is the number of operations those transactions carried; Operations/Commits
	// is the mean group-commit batch.
	Operations int64
	// Fallbacks is the number of batches the batched fast path could not commit and that were
	// replayed one savepoint per operation.
	Fallbacks int64
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Operations: s.committedOps.Load(), Fallbacks: s.fallbacks.Load()}
}

// Close stops the writer after the batch it is committing and releases the database. Calls
// waiting to be committed fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.wg.Wait()
		s.closeErr = errors.Join(s.rdb.Close(), s.wdb.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite store %s: close: %w", s.cfg.Path, s.closeErr)
		}
	})
	return s.closeErr
}

// CreateTask implements store.Store.
func (s *Store) CreateTask(ctx context.Context, t *task.Task, ev task.Event) (*task.Task, bool, error) {
	if t == nil || t.ID == "" {
		return nil, false, errors.New("sqlite store: CreateTask: task id is empty")
	}
	o, err := newTaskOp(ctx, opCreate, t, ev)
	if err != nil {
		return nil, false, err
	}
	r := s.submit(o)
	if r.err != nil {
		return nil, false, r.err
	}
	if !r.created {
		return r.existing, false, nil
	}
	stored := t.Clone()
	stored.Revision = r.rev
	return stored, true, nil
}

// UpdateTask implements store.Store.
func (s *Store) UpdateTask(ctx context.Context, t *task.Task, expected int64, ev task.Event) (int64, error) {
	if t == nil || t.ID == "" {
		return 0, errors.New("sqlite store: UpdateTask: task id is empty")
	}
	o, err := newTaskOp(ctx, opUpdate, t, ev)
	if err != nil {
		return 0, err
	}
	o.expected = expected
	r := s.submit(o)
	if r.err != nil {
		return 0, r.err
	}
	// ev is passed by value: the revision is set on the stored event (Events, Changes).
	t.Revision = r.rev
	return r.rev, nil
}

// Compact implements store.Store. A revision beyond the latest committed one compacts up to the
// latest, so changes committed later are never reported as dropped.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	return s.submit(&op{ctx: ctx, kind: opCompact, compact: rev, res: make(chan result, 1)}).err
}

// newTaskOp encodes the task and event (store.EncodeChange) in the caller's goroutine, keeping
// JSON work off the writer.
func newTaskOp(ctx context.Context, kind opKind, t *task.Task, ev task.Event) (*op, error) {
	ev, body, evBody, err := store.EncodeChange(t, ev)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	return &op{
		ctx: ctx, kind: kind,
		t: t.Clone(), body: body, ev: ev, evBody: evBody,
		res: make(chan result, 1),
	}, nil
}

// submit hands o to the writer and waits for its result. A caller whose context ends while its
// operation is being committed gets ctx.Err(), and the operation may still have committed (as
// with any database); CreateTask with a request id is safe to retry.
func (s *Store) submit(o *op) result {
	select {
	case s.ops <- o:
	case <-o.ctx.Done():
		return result{err: o.ctx.Err()}
	case <-s.quit:
		return result{err: ErrClosed}
	}
	select {
	case r := <-o.res:
		return r
	case <-o.ctx.Done():
		return result{err: o.ctx.Err()}
	}
}

// poll notices commits by other processes sharing the file, which the writer cannot see.
func (s *Store) poll() {
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.quit
		cancel()
	}()
	for {
		select {
		case <-s.quit:
			return
		case <-tick.C:
			if rev, err := s.Revision(ctx); err == nil {
				s.Signal(rev)
			}
		}
	}
}
