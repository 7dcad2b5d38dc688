package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/flasher-dev/flasher/internal/store"
)

const (
	// sqlObserveCurrent makes an observation current unless a newer one already is.
	sqlObserveCurrent = `INSERT INTO observations (server_id, instance, component, vendor, model, serial, version, source,
			observed_ns, task_id, collect_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (server_id, instance) DO UPDATE SET
			component = excluded.component, vendor = excluded.vendor, model = excluded.model, serial = excluded.serial,
			version = excluded.version, source = excluded.source, observed_ns = excluded.observed_ns,
			task_id = excluded.task_id, collect_id = excluded.collect_id
		WHERE excluded.observed_ns >= observations.observed_ns`
	sqlObserveHistory = `INSERT INTO observation_history (server_id, instance, component, vendor, model, serial, version, source,
			observed_ns, task_id, collect_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	// sqlTrimHistory keeps the newest store.HistoryLimit entries of one instance.
	sqlTrimHistory = `DELETE FROM observation_history WHERE server_id = $1 AND instance = $2 AND seq NOT IN (
			SELECT seq FROM observation_history WHERE server_id = $1 AND instance = $2
			ORDER BY observed_ns DESC, seq DESC LIMIT $3)`

	observationColumns = "server_id, instance, component, vendor, model, serial, version, source, observed_ns, task_id, collect_id"
)

// RecordObservations implements store.Observations, in one transaction of its own: observations
// take no revision (watchers follow tasks), so they need not wait for the task writer. Rows are
// written in (server, instance) order, so two replicas recording the same instances cannot
// deadlock; the sort is stable, so a later observation of an instance in obs is still written
// later and wins a tie.
func (s *Store) RecordObservations(ctx context.Context, obs []store.Observation) error {
	if err := store.CheckObservations(obs); err != nil {
		return fmt.Errorf("postgres store: %w", err)
	}
	if len(obs) == 0 {
		return nil
	}
	sorted := slices.Clone(obs)
	slices.SortStableFunc(sorted, func(a, b store.Observation) int {
		return cmp.Or(cmp.Compare(a.ServerID, b.ServerID), cmp.Compare(a.Instance, b.Instance))
	})
	b := &pgx.Batch{}
	for i, o := range sorted {
		args := []any{o.ServerID, o.Instance, o.Component, o.Vendor, o.Model, o.Serial, o.Version, string(o.Source),
			store.UnixNanos(o.ObservedAt), o.TaskID, o.CollectID}
		b.Queue(sqlObserveCurrent, args...)
		b.Queue(sqlObserveHistory, args...)
		if i == len(sorted)-1 || sorted[i+1].ServerID != o.ServerID || sorted[i+1].Instance != o.Instance {
			b.Queue(sqlTrimHistory, o.ServerID, o.Instance, store.HistoryLimit)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres store %s: record %d observations (first: server %s, %s): %w",
			s.name, len(obs), sorted[0].ServerID, sorted[0].Instance, err)
	}
	return nil
}

// CurrentObservations implements store.Observations.
func (s *Store) CurrentObservations(ctx context.Context, serverIDs []string) ([]store.Observation, error) {
	if len(serverIDs) == 0 {
		return s.queryObservations(ctx, "SELECT "+observationColumns+" FROM observations ORDER BY server_id, instance")
	}
	return s.queryObservations(ctx, "SELECT "+observationColumns+
		" FROM observations WHERE server_id = ANY($1) ORDER BY server_id, instance", serverIDs)
}

// ObservationHistory implements store.Observations.
func (s *Store) ObservationHistory(ctx context.Context, serverID, instance string) ([]store.Observation, error) {
	return s.queryObservations(ctx, "SELECT "+observationColumns+
		" FROM observation_history WHERE server_id = $1 AND instance = $2 ORDER BY observed_ns DESC, seq DESC", serverID, instance)
}

func (s *Store) queryObservations(ctx context.Context, query string, args ...any) ([]store.Observation, error) {
	ctx, cancel, err := readContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: read observations: %w", s.name, err)
	}
	defer rows.Close()
	var out []store.Observation
	for rows.Next() {
		var o store.Observation
		var src string
		var ns int64
		if err := rows.Scan(&o.ServerID, &o.Instance, &o.Component, &o.Vendor, &o.Model, &o.Serial, &o.Version,
			&src, &ns, &o.TaskID, &o.CollectID); err != nil {
			return nil, fmt.Errorf("postgres store %s: read observations: %w", s.name, err)
		}
		o.Source, o.ObservedAt = store.Source(src), store.FromUnixNanos(ns)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store %s: read observations: %w", s.name, err)
	}
	return out, nil
}
