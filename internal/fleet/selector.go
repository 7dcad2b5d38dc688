package fleet

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory"
)

// Labels a selector may name besides the servers' own labels: the server fields the declared
// inventory keeps.
var selectorLabels = []string{"vendor", "model", "facility"}

// labelName is what a server's own label may be called.
var labelName = regexp.MustCompile(`^[a-z][a-z0-9_./-]{0,62}$`)

// Selector names servers. Its fields narrow each other (a server must pass every one given);
// a selector that gives none selects nothing unless All says the whole fleet is meant.
type Selector struct {
	// ServerIDs selects these servers (all of them must exist).
	ServerIDs []string
	// Labels selects servers whose label equals the value: vendor, model, facility (vendor and
	// model compared as the planner compares them), or a label the inventory declares on its
	// servers (site, rack, ...; compared exactly).
	Labels map[string]string
	// All selects every server; it may not be combined with the other fields.
	All bool
}

// SelectorError is a selector that cannot be used, naming the offending field.
type SelectorError struct {
	Field, Reason string
}

func (e *SelectorError) Error() string { return fmt.Sprintf("selector %s: %s", e.Field, e.Reason) }

// ErrUnknownServer is wrapped by Select for a named server that does not exist.
var ErrUnknownServer = errors.New("unknown server")

// Validate checks the selector without looking at the fleet.
func (s Selector) Validate() error {
	empty := len(s.ServerIDs) == 0 && len(s.Labels) == 0
	switch {
	case s.All && !empty:
		return &SelectorError{Field: "all", Reason: "all: true selects every server and cannot be combined with server_ids or labels"}
	case !s.All && empty:
		return &SelectorError{Field: "all", Reason: "empty selector: name server_ids or labels, or say all: true for the whole fleet"}
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(selectorLabels, k) && !labelName.MatchString(k) {
			return &SelectorError{Field: "labels." + k, Reason: fmt.Sprintf("%q is not a label name (lower-case letters, digits, _ . / -)", k)}
		}
		if strings.TrimSpace(s.Labels[k]) == "" {
			return &SelectorError{Field: "labels." + k, Reason: "empty value"}
		}
	}
	for i, id := range s.ServerIDs {
		if strings.TrimSpace(id) == "" {
			return &SelectorError{Field: fmt.Sprintf("server_ids[%d]", i), Reason: "empty server id"}
		}
	}
	return nil
}

// Select returns the servers of all (ordered by id) that s selects, in id order.
func (s Selector) Select(all []*inventory.Server) ([]*inventory.Server, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var want map[string]bool
	if len(s.ServerIDs) > 0 {
		want = make(map[string]bool, len(s.ServerIDs))
		for _, id := range s.ServerIDs {
			want[id] = true
		}
	}
	found := 0
	var out []*inventory.Server
	for _, srv := range all {
		if want != nil {
			if !want[srv.ID] {
				continue
			}
			found++
		}
		if s.matchLabels(srv) {
			out = append(out, srv)
		}
	}
	// A label no server declares is a typo more likely than a wish to select nothing.
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		if slices.Contains(selectorLabels, k) {
			continue
		}
		if !slices.ContainsFunc(all, func(srv *inventory.Server) bool { _, ok := srv.Labels[k]; return ok }) {
			return nil, &SelectorError{Field: "labels." + k, Reason: fmt.Sprintf("unknown label %q: no server declares it (known: %s, and the servers' own labels)", k, strings.Join(selectorLabels, ", "))}
		}
	}
	if want != nil && found < len(want) {
		have := make(map[string]bool, len(all))
		for _, srv := range all {
			have[srv.ID] = true
		}
		for i, id := range s.ServerIDs {
			if !have[id] {
				return nil, fmt.Errorf("%w: %w", &SelectorError{Field: fmt.Sprintf("server_ids[%d]", i), Reason: fmt.Sprintf("server %q does not exist", id)}, ErrUnknownServer)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s Selector) matchLabels(srv *inventory.Server) bool {
	for k, v := range s.Labels {
		switch k {
		case "vendor":
			if firmware.NormalizeVendor(srv.Vendor) != firmware.NormalizeVendor(v) {
				return false
			}
		case "model":
			if firmware.NormalizeModel(srv.Model) != firmware.NormalizeModel(v) {
				return false
			}
		case "facility":
			if !strings.EqualFold(strings.TrimSpace(srv.Facility), strings.TrimSpace(v)) {
				return false
			}
		default:
			if got, ok := srv.Labels[k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}
