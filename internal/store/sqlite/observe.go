package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/flasher-dev/flasher/internal/store"
)

const (
	// sqlObserveCurrent makes an observation current unless a newer one already is.
	sqlObserveCurrent = `INSERT INTO observations (server_id, instance, component, vendor, model, serial, version, source,
			observed_ns, task_id, collect_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (server_id, instance) DO UPDATE SET
			component = excluded.component, vendor = excluded.vendor, model = excluded.model, serial = excluded.serial,
			version = excluded.version, source = excluded.source, observed_ns = excluded.observed_ns,
			task_id = excluded.task_id, collect_id = excluded.collect_id
		WHERE excluded.observed_ns >= observations.observed_ns`
	sqlObserveHistory = `INSERT INTO observation_history (server_id, instance, component, vendor, model, serial, version, source,
			observed_ns, task_id, collect_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// sqlTrimHistory keeps the newest store.HistoryLimit entries of one instance.
	sqlTrimHistory = `DELETE FROM observation_history WHERE server_id = ? AND instance = ? AND seq NOT IN (
			SELECT seq FROM observation_history WHERE server_id = ? AND instance = ?
			ORDER BY observed_ns DESC, seq DESC LIMIT ?)`

	observationColumns = "server_id, instance, component, vendor, model, serial, version, source, observed_ns, task_id, collect_id"
	// idsPerQuery bounds the server ids one CurrentObservations statement binds.
	idsPerQuery = 500
)

// RecordObservations implements store.Observations. The observations go through the writer with
// the task changes, so they share its group commits; they take no revision (watchers follow
// tasks, not observations).
func (s *Store) RecordObservations(ctx context.Context, obs []store.Observation) error {
	if err := store.CheckObservations(obs); err != nil {
		return fmt.Errorf("sqlite store: %w", err)
	}
	if len(obs) == 0 {
		return nil
	}
	return s.submit(&op{ctx: ctx, kind: opObserve, obs: append([]store.Observation(nil), obs...), res: make(chan result, 1)}).err
}

// writeObservations runs the statements of one opObserve through exec, inside the writer's
// transaction (either path).
func writeObservations(exec func(query string, args ...any) error, obs []store.Observation) error {
	type key struct{ server, instance string }
	touched := map[key]bool{}
	for _, o := range obs {
		args := []any{o.ServerID, o.Instance, o.Component, o.Vendor, o.Model, o.Serial, o.Version, string(o.Source),
			store.UnixNanos(o.ObservedAt), o.TaskID, o.CollectID}
		if err := exec(sqlObserveCurrent, args...); err != nil {
			return fmt.Errorf("sqlite store: observation of server %s, %s: %w", o.ServerID, o.Instance, err)
		}
		if err := exec(sqlObserveHistory, args...); err != nil {
			return fmt.Errorf("sqlite store: observation history of server %s, %s: %w", o.ServerID, o.Instance, err)
		}
		touched[key{o.ServerID, o.Instance}] = true
	}
	for k := range touched {
		if err := exec(sqlTrimHistory, k.server, k.instance, k.server, k.instance, store.HistoryLimit); err != nil {
			return fmt.Errorf("sqlite store: trim observation history of server %s, %s: %w", k.server, k.instance, err)
		}
	}
	return nil
}

// CurrentObservations implements store.Observations.
func (s *Store) CurrentObservations(ctx context.Context, serverIDs []string) ([]store.Observation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(serverIDs) == 0 {
		return s.queryObservations(ctx, "SELECT "+observationColumns+" FROM observations ORDER BY server_id, instance")
	}
	ids := append([]string(nil), serverIDs...)
	var out []store.Observation
	for len(ids) > 0 {
		n := min(len(ids), idsPerQuery)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		part, err := s.queryObservations(ctx, "SELECT "+observationColumns+" FROM observations WHERE server_id IN ("+
			in(n)+") ORDER BY server_id, instance", args...)
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
		ids = ids[n:]
	}
	if len(serverIDs) > idsPerQuery {
		sortObservations(out)
	}
	return out, nil
}

// ObservationHistory implements store.Observations.
func (s *Store) ObservationHistory(ctx context.Context, serverID, instance string) ([]store.Observation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.queryObservations(ctx, "SELECT "+observationColumns+
		" FROM observation_history WHERE server_id = ? AND instance = ? ORDER BY observed_ns DESC, seq DESC", serverID, instance)
}

func (s *Store) queryObservations(ctx context.Context, query string, args ...any) ([]store.Observation, error) {
	rows, err := s.rdb.QueryContext(uninterrupted(ctx), query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: read observations: %w", err)
	}
	defer rows.Close()
	var out []store.Observation
	for rows.Next() {
		var o store.Observation
		var src string
		var ns int64
		if err := rows.Scan(&o.ServerID, &o.Instance, &o.Component, &o.Vendor, &o.Model, &o.Serial, &o.Version,
			&src, &ns, &o.TaskID, &o.CollectID); err != nil {
			return nil, fmt.Errorf("sqlite store: read observations: %w", err)
		}
		o.Source, o.ObservedAt = store.Source(src), store.FromUnixNanos(ns)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: read observations: %w", err)
	}
	return out, nil
}

func sortObservations(obs []store.Observation) {
	slices.SortFunc(obs, func(a, b store.Observation) int {
		if c := strings.Compare(a.ServerID, b.ServerID); c != 0 {
			return c
		}
		return strings.Compare(a.Instance, b.Instance)
	})
}

// execOn adapts a database/sql connection to writeObservations.
func execOn(ctx context.Context, conn *sql.Conn) func(string, ...any) error {
	return func(q string, args ...any) error {
		_, err := conn.ExecContext(ctx, q, args...)
		return err
	}
}
