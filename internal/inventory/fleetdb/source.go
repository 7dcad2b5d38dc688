// Package fleetdb is the inventory source backed by fleetdb (formerly Hollow serverservice),
// through fleetdb's own v1 client: servers with their components and installed firmware,
// BMC credentials fetched on demand, the firmware catalog and firmware sets with their labels.
// It caches servers and the catalog for a bounded time, never caches credentials, and wraps
// inventory.ErrUnavailable whenever fleetdb cannot answer, so nothing is planned or flashed on
// data older than the configured freshness. It also writes installed versions back after a
// verified install. It never logs credentials and never flashes anything.
package fleetdb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// Config configures the fleetdb source.
type Config struct {
	// URL is fleetdb's base URL ("https://fleetdb.example", without /api/v1).
	URL string
	// Token is a static bearer token. With OIDC client credentials, leave it empty and pass an
	// HTTPClient that authenticates (golang.org/x/oauth2/clientcredentials Config.Client).
	Token string
	// HTTPClient makes the requests; a plain client when nil.
	HTTPClient *http.Client
	// RequestTimeout bounds each HTTP request (one page of a listing); default 10s.
	RequestTimeout time.Duration
	// ServerTTL is how long servers are served from cache; default 30s. Negative disables.
	ServerTTL time.Duration
	// CatalogTTL is how long the catalog is served from cache; default 60s. Negative disables.
	CatalogTTL time.Duration
	// PageSize is the page size of listings; default and maximum 1000 (fleetdb's maximum).
	PageSize int
	// Concurrency is how many pages of one listing are fetched at once; default 4.
	Concurrency int
	// Facility, when set, limits Servers to one facility code.
	Facility string
	// Schemes overrides version schemes by "vendor/component" (vendor normalized, component
	// lower case, e.g. "dell/bios") or "component"; see Scheme.
	Schemes map[string]string
	// BMC is the TLS setting given to every server's BMC: fleetdb stores none.
	BMC BMCTLS
	// Now is the clock of the caches; time.Now when nil.
	Now func() time.Time
}

// BMCTLS is how Flasher verifies BMC certificates for servers from fleetdb, which stores no
// TLS setting of its own.
type BMCTLS struct {
	// CAFile verifies every server's BMC certificate (empty: the system roots).
	CAFile string
	// InsecureSkipVerify turns verification off for every server; InsecureServers for the
	// servers listed (fleetdb UUIDs) only.
	InsecureSkipVerify bool
	InsecureServers    []string
}

// insecure reports whether the BMC certificate of server id goes unverified.
func (b BMCTLS) insecure(id string) bool {
	return b.InsecureSkipVerify || slices.ContainsFunc(b.InsecureServers, func(s string) bool { return strings.EqualFold(s, id) })
}

// Source is the fleetdb inventory source. It is safe for concurrent use.
type Source struct {
	cfg    Config
	client *fleetdbapi.Client
	doer   *countingDoer
	group  singleflight.Group

	mu      sync.Mutex
	list    *serverList
	one     map[string]cachedServer
	catalog *inventory.Catalog
	catAt   time.Time
	dropped int
}

type serverList struct {
	at      time.Time
	servers []*inventory.Server
	byID    map[string]*inventory.Server
}

type cachedServer struct {
	at  time.Time
	srv *inventory.Server
}

var _ inventory.Source = (*Source)(nil)

// New returns a source; it does not contact fleetdb until asked.
func New(cfg Config) (*Source, error) {
	if cfg.URL == "" {
		return nil, errors.New("fleetdb: no URL configured")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.ServerTTL == 0 {
		cfg.ServerTTL = 30 * time.Second
	}
	if cfg.CatalogTTL == 0 {
		cfg.CatalogTTL = 60 * time.Second
	}
	if cfg.PageSize <= 0 || cfg.PageSize > fleetdbapi.MaxPaginationSize {
		cfg.PageSize = fleetdbapi.MaxPaginationSize
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	doer := &countingDoer{inner: hc}
	var (
		c   *fleetdbapi.Client
		err error
	)
	if cfg.Token != "" {
		c, err = fleetdbapi.NewClientWithToken(cfg.Token, cfg.URL, doer)
	} else {
		c, err = fleetdbapi.NewClient(cfg.URL, doer)
	}
	if err != nil {
		return nil, fmt.Errorf("fleetdb: %w", err)
	}
	return &Source{cfg: cfg, client: c, doer: doer, one: map[string]cachedServer{}}, nil
}

// Client is the underlying fleetdb client, for the attribute workflow.
func (s *Source) Client() *fleetdbapi.Client { return s.client }

// countingDoer counts HTTP requests; the benchmark and tests report them.
type countingDoer struct {
	inner fleetdbapi.Doer
	n     atomic.Int64
}

func (d *countingDoer) Do(r *http.Request) (*http.Response, error) {
	d.n.Add(1)
	return d.inner.Do(r)
}

// Stats are the source's counters.
type Stats struct {
	// Requests is every HTTP request made to fleetdb.
	Requests int64
	// DroppedFirmware is the firmware records skipped for missing a component or version.
	DroppedFirmware int
}

// Stats returns the counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Requests: s.doer.n.Load(), DroppedFirmware: s.dropped}
}

// call runs one client call with the request timeout and maps its error.
func (s *Source) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		return mapErr(what, err)
	}
	return nil
}

// mapErr sorts fleetdb errors: 404 is inventory.ErrNotFound; a failing, slow, unreachable or
// token-refusing fleetdb is inventory.ErrUnavailable (tasks wait or fail with
// INVENTORY_UNAVAILABLE); other 4xx are errors of their own.
func mapErr(what string, err error) error {
	var se fleetdbapi.ServerError
	if errors.As(err, &se) {
		switch {
		case se.StatusCode == http.StatusNotFound:
			return fmt.Errorf("fleetdb: %s: %w", what, inventory.ErrNotFound)
		case se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: fleetdb refused the credentials for %s (HTTP %d)", inventory.ErrUnavailable, what, se.StatusCode)
		case se.StatusCode >= 500 || se.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%w: fleetdb: %s: HTTP %d: %s", inventory.ErrUnavailable, what, se.StatusCode, se.Message)
		}
		return fmt.Errorf("fleetdb: %s: HTTP %d: %s %s", what, se.StatusCode, se.Message, se.ErrorMessage)
	}
	var ce *fleetdbapi.ClientError
	if errors.As(err, &ce) {
		return fmt.Errorf("fleetdb: %s: %w", what, err)
	}
	// transport errors, timeouts and undecodable answers
	return fmt.Errorf("%w: fleetdb: %s: %w", inventory.ErrUnavailable, what, err)
}

func (s *Source) fresh(at time.Time, ttl time.Duration) bool {
	return ttl > 0 && !at.IsZero() && s.cfg.Now().Sub(at) < ttl
}

// Server returns one server, from cache while fresh.
func (s *Source) Server(ctx context.Context, id string) (*inventory.Server, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("fleetdb: server %q: not a fleetdb server UUID: %w", id, inventory.ErrNotFound)
	}
	key := u.String()
	s.mu.Lock()
	if c, ok := s.one[key]; ok && s.fresh(c.at, s.cfg.ServerTTL) {
		s.mu.Unlock()
		return copyServer(c.srv), nil
	}
	if s.list != nil && s.fresh(s.list.at, s.cfg.ServerTTL) {
		if srv, ok := s.list.byID[key]; ok {
			s.mu.Unlock()
			return copyServer(srv), nil
		}
	}
	s.mu.Unlock()
	v, err, _ := s.group.Do("server/"+key, func() (any, error) { return s.fetchServer(ctx, u) })
	if err != nil {
		return nil, err
	}
	return copyServer(v.(*inventory.Server)), nil
}

// fetchServer reads one server (attributes) and its components (with firmware): fleetdb's
// server view carries no component firmware, its component listing does.
func (s *Source) fetchServer(ctx context.Context, id uuid.UUID) (*inventory.Server, error) {
	var rec *fleetdbapi.Server
	if err := s.call(ctx, "server "+id.String(), func(ctx context.Context) (err error) {
		rec, _, err = s.client.Get(ctx, id)
		return err
	}); err != nil {
		return nil, err
	}
	if rec.DeletedAt != nil {
		// fleetdb's server view includes soft-deleted servers; Flasher must not flash them
		return nil, fmt.Errorf("fleetdb: server %s was deleted at %s: %w", id, rec.DeletedAt.Format(time.RFC3339), inventory.ErrNotFound)
	}
	var comps fleetdbapi.ServerComponentSlice
	if err := s.call(ctx, "components of server "+id.String(), func(ctx context.Context) (err error) {
		comps, _, err = s.client.GetComponents(ctx, id, nil)
		return err
	}); err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return nil, err
	}
	c := newConverted(*rec, s.cfg.BMC)
	if c.srv.ID == uuid.Nil.String() {
		c.srv.ID = id.String()
	}
	for _, comp := range comps {
		c.add(comp)
	}
	srv := c.done()
	now := s.cfg.Now()
	s.mu.Lock()
	s.one[srv.ID] = cachedServer{at: now, srv: srv}
	if s.list != nil {
		if _, ok := s.list.byID[srv.ID]; ok {
			s.list.byID[srv.ID] = srv
			for i, x := range s.list.servers {
				if x.ID == srv.ID {
					s.list.servers[i] = srv
				}
			}
		}
	}
	s.mu.Unlock()
	return srv, nil
}

// Servers lists every server (of the configured facility), ordered by id, from cache while fresh.
func (s *Source) Servers(ctx context.Context) ([]*inventory.Server, error) {
	s.mu.Lock()
	if s.list != nil && s.fresh(s.list.at, s.cfg.ServerTTL) {
		out := copyServers(s.list.servers)
		s.mu.Unlock()
		return out, nil
	}
	s.mu.Unlock()
	v, err, _ := s.group.Do("servers", func() (any, error) { return s.fetchServers(ctx) })
	if err != nil {
		return nil, err
	}
	return copyServers(v.([]*inventory.Server)), nil
}

// fetchServers pages through the servers (with attributes) and through all components (with
// firmware): about (servers + components) / PageSize requests instead of one per server.
func (s *Source) fetchServers(ctx context.Context) ([]*inventory.Server, error) {
	srvPages, err := listAll(ctx, s, "servers", func(ctx context.Context, page int) ([]fleetdbapi.Server, *fleetdbapi.ServerResponse, error) {
		return s.client.List(ctx, &fleetdbapi.ServerListParams{
			FacilityCode:     s.cfg.Facility,
			PaginationParams: &fleetdbapi.PaginationParams{Limit: s.cfg.PageSize, Page: page, Preload: true},
		})
	})
	if err != nil {
		return nil, err
	}
	compPages, err := listAll(ctx, s, "components", func(ctx context.Context, page int) ([]fleetdbapi.ServerComponent, *fleetdbapi.ServerResponse, error) {
		return s.client.ListComponents(ctx, &fleetdbapi.ServerComponentListParams{
			Pagination: &fleetdbapi.PaginationParams{Limit: s.cfg.PageSize, Page: page},
		})
	})
	if err != nil {
		return nil, err
	}
	byID := map[uuid.UUID]*converted{}
	var order []uuid.UUID
	for _, page := range srvPages {
		for _, r := range page {
			if r.UUID == uuid.Nil || byID[r.UUID] != nil {
				continue
			}
			byID[r.UUID] = newConverted(r, s.cfg.BMC)
			order = append(order, r.UUID)
		}
	}
	seen := map[uuid.UUID]bool{}
	for _, page := range compPages {
		for _, r := range page {
			if r.UUID != uuid.Nil {
				if seen[r.UUID] {
					continue // a record shifted onto the next page while paging
				}
				seen[r.UUID] = true
			}
			if c := byID[r.ServerUUID]; c != nil {
				c.add(r)
			}
		}
	}
	out := make([]*inventory.Server, 0, len(order))
	for _, id := range order {
		out = append(out, byID[id].done())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	l := &serverList{at: s.cfg.Now(), servers: out, byID: make(map[string]*inventory.Server, len(out))}
	for _, srv := range out {
		l.byID[srv.ID] = srv
	}
	s.mu.Lock()
	s.list = l
	s.mu.Unlock()
	return out, nil
}

// maxPages bounds a listing, should fleetdb keep offering a next page.
const maxPages = 100000

// listAll fetches every page of a listing and returns them in page order. Page 1 tells the
// number of pages; the rest are fetched Concurrency at a time. Without a page count it walks
// next links one by one until a page comes back empty. Callers de-duplicate: fleetdb's firmware
// set listing ignores the page and repeats every record on each page.
func listAll[T any](ctx context.Context, s *Source, what string, fetch func(context.Context, int) ([]T, *fleetdbapi.ServerResponse, error)) ([][]T, error) {
	get := func(ctx context.Context, page int) (recs []T, resp *fleetdbapi.ServerResponse, err error) {
		err = s.call(ctx, fmt.Sprintf("list %s page %d", what, page), func(ctx context.Context) error {
			recs, resp, err = fetch(ctx, page)
			return err
		})
		return recs, resp, err
	}
	first, resp, err := get(ctx, 1)
	if err != nil {
		return nil, err
	}
	out := [][]T{first}
	if resp == nil || len(first) == 0 || !resp.HasNextPage() {
		return out, nil
	}
	if total := resp.TotalPages; total > 1 {
		if total > maxPages {
			return nil, fmt.Errorf("%w: fleetdb: list %s: %d pages", inventory.ErrUnavailable, what, total)
		}
		out = append(out, make([][]T, total-1)...)
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.cfg.Concurrency)
		for page := 2; page <= total; page++ {
			g.Go(func() error {
				recs, _, err := get(gctx, page)
				out[page-1] = recs
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		return out, nil
	}
	for page := 2; page <= maxPages; page++ {
		recs, resp, err := get(ctx, page)
		if err != nil {
			return nil, err
		}
		out = append(out, recs)
		if resp == nil || len(recs) == 0 || !resp.HasNextPage() {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: fleetdb: list %s: more than %d pages", inventory.ErrUnavailable, what, maxPages)
}

// Credentials fetches a server's BMC credentials from fleetdb on every call: they are never
// cached, so a rotated password is used at once and nothing is flashed on stale credentials.
func (s *Source) Credentials(ctx context.Context, serverID string) (inventory.Credentials, error) {
	u, err := uuid.Parse(serverID)
	if err != nil {
		return inventory.Credentials{}, fmt.Errorf("fleetdb: credentials of server %q: not a fleetdb server UUID: %w", serverID, inventory.ErrNotFound)
	}
	var cred *fleetdbapi.ServerCredential
	if err := s.call(ctx, "BMC credentials of server "+u.String(), func(ctx context.Context) (err error) {
		cred, _, err = s.client.GetCredential(ctx, u, CredentialBMC)
		return err
	}); err != nil {
		return inventory.Credentials{}, err
	}
	if cred.Username == "" {
		return inventory.Credentials{}, fmt.Errorf("fleetdb: BMC credentials of server %s have no username: %w", u, inventory.ErrNotFound)
	}
	return inventory.Credentials{Username: cred.Username, Password: cred.Password}, nil
}

// Catalog returns the firmware records and firmware sets, from cache while fresh.
func (s *Source) Catalog(ctx context.Context) (*inventory.Catalog, error) {
	s.mu.Lock()
	if s.catalog != nil && s.fresh(s.catAt, s.cfg.CatalogTTL) {
		c := s.catalog
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	v, err, _ := s.group.Do("catalog", func() (any, error) { return s.fetchCatalog(ctx) })
	if err != nil {
		return nil, err
	}
	return v.(*inventory.Catalog), nil
}

func (s *Source) fetchCatalog(ctx context.Context) (*inventory.Catalog, error) {
	cat := &inventory.Catalog{}
	byID := map[string]bool{}
	dropped := 0
	addFW := func(rec fleetdbapi.ComponentFirmwareVersion) {
		id := rec.UUID.String()
		if rec.UUID == uuid.Nil || byID[id] {
			return
		}
		byID[id] = true
		fw, ok := catalogRecord(rec, s.cfg.Schemes)
		if !ok {
			dropped++
			return
		}
		cat.Firmware = append(cat.Firmware, fw)
	}
	fwPages, err := listAll(ctx, s, "firmware", func(ctx context.Context, page int) ([]fleetdbapi.ComponentFirmwareVersion, *fleetdbapi.ServerResponse, error) {
		return s.client.ListServerComponentFirmware(ctx, &fleetdbapi.ComponentFirmwareVersionListParams{
			Pagination: &fleetdbapi.PaginationParams{Limit: s.cfg.PageSize, Page: page},
		})
	})
	if err != nil {
		return nil, err
	}
	setPages, err := listAll(ctx, s, "firmware sets", func(ctx context.Context, page int) ([]fleetdbapi.ComponentFirmwareSet, *fleetdbapi.ServerResponse, error) {
		return s.client.ListServerComponentFirmwareSet(ctx, &fleetdbapi.ComponentFirmwareSetListParams{
			Pagination: &fleetdbapi.PaginationParams{Limit: s.cfg.PageSize, Page: page},
		})
	})
	if err != nil {
		return nil, err
	}
	for _, page := range fwPages {
		for _, r := range page {
			addFW(r)
		}
	}
	setSeen := map[string]bool{}
	for _, page := range setPages {
		for _, r := range page {
			id := r.UUID.String()
			if r.UUID == uuid.Nil || setSeen[id] {
				continue
			}
			setSeen[id] = true
			set := &inventory.FirmwareSet{ID: id, Name: strings.TrimSpace(r.Name), Labels: map[string]string{}}
			for _, a := range r.Attributes {
				if a.Namespace != NSFirmwareSetLabels {
					continue
				}
				for k, v := range stringMap(a.Data) {
					set.Labels[strings.ToLower(strings.TrimSpace(k))] = v
				}
			}
			member := map[string]bool{}
			for _, f := range r.ComponentFirmware {
				// members are listed in full; keep any the firmware listing did not return
				addFW(f)
				fid := f.UUID.String()
				if f.UUID != uuid.Nil && !member[fid] {
					member[fid] = true
					set.Firmware = append(set.Firmware, fid)
				}
			}
			cat.Sets = append(cat.Sets, set)
		}
	}
	// a set member that was dropped (no component or version) cannot be planned: leave it out
	kept := map[string]bool{}
	for _, fw := range cat.Firmware {
		kept[fw.ID] = true
	}
	for _, set := range cat.Sets {
		ids := set.Firmware[:0]
		for _, id := range set.Firmware {
			if kept[id] {
				ids = append(ids, id)
			}
		}
		set.Firmware = ids
	}
	sort.SliceStable(cat.Firmware, func(i, j int) bool { return cat.Firmware[i].ID < cat.Firmware[j].ID })
	sort.SliceStable(cat.Sets, func(i, j int) bool { return cat.Sets[i].ID < cat.Sets[j].ID })
	s.mu.Lock()
	s.catalog, s.catAt, s.dropped = cat, s.cfg.Now(), dropped
	s.mu.Unlock()
	return cat, nil
}

func copyServer(s *inventory.Server) *inventory.Server {
	c := *s
	c.Components = append([]inventory.Component(nil), s.Components...)
	return &c
}

func copyServers(in []*inventory.Server) []*inventory.Server {
	out := make([]*inventory.Server, len(in))
	for i, s := range in {
		out[i] = copyServer(s)
	}
	return out
}
