package audit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is a Store in the PostgreSQL database of the task store (internal/store/postgres
// creates its audit_events table), so with several replicas the trail is one and nothing of
// value stays in a replica's files. Appends are group-committed as with SQLite.
type Postgres struct {
	pool *pgxpool.Pool
	name string
	gc   *groupCommit
}

var _ Store = (*Postgres)(nil)

// NewPostgres returns a Store on pool, a connection pool to a database the PostgreSQL task store
// has migrated; name identifies it in errors and must not hold a password. Close does not close
// the pool, which belongs to the task store.
func NewPostgres(pool *pgxpool.Pool, name string) *Postgres {
	s := &Postgres{pool: pool, name: name}
	s.gc = newGroupCommit("audit db "+name, s.writeBatch)
	return s
}

// Append implements Store. It waits for the commit whatever ctx says: the event describes a
// call that already happened.
func (s *Postgres) Append(_ context.Context, e Event) (int64, error) {
	return s.gc.append(e)
}

func postgresParam(i int) string { return "$" + strconv.Itoa(i) }

// appendTimeout bounds one batch, so a database that stops answering fails the appends.
const appendTimeout = 30 * time.Second

func (s *Postgres) writeBatch(batch []Event) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	args := make([]any, 0, 8*len(batch))
	for _, e := range batch {
		args = append(args, eventArgs(e)...)
	}
	rows, err := s.pool.Query(ctx, insertEvents(len(batch), postgresParam), args...)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: append: %w", s.name, err)
	}
	defer rows.Close()
	ids := make([]int64, 0, len(batch))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("audit db %s: append: %w", s.name, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit db %s: append: %w", s.name, err)
	}
	// An identity column numbers VALUES rows in order; RETURNING promises no order.
	slices.Sort(ids)
	return ids, nil
}

// Query implements Store.
func (s *Postgres) Query(ctx context.Context, f Filter) ([]Event, error) {
	q, args := selectEvents(f, postgresParam)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: query: %w", s.name, err)
	}
	defer rows.Close()
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("audit db %s: query: %w", s.name, err)
	}
	return out, nil
}

// Close implements Store: it stops accepting events and commits those already waiting.
func (s *Postgres) Close() error {
	s.gc.close()
	return nil
}
