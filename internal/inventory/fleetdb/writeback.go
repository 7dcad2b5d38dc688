package fleetdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// ErrAmbiguousComponent is wrapped when a write-back names a component slug the server has
// more than once without a serial to tell them apart.
var ErrAmbiguousComponent = errors.New("ambiguous component")

// SetInstalledVersion records, after a verified install, that a server's component now runs
// version, the way fleetdb's inventory collectors do: a new firmware versioned attribute on
// the component (in the namespace its current version came from, out-of-band by default),
// keeping the attribute's other fields. The component is found by Flasher slug and serial; an
// empty serial is allowed when the server has one component of that slug. The server is then
// re-read, so the next Server or Servers call (and so the next plan) sees the new version.
func (s *Source) SetInstalledVersion(ctx context.Context, serverID, slug, serial, version string) error {
	u, err := uuid.Parse(serverID)
	if err != nil {
		return fmt.Errorf("fleetdb: write back %s of server %q: not a fleetdb server UUID: %w", slug, serverID, inventory.ErrNotFound)
	}
	if strings.TrimSpace(version) == "" {
		return fmt.Errorf("fleetdb: write back %s of server %s: empty version", slug, u)
	}
	var comps fleetdbapi.ServerComponentSlice
	if err := s.call(ctx, "components of server "+u.String(), func(ctx context.Context) (err error) {
		comps, _, err = s.client.GetComponents(ctx, u, nil)
		return err
	}); err != nil {
		return fmt.Errorf("write back %s of server %s: %w", slug, u, err)
	}
	var match []fleetdbapi.ServerComponent
	for _, c := range comps {
		cs := Slug(c.ComponentTypeSlug)
		if cs == "" {
			cs = Slug(c.ComponentTypeName)
		}
		if !strings.EqualFold(cs, Slug(slug)) {
			continue
		}
		if serial != "" && !strings.EqualFold(strings.TrimSpace(c.Serial), strings.TrimSpace(serial)) {
			continue
		}
		match = append(match, c)
	}
	switch {
	case len(match) == 0:
		return fmt.Errorf("fleetdb: write back %s (serial %q) of server %s: no such component: %w", slug, serial, u, inventory.ErrNotFound)
	case len(match) > 1 && serial == "":
		return fmt.Errorf("fleetdb: write back %s of server %s: %d components, give a serial: %w", slug, u, len(match), ErrAmbiguousComponent)
	}
	// Duplicated records of one component (same serial) are all updated, so neither shows the
	// old version.
	update := make(fleetdbapi.ServerComponentSlice, 0, len(match))
	for _, c := range match {
		ns, data := NSFirmwareOutOfBand, map[string]any{}
		if _, n, _ := installed(c.VersionedAttributes); n != "" {
			ns = n
		}
		for _, va := range c.VersionedAttributes {
			if va.Namespace == ns {
				_ = json.Unmarshal(va.Data, &data)
			}
		}
		if data == nil {
			data = map[string]any{}
		}
		data["installed"] = version
		raw, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("fleetdb: write back %s of server %s: %w", slug, u, err)
		}
		c.Attributes = nil
		c.VersionedAttributes = []fleetdbapi.VersionedAttributes{{Namespace: ns, Data: raw}}
		update = append(update, c)
	}
	if err := s.call(ctx, "update components of server "+u.String(), func(ctx context.Context) error {
		_, err := s.client.UpdateComponents(ctx, u, update)
		return err
	}); err != nil {
		return fmt.Errorf("write back %s of server %s: %w", slug, u, err)
	}
	if _, err := s.fetchServer(ctx, u); err != nil {
		// the write succeeded; make sure no cached copy shows the old version
		s.Invalidate(u.String())
	}
	return nil
}

// Invalidate drops a server from the caches, so the next Server or Servers call reads fleetdb.
func (s *Source) Invalidate(serverID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.one, serverID)
	if s.list != nil {
		if _, ok := s.list.byID[serverID]; ok {
			s.list = nil
		}
	}
}
