package plan

import (
	"context"
	"fmt"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/task"
)

// RequestFor returns the planning request of a task.
func RequestFor(t *task.Task) Request {
	return Request{Mode: t.Mode, Method: t.Method, FirmwareSet: t.FirmwareSet, Firmware: t.Firmware, Force: t.Force, Reinstall: t.Reinstall}
}

// SourcePlanner plans tasks against an inventory source: the server's installed versions and
// the catalog as the source knows them now. It does no I/O of its own beyond the Source calls.
type SourcePlanner struct {
	Source  inventory.Source
	Planner *Planner
}

// NewSourcePlanner returns a SourcePlanner over src.
func NewSourcePlanner(src inventory.Source) *SourcePlanner {
	return &SourcePlanner{Source: src, Planner: New()}
}

// Plan plans t for its server.
func (sp *SourcePlanner) Plan(ctx context.Context, t *task.Task) (*task.Plan, error) {
	srv, err := sp.Source.Server(ctx, t.ServerID)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.ServerID, err)
	}
	cat, err := sp.Source.Catalog(ctx)
	if err != nil {
		return nil, fmt.Errorf("firmware catalog: %w", err)
	}
	return sp.Planner.Plan(srv, cat, RequestFor(t))
}
