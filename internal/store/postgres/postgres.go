// Package postgres is the store.Store for several flasher-server replicas sharing one PostgreSQL
// database (pgx, pgxpool). Writes of one process go through a single writer goroutine that
// commits every operation waiting at that moment in one transaction (group commit: one WAL flush
// covers a batch). Every write transaction first locks the one-row revision counter and holds it
// to commit, so revisions, assigned store-wide by that counter, become visible in the order they
// were assigned: a reader on any replica that sees revision N sees every revision below it, which
// is what lets watchers poll the change log by revision and never miss a change. LISTEN/NOTIFY
// only wakes subscribers early; polling the revision is the path correctness rests on, because
// notifications are lost on a disconnect and through transaction poolers. It holds no business
// rules: task changes are made by internal/task and only recorded here.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("postgres store: closed")

// notifyChannel is the LISTEN/NOTIFY channel commits are announced on; the payload is the
// committed revision.
const notifyChannel = "flasher_changes"

// Config configures Open. Only DSN is required.
type Config struct {
	// DSN is a PostgreSQL connection string (postgres://user@host:port/db?sslmode=... or
	// key=value form).
	DSN string
	// Password, when not empty, replaces the DSN's password (read from a file, so it stays out
	// of process arguments and environment).
	Password string
	// MaxConns is the pool size (default 16).
	MaxConns int32
	// MaxBatch caps how many operations one write transaction commits (default 256).
	MaxBatch int
	// PollInterval is how often the store reads the revision to notice commits by other
	// replicas when no notification arrived (default 250ms).
	PollInterval time.Duration
	// NoListen turns LISTEN off: subscribers are woken by polling alone. Tests use it to show
	// correctness does not depend on notifications.
	NoListen bool
	// Logger receives the listener's reconnects (default slog.Default()).
	Logger *slog.Logger
}

const (
	defaultPageSize    = 100
	maxPageSize        = 1000
	defaultChangeLimit = 100
	maxChangeLimit     = 1000
)

// Store is the PostgreSQL store.Store. Create it with Open.
type Store struct {
	cfg  Config
	pool *pgxpool.Pool
	name string // the DSN without its password, for errors and logs
	log  *slog.Logger

	ops  chan *op
	quit chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once

	store.Signals // Subscribe; the writer, the listener and the poller all signal

	commits, committedOps atomic.Int64 // for Stats
}

var _ store.Store = (*Store)(nil)

// Open connects to the database, applies pending migrations under an advisory lock (so replicas
// starting together migrate once) and starts the writer. It fails with store.ErrSchemaTooNew on
// a database migrated by a newer binary, and with a clear error when the database cannot be
// reached.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg, ms)
}

func open(ctx context.Context, cfg Config, ms []store.Migration) (_ *Store, err error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres store: Config.DSN is empty")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if cfg.Password != "" {
		pcfg.ConnConfig.Password = cfg.Password
	}
	pcfg.MaxConns = cfg.MaxConns
	name := Redact(cfg.DSN)

	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("postgres store %s: database unreachable: %w", name, err)
	}
	if err := migrate(ctx, pool, ms); err != nil {
		return nil, fmt.Errorf("postgres store %s: %w", name, err)
	}
	s := &Store{
		cfg:  cfg,
		pool: pool,
		name: name,
		log:  cfg.Logger.With("part", "store", "database", name),
		ops:  make(chan *op),
		quit: make(chan struct{}),
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		return nil, err
	}
	s.SetSignalled(rev)
	s.start(s.write)
	s.start(s.poll)
	if !cfg.NoListen {
		s.start(s.listen)
	}
	return s, nil
}

func (s *Store) start(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Pool returns the store's connection pool, for the parts of the server that keep their state
// in the same database (the audit trail).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Name returns the database the store uses, without its password.
func (s *Store) Name() string { return s.name }

// Ping reports whether the database answers, for readiness checks.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres store %s: %w", s.name, err)
	}
	return nil
}

// Stats counts the writer's work since Open.
type Stats struct {
	// Commits is the number of write transactions committed.
	Commits int64
	// Operations is the number of operations those transactions carried.
	Operations int64
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Operations: s.committedOps.Load()}
}

// Close stops the writer after the batch it is committing and closes the pool. Calls waiting
// to be committed fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// Redact returns dsn with its password replaced, for logs and errors. A DSN it cannot parse is
// replaced as a whole: it might hold a password in a form not recognised here.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return "(unparsable PostgreSQL DSN)"
		}
		return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// CreateTask implements store.Store.
func (s *Store) CreateTask(ctx context.Context, t *task.Task, ev task.Event) (*task.Task, bool, error) {
	if t == nil || t.ID == "" {
		return nil, false, errors.New("postgres store: CreateTask: task id is empty")
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
		return 0, errors.New("postgres store: UpdateTask: task id is empty")
	}
	o, err := newTaskOp(ctx, opUpdate, t, ev)
	if err != nil {
		return 0, err
	}
	o.expected = expected
	if l, ok := store.FenceFrom(ctx); ok {
		o.fence = &l
	}
	r := s.submit(o)
	if r.err != nil {
		return 0, r.err
	}
	t.Revision = r.rev
	return r.rev, nil
}

// newTaskOp encodes the task and event (store.EncodeChange) in the caller's goroutine, keeping
// JSON work off the writer.
func newTaskOp(ctx context.Context, kind opKind, t *task.Task, ev task.Event) (*op, error) {
	ev, body, evBody, err := store.EncodeChange(t, ev)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	return &op{
		ctx: ctx, kind: kind,
		t: t.Clone(), body: body, ev: ev, evBody: evBody,
		res: make(chan result, 1),
	}, nil
}

// submit hands o to the writer and waits for its result. A caller whose context ends while its
// operation is being committed gets ctx.Err(), and the operation may still have committed;
// CreateTask with a request id is safe to retry.
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

// closing returns a context cancelled when the store closes.
func (s *Store) closing() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.quit:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

// poll notices commits by other replicas: the correctness path for subscribers.
func (s *Store) poll() {
	ctx, cancel := s.closing()
	defer cancel()
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
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

// listen holds one connection LISTENing for commits of other replicas, to wake subscribers
// before the next poll. It reconnects with a growing delay; while it is away, polling carries on.
func (s *Store) listen() {
	ctx, cancel := s.closing()
	defer cancel()
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, func() { delay = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("change notifications interrupted; polling continues", "retry_in", delay, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, connected func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool: it stays in LISTEN mode until it is closed.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	connected()
	// A commit between the last poll and LISTEN would be noticed only at the next poll.
	if rev, err := s.Revision(ctx); err == nil {
		s.Signal(rev)
	}
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var rev int64
		if n.Payload == rolloutPayload {
			s.Wake() // a rollout changed on another replica
		} else if _, err := fmt.Sscan(n.Payload, &rev); err == nil {
			s.Signal(rev)
		}
	}
}
