// Package fleet owns Flasher's observed fleet state: which firmware version each component
// instance runs as Flasher itself last read it (through the BMC or the host agent), kept in the
// store with a bounded history; the overlay of those observations on the declared inventory that
// every plan starts from; the read-only collect operation; and compliance, the comparison of each
// server's firmware set with what it runs. It never flashes anything and never imports gen/.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/store"
)

// Config configures a Fleet.
type Config struct {
	// Store keeps the observations. Required.
	Store store.Observations
	// Inventory is the declared inventory the observations overlay. Required.
	Inventory inventory.Source
	// MaxAge is how old an observation may be before compliance calls it stale (0: never).
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Fleet is the declared inventory overlaid with the freshest observations. It implements
// inventory.Source, so planners and executors built on it plan from what the hardware last
// reported, and inventory.Observer, so executors and agents feed it.
type Fleet struct {
	cfg Config
	log *slog.Logger
}

var (
	_ inventory.Source   = (*Fleet)(nil)
	_ inventory.Observer = (*Fleet)(nil)
)

// New returns a Fleet.
func New(cfg Config) (*Fleet, error) {
	if cfg.Store == nil || cfg.Inventory == nil {
		return nil, errors.New("fleet: Config.Store and Config.Inventory are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Fleet{cfg: cfg, log: cfg.Logger.With("part", "fleet")}, nil
}

// Declared returns the inventory source the observations overlay.
func (f *Fleet) Declared() inventory.Source { return f.cfg.Inventory }

// Observe implements inventory.Observer: it stores every component of the reading that has a
// version. A reading from an unknown source is refused.
func (f *Fleet) Observe(ctx context.Context, r inventory.Reading) error {
	src := store.Source(r.Source)
	if src != store.SourceBMC && src != store.SourceAgent {
		return fmt.Errorf("fleet: server %s: reading from unknown source %q", r.ServerID, r.Source)
	}
	at := r.At
	if at.IsZero() {
		at = f.cfg.Now()
	}
	keys := Instances(r.Components)
	obs := make([]store.Observation, 0, len(r.Components))
	for i, c := range r.Components {
		if strings.TrimSpace(c.Version) == "" {
			continue
		}
		obs = append(obs, store.Observation{
			ServerID: r.ServerID, Instance: keys[i], Component: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial,
			Version: strings.TrimSpace(c.Version), Source: src, ObservedAt: at, TaskID: r.TaskID, CollectID: r.CollectID,
		})
	}
	if err := f.cfg.Store.RecordObservations(ctx, obs); err != nil {
		return fmt.Errorf("fleet: server %s: record %d observations: %w", r.ServerID, len(obs), err)
	}
	return nil
}

// Server implements inventory.Source: the declared server with each component's freshest version.
func (f *Fleet) Server(ctx context.Context, id string) (*inventory.Server, error) {
	srv, err := f.cfg.Inventory.Server(ctx, id)
	if err != nil {
		return nil, err
	}
	obs, err := f.cfg.Store.CurrentObservations(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("fleet: server %s: observations: %w", id, err)
	}
	return Overlay(srv, obs), nil
}

// Servers implements inventory.Source.
func (f *Fleet) Servers(ctx context.Context) ([]*inventory.Server, error) {
	servers, err := f.cfg.Inventory.Servers(ctx)
	if err != nil {
		return nil, err
	}
	return f.overlayAll(ctx, servers, true)
}

// overlayAll overlays the observations of servers; all says servers is the whole fleet, so one
// read of every observation serves it.
func (f *Fleet) overlayAll(ctx context.Context, servers []*inventory.Server, all bool) ([]*inventory.Server, error) {
	var ids []string
	if !all {
		ids = make([]string, len(servers))
		for i, s := range servers {
			ids[i] = s.ID
		}
	}
	if len(servers) == 0 {
		return nil, nil
	}
	obs, err := f.cfg.Store.CurrentObservations(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("fleet: observations: %w", err)
	}
	byServer := make(map[string][]store.Observation, len(servers))
	for _, o := range obs {
		byServer[o.ServerID] = append(byServer[o.ServerID], o)
	}
	out := make([]*inventory.Server, len(servers))
	for i, s := range servers {
		out[i] = Overlay(s, byServer[s.ID])
	}
	return out, nil
}

// Credentials implements inventory.Source.
func (f *Fleet) Credentials(ctx context.Context, serverID string) (inventory.Credentials, error) {
	return f.cfg.Inventory.Credentials(ctx, serverID)
}

// Catalog implements inventory.Source.
func (f *Fleet) Catalog(ctx context.Context) (*inventory.Catalog, error) {
	return f.cfg.Inventory.Catalog(ctx)
}

// Overlay returns a copy of srv whose components carry the freshest version: an observation
// replaces the declared version when it is newer than the declaration (a declaration without a
// time, as the file inventory's, is older than any observation) or states the same version.
// Components nobody observed stay declared. obs are the server's current observations.
func Overlay(srv *inventory.Server, obs []store.Observation) *inventory.Server {
	out := *srv
	out.Components = make([]inventory.Component, len(srv.Components))
	byKey := make(map[string]*store.Observation, len(obs))
	for i := range obs {
		byKey[obs[i].Instance] = &obs[i]
	}
	keys := Instances(srv.Components)
	for i, c := range srv.Components {
		if c.VersionSource == "" {
			c.VersionSource = string(store.SourceDeclared)
		}
		// A later declaration of the version Flasher observed (fleetdb after Flasher's own
		// write-back) confirms the observation rather than replacing it.
		if o := byKey[keys[i]]; o != nil && (o.ObservedAt.After(c.VersionAt) || strings.TrimSpace(o.Version) == strings.TrimSpace(c.Version)) {
			c.Version, c.VersionSource, c.VersionAt = o.Version, string(o.Source), o.ObservedAt
		}
		out.Components[i] = c
	}
	return &out
}

// Instances returns the identity of each component instance of one server, by the rule the
// planner and the executors use to find an instance again: the normalized slug and the serial
// when the instance has one; otherwise the slug alone when the instance is its slug's only one
// without a serial, else the slug and its position among those (the order the source lists
// them in, which BMCs and agents keep from one read to the next).
func Instances(comps []inventory.Component) []string {
	slugs := make([]string, len(comps))
	noSerial := map[string]int{}
	for i, c := range comps {
		slugs[i] = strings.ToLower(firmware.NormalizeSlug(c.Slug))
		if strings.TrimSpace(c.Serial) == "" {
			noSerial[slugs[i]]++
		}
	}
	seen := map[string]int{}
	out := make([]string, len(comps))
	for i, c := range comps {
		slug := slugs[i]
		switch serial := strings.ToLower(strings.TrimSpace(c.Serial)); {
		case serial != "":
			out[i] = slug + "/" + serial
		case noSerial[slug] == 1:
			out[i] = slug
		default:
			out[i] = slug + "#" + strconv.Itoa(seen[slug])
			seen[slug]++
		}
	}
	return out
}
