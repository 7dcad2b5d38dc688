package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

var _ store.Leases = (*Store)(nil)

// limitsLock is the advisory lock key under which leases are counted against the cluster-wide
// limits and taken, so two replicas cannot both take the last free slot ("limits" in ASCII).
const limitsLock int64 = 0x6c696d697473

// sqlAcquire takes the server's lease when nobody holds it, or when the lease held has expired
// and is either the same task's (takeover) or a task that is no longer ACTIVE. Its RETURNING
// row is missing when the lease is held.
const sqlAcquire = `INSERT INTO server_leases AS l (server_id, task_id, method, owner, epoch, expires_at)
	VALUES ($1, $2, $3, $4, 1, now() + $5 * interval '1 millisecond')
	ON CONFLICT (server_id) DO UPDATE SET task_id = excluded.task_id, method = excluded.method, owner = excluded.owner,
		epoch = l.epoch + 1, expires_at = excluded.expires_at
	WHERE l.expires_at <= now() AND (l.task_id = excluded.task_id OR NOT EXISTS (
		SELECT 1 FROM tasks t WHERE t.id = l.task_id AND t.state = 'ACTIVE'))
	RETURNING epoch, expires_at`

// AcquireLease implements store.Leases.
func (s *Store) AcquireLease(ctx context.Context, l store.Lease, d time.Duration, limits store.LeaseLimits) (store.Lease, error) {
	if l.ServerID == "" || l.TaskID == "" || l.Owner == "" {
		return store.Lease{}, fmt.Errorf("postgres store: acquire lease: server, task and owner are required (got %q, %q, %q)", l.ServerID, l.TaskID, l.Owner)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var heldTask *string
		if err := tx.QueryRow(ctx, "SELECT task_id FROM server_leases WHERE server_id = $1", l.ServerID).Scan(&heldTask); err != nil && !errNoRows(err) {
			return err
		}
		takeover := heldTask != nil && *heldTask == l.TaskID
		if !takeover {
			// Another ACTIVE task of this server (one that never had a lease, as after a
			// migration) keeps the server busy too.
			var busy bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tasks WHERE server_id = $1 AND state = 'ACTIVE' AND id <> $2)",
				l.ServerID, l.TaskID).Scan(&busy); err != nil {
				return err
			}
			if busy {
				return store.ErrLeaseHeld
			}
			if ok, err := withinLimits(ctx, tx, l, limits); err != nil || !ok {
				if err == nil {
					err = store.ErrLeaseHeld
				}
				return err
			}
		}
		err := tx.QueryRow(ctx, sqlAcquire, l.ServerID, l.TaskID, string(l.Method), l.Owner, d.Milliseconds()).Scan(&l.Epoch, &l.Expires)
		if errNoRows(err) {
			return store.ErrLeaseHeld
		}
		return err
	})
	if errors.Is(err, store.ErrLeaseHeld) {
		return store.Lease{}, fmt.Errorf("postgres store: server %s for task %s: %w", l.ServerID, l.TaskID, err)
	}
	if err != nil {
		return store.Lease{}, fmt.Errorf("postgres store %s: acquire lease on server %s for task %s: %w", s.name, l.ServerID, l.TaskID, err)
	}
	return l, nil
}

// withinLimits counts the live leases of other servers under the limits lock, which the
// caller's transaction holds until it commits its own lease.
func withinLimits(ctx context.Context, tx pgx.Tx, l store.Lease, limits store.LeaseLimits) (bool, error) {
	perMethod := limits.PerMethod[l.Method]
	if limits.MaxActive <= 0 && perMethod <= 0 {
		return true, nil
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", limitsLock); err != nil {
		return false, err
	}
	var total, sameMethod int
	if err := tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE method = $2) FROM server_leases
		WHERE expires_at > now() AND server_id <> $1`, l.ServerID, string(l.Method)).Scan(&total, &sameMethod); err != nil {
		return false, err
	}
	return (limits.MaxActive <= 0 || total < limits.MaxActive) && (perMethod <= 0 || sameMethod < perMethod), nil
}

// RenewLeases implements store.Leases. A lease already expired is not renewed, even if nobody
// took it: its owner must treat it as lost, as it may have been taken meanwhile.
func (s *Store) RenewLeases(ctx context.Context, owner string, held []store.Lease, d time.Duration) ([]store.Lease, error) {
	if len(held) == 0 {
		return nil, nil
	}
	servers := make([]string, len(held))
	epochs := make([]int64, len(held))
	for i, l := range held {
		servers[i], epochs[i] = l.ServerID, l.Epoch
	}
	rows, err := s.pool.Query(ctx, `UPDATE server_leases l SET expires_at = now() + $4 * interval '1 millisecond'
		FROM unnest($1::text[], $2::bigint[]) AS h(server_id, epoch)
		WHERE l.server_id = h.server_id AND l.epoch = h.epoch AND l.owner = $3 AND l.expires_at > now()
		RETURNING l.server_id`, servers, epochs, owner, d.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: renew %d leases of %s: %w", s.name, len(held), owner, err)
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: renew %d leases of %s: %w", s.name, len(held), owner, err)
	}
	kept := make(map[string]bool, len(renewed))
	for _, id := range renewed {
		kept[id] = true
	}
	var lost []store.Lease
	for _, l := range held {
		if !kept[l.ServerID] {
			lost = append(lost, l)
		}
	}
	return lost, nil
}

// ReleaseLease implements store.Leases.
func (s *Store) ReleaseLease(ctx context.Context, l store.Lease) error {
	if _, err := s.pool.Exec(ctx, "UPDATE server_leases SET expires_at = now() WHERE server_id = $1 AND owner = $2 AND epoch = $3",
		l.ServerID, l.Owner, l.Epoch); err != nil {
		return fmt.Errorf("postgres store %s: release lease on server %s: %w", s.name, l.ServerID, err)
	}
	return nil
}

// Orphans implements store.Leases.
func (s *Store) Orphans(ctx context.Context) ([]store.Lease, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT t.server_id, t.id, t.method FROM tasks t
		LEFT JOIN server_leases l ON l.server_id = t.server_id
		WHERE t.state = 'ACTIVE' AND (l.server_id IS NULL OR l.expires_at <= now() OR l.task_id <> t.id)
		ORDER BY t.seq`)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: orphaned tasks: %w", s.name, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Lease, error) {
		var l store.Lease
		var m string
		err := r.Scan(&l.ServerID, &l.TaskID, &m)
		l.Method = task.Method(m)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: orphaned tasks: %w", s.name, err)
	}
	return out, nil
}
