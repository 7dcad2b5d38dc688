package fleet

import (
	"context"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

// SweepConfig configures Sweep.
type SweepConfig struct {
	// MaxAge: a server with a component never observed, or observed longer ago than this, is
	// collected. Sweep does nothing when it is 0 (the default: the sweep is off).
	MaxAge time.Duration
	// Interval between rounds (0 means MaxAge/4).
	Interval time.Duration
	// Concurrency bounds servers read at once (0 means the collector's default).
	Concurrency int
}

// Sweep keeps observations younger than cfg.MaxAge: every Interval it collects, through the
// BMC, the servers whose oldest observation is older, until ctx ends. Failures are left in the
// log and retried next round.
func (c *Collector) Sweep(ctx context.Context, cfg SweepConfig) error {
	if cfg.MaxAge <= 0 {
		return nil
	}
	if cfg.Interval <= 0 {
		cfg.Interval = cfg.MaxAge / 4
	}
	log := c.cfg.Fleet.log.With("sweep_max_age", cfg.MaxAge)
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		if ids, err := c.due(ctx, cfg.MaxAge); err != nil {
			log.Warn("sweep: list servers", "err", err)
		} else if len(ids) > 0 {
			res, err := c.Collect(ctx, CollectRequest{Selector: Selector{ServerIDs: ids}, Method: task.MethodOutOfBand, Concurrency: cfg.Concurrency}, nil)
			if err != nil && ctx.Err() == nil {
				log.Warn("sweep: collect", "servers", len(ids), "err", err)
			}
			failed := 0
			for _, r := range res {
				if r.State == CollectFailed {
					failed++
					log.Warn("sweep: collect failed", "server", r.ServerID, "code", r.Code, "message", r.Message)
				}
			}
			log.Info("sweep round", "servers", len(ids), "failed", failed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// due lists the servers with a component unobserved or observed before now-maxAge.
func (c *Collector) due(ctx context.Context, maxAge time.Duration) ([]string, error) {
	servers, err := c.cfg.Fleet.Servers(ctx)
	if err != nil {
		return nil, err
	}
	cutoff := c.cfg.Fleet.cfg.Now().Add(-maxAge)
	var ids []string
	for _, s := range servers {
		for _, comp := range s.Components {
			if comp.VersionSource == "declared" || comp.VersionAt.Before(cutoff) {
				ids = append(ids, s.ID)
				break
			}
		}
	}
	return ids, nil
}
