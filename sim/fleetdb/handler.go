package fleetdb

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
)

// Handler returns the HTTP handler: auth check, counters and faults in front of the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	const v1 = "/api/v1"
	mux.HandleFunc("GET "+v1+"/servers", s.serverList)
	mux.HandleFunc("POST "+v1+"/servers", s.serverCreate)
	mux.HandleFunc("GET "+v1+"/servers/components", s.componentList)
	mux.HandleFunc("GET "+v1+"/servers/{uuid}", s.withServer(s.serverGet))
	mux.HandleFunc("GET "+v1+"/servers/{uuid}/components", s.withServer(s.serverComponents))
	mux.HandleFunc("PUT "+v1+"/servers/{uuid}/components", s.withServer(s.serverComponentsUpdate))
	mux.HandleFunc("GET "+v1+"/servers/{uuid}/attributes", s.withServer(s.attributesList))
	mux.HandleFunc("POST "+v1+"/servers/{uuid}/attributes", s.withServer(s.attributesCreate))
	mux.HandleFunc("GET "+v1+"/servers/{uuid}/attributes/{ns}", s.withServer(s.attributesGet))
	mux.HandleFunc("PUT "+v1+"/servers/{uuid}/attributes/{ns}", s.withServer(s.attributesUpdate))
	mux.HandleFunc("DELETE "+v1+"/servers/{uuid}/attributes/{ns}", s.withServer(s.attributesDelete))
	mux.HandleFunc("GET "+v1+"/servers/{uuid}/versioned-attributes", s.withServer(s.versionedList))
	mux.HandleFunc("GET "+v1+"/servers/{uuid}/versioned-attributes/{ns}", s.withServer(s.versionedList))
	mux.HandleFunc("POST "+v1+"/servers/{uuid}/versioned-attributes", s.withServer(s.versionedCreate))
	mux.HandleFunc("GET "+v1+"/servers/{uuid}/credentials/{slug}", s.withServer(s.credentialGet))
	mux.HandleFunc("PUT "+v1+"/servers/{uuid}/credentials/{slug}", s.withServer(s.credentialPut))
	mux.HandleFunc("GET "+v1+"/server-component-firmwares", s.firmwareList)
	mux.HandleFunc("POST "+v1+"/server-component-firmwares", s.firmwareCreate)
	mux.HandleFunc("GET "+v1+"/server-component-firmwares/{uuid}", s.firmwareGet)
	mux.HandleFunc("GET "+v1+"/server-component-firmware-sets", s.setList)
	mux.HandleFunc("GET "+v1+"/server-component-firmware-sets/{uuid}", s.setGet)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "" {
			pattern = r.Method + " (unrouted)"
		}
		s.mu.Lock()
		s.total++
		s.counts[pattern]++
		authorized := s.cfg.Token == "" || bearer(r) == s.cfg.Token
		if !authorized {
			s.unauth++
		}
		var f *Fault
		if authorized {
			if f = s.matchFault(r); f != nil {
				s.injected++
			}
		}
		s.mu.Unlock()
		if !authorized {
			writeJSON(w, http.StatusUnauthorized, fleetdbapi.ServerResponse{Message: "invalid auth token", Error: "unauthorized"})
			return
		}
		if f != nil && s.applyFault(w, r, f) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, what string) {
	writeJSON(w, http.StatusNotFound, fleetdbapi.ServerResponse{Message: "resource not found", Error: what + ": sql: no rows in result set"})
}

func badRequest(w http.ResponseWriter, msg string, err error) {
	writeJSON(w, http.StatusBadRequest, fleetdbapi.ServerResponse{Message: msg, Error: err.Error()})
}

func item(w http.ResponseWriter, r *http.Request, rec any) {
	writeJSON(w, http.StatusOK, fleetdbapi.ServerResponse{
		Message: "resource retrieved", Record: rec,
		Links: fleetdbapi.ServerResponseLinks{Self: &fleetdbapi.Link{Href: r.URL.RequestURI()}},
	})
}

func created(w http.ResponseWriter, r *http.Request, slug string) {
	uri := r.URL.Path + "/" + slug
	w.Header().Set("Location", uri)
	writeJSON(w, http.StatusCreated, fleetdbapi.ServerResponse{
		Message: "resource created", Slug: slug,
		Links: fleetdbapi.ServerResponseLinks{Self: &fleetdbapi.Link{Href: uri}},
	})
}

func updated(w http.ResponseWriter, r *http.Request, slug string) {
	writeJSON(w, http.StatusOK, fleetdbapi.ServerResponse{
		Message: "resource updated", Slug: slug,
		Links: fleetdbapi.ServerResponseLinks{Self: &fleetdbapi.Link{Href: r.URL.Path}},
	})
}

// pager is fleetdb's pagination: limit (default 100, at most 1000) and a 1-based page.
type pager struct {
	limit, page int
	preload     bool
}

func parsePager(r *http.Request) (pager, error) {
	p := pager{limit: fleetdbapi.DefaultPaginationSize, page: 1}
	q := r.URL.Query()
	var err error
	if v := q.Get("limit"); v != "" {
		if p.limit, err = strconv.Atoi(v); err != nil {
			return p, err
		}
	}
	if v := q.Get("page"); v != "" {
		if p.page, err = strconv.Atoi(v); err != nil {
			return p, err
		}
	}
	if v := q.Get("preload"); v != "" {
		if p.preload, err = strconv.ParseBool(v); err != nil {
			return p, err
		}
	}
	switch {
	case p.limit > fleetdbapi.MaxPaginationSize:
		p.limit = fleetdbapi.MaxPaginationSize
	case p.limit <= 0:
		p.limit = fleetdbapi.DefaultPaginationSize
	}
	if p.page <= 0 {
		p.page = 1
	}
	return p, nil
}

// window returns the [lo, hi) bounds of the page within n records.
func (p pager) window(n int) (int, int) {
	lo := (p.page - 1) * p.limit
	if lo > n {
		lo = n
	}
	return lo, min(lo+p.limit, n)
}

// list writes a page the way fleetdb's listResponse does, with links as paths (as production
// fleetdb returns them).
func list(w http.ResponseWriter, r *http.Request, p pager, records any, pageCount, total int) {
	resp := fleetdbapi.ServerResponse{
		PageSize: p.limit, PageCount: pageCount, Records: records, Page: p.page,
		TotalRecordCount: int64(total), TotalPages: int(math.Ceil(float64(total) / float64(p.limit))),
	}
	u := *r.URL
	with := func(page int) *fleetdbapi.Link {
		q := u.Query()
		q.Set("page", strconv.Itoa(page))
		v := url.URL{Path: u.Path, RawQuery: q.Encode()}
		return &fleetdbapi.Link{Href: v.RequestURI()}
	}
	resp.Links.Self = &fleetdbapi.Link{Href: u.RequestURI()}
	resp.Links.First = with(1)
	resp.Links.Last = with(resp.TotalPages)
	if resp.Page < resp.TotalPages {
		resp.Links.Next = with(resp.Page + 1)
	}
	if resp.Page != 1 {
		resp.Links.Previous = with(resp.Page - 1)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) withServer(h func(http.ResponseWriter, *http.Request, *server)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("uuid"))
		if err != nil {
			badRequest(w, "", fmt.Errorf("%w: %v", fleetdbapi.ErrUUIDParse, err))
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		srv, ok := s.st.byID[id]
		if !ok {
			notFound(w, "server "+id.String())
			return
		}
		h(w, r, srv)
	}
}

// view renders a server: preload adds attributes, the newest versioned attributes and the
// components with their attributes, as fleetdb's list preloading does; get is fleetdb's
// single-server view, whose components carry neither attributes nor firmware.
func (srv *server) view(preload, get bool) fleetdbapi.Server {
	out := srv.Rec
	if !preload && !get {
		return out
	}
	out.Attributes = append([]fleetdbapi.Attributes{}, srv.Attrs...)
	out.VersionedAttributes = latestVA(srv.VAttrs)
	out.Components = []fleetdbapi.ServerComponent{}
	for _, c := range srv.Components {
		rec := c.Rec
		if !get {
			rec.Attributes = append([]fleetdbapi.Attributes{}, c.Attrs...)
		}
		out.Components = append(out.Components, rec)
	}
	return out
}

// full renders a component with attributes and its newest versioned attribute per namespace.
func (c *component) full() fleetdbapi.ServerComponent {
	rec := c.Rec
	rec.Attributes = append([]fleetdbapi.Attributes{}, c.Attrs...)
	rec.VersionedAttributes = latestVA(c.VAttrs)
	return rec
}

func (s *Server) serverList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	q := r.URL.Query()
	attrs, err := parseAttrFilters(q["attr"])
	if err != nil {
		badRequest(w, "invalid filter", err)
		return
	}
	vattrs, err := parseAttrFilters(q["ver_attr"])
	if err != nil {
		badRequest(w, "invalid filter", err)
		return
	}
	facility := q.Get("facility-code")
	withDeleted := q.Get("include-deleted") == "true"
	s.mu.Lock()
	defer s.mu.Unlock()
	var match []*server
	for _, srv := range s.st.Servers {
		if srv.Rec.DeletedAt != nil && !withDeleted {
			continue
		}
		if facility != "" && srv.Rec.FacilityCode != facility {
			continue
		}
		if !matchAll(attrs, srv.Attrs) || !matchAll(vattrs, vaAsAttrs(latestVA(srv.VAttrs))) {
			continue
		}
		match = append(match, srv)
	}
	lo, hi := p.window(len(match))
	out := make([]fleetdbapi.Server, 0, hi-lo)
	for _, srv := range match[lo:hi] {
		out = append(out, srv.view(p.preload, false))
	}
	list(w, r, p, out, len(out), len(match))
}

func (s *Server) serverCreate(w http.ResponseWriter, r *http.Request) {
	var rec fleetdbapi.Server
	if err := json.NewDecoder(r.Body).Decode(&rec); err != nil {
		badRequest(w, "invalid server", err)
		return
	}
	if rec.UUID == uuid.Nil {
		rec.UUID = uuid.New()
	}
	s.mu.Lock()
	_, exists := s.st.byID[rec.UUID]
	s.mu.Unlock()
	if exists {
		badRequest(w, "", fmt.Errorf("duplicate key value violates unique constraint \"servers_pkey\""))
		return
	}
	now := s.cfg.Now().UTC()
	rec.CreatedAt, rec.UpdatedAt = now, now
	rec.Components = nil
	s.AddRawServer(rec)
	created(w, r, rec.UUID.String())
}

func (s *Server) serverGet(w http.ResponseWriter, r *http.Request, srv *server) {
	item(w, r, srv.view(false, true))
}

func (s *Server) serverComponents(w http.ResponseWriter, r *http.Request, srv *server) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	out := fleetdbapi.ServerComponentSlice{}
	for _, c := range srv.Components {
		out = append(out, c.full())
	}
	// fleetdb answers this route unpaginated, with a zero total.
	list(w, r, p, out, len(out), 0)
}

func (s *Server) componentList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	q := r.URL.Query()
	filter := map[string]string{}
	for _, k := range []string{"name", "vendor", "model", "serial", "type"} {
		if v := q.Get("sc_0[" + k + "]"); v != "" {
			filter[k] = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(filter) == 0 {
		// the common unfiltered walk of every component: find the page without building
		// the whole match list
		total := 0
		for _, srv := range s.st.Servers {
			total += len(srv.Components)
		}
		lo, hi := p.window(total)
		out := make(fleetdbapi.ServerComponentSlice, 0, hi-lo)
		i := 0
		for _, srv := range s.st.Servers {
			if i+len(srv.Components) <= lo {
				i += len(srv.Components)
				continue
			}
			for _, c := range srv.Components {
				if i >= lo && i < hi {
					out = append(out, c.full())
				}
				i++
			}
			if i >= hi {
				break
			}
		}
		list(w, r, p, out, len(out), total)
		return
	}
	var match []*component
	for _, srv := range s.st.Servers {
		for _, c := range srv.Components {
			if v, ok := filter["name"]; ok && c.Rec.Name != v {
				continue
			}
			if v, ok := filter["vendor"]; ok && c.Rec.Vendor != v {
				continue
			}
			if v, ok := filter["model"]; ok && c.Rec.Model != v {
				continue
			}
			if v, ok := filter["serial"]; ok && c.Rec.Serial != v {
				continue
			}
			if v, ok := filter["type"]; ok && c.Rec.ComponentTypeSlug != v {
				continue
			}
			match = append(match, c)
		}
	}
	lo, hi := p.window(len(match))
	out := make(fleetdbapi.ServerComponentSlice, 0, hi-lo)
	for _, c := range match[lo:hi] {
		out = append(out, c.full())
	}
	list(w, r, p, out, len(out), len(match))
}

func (s *Server) serverComponentsUpdate(w http.ResponseWriter, r *http.Request, srv *server) {
	var in fleetdbapi.ServerComponentSlice
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badRequest(w, "", fmt.Errorf("server component payload: %w", err))
		return
	}
	if len(in) == 0 {
		badRequest(w, "", fmt.Errorf("server component payload: ServerComponentSlice is empty"))
		return
	}
	byID := map[uuid.UUID]*component{}
	for _, c := range srv.Components {
		byID[c.Rec.UUID] = c
	}
	// Validate everything first: fleetdb applies the slice in one transaction.
	for _, c := range in {
		if c.UUID == uuid.Nil {
			badRequest(w, "component update requires a non-nil UUID", fmt.Errorf("server component payload"))
			return
		}
		if byID[c.UUID] == nil {
			badRequest(w, "", fmt.Errorf("server component payload: component resource referenced by UUID does not exist: %s", c.UUID))
			return
		}
	}
	now := s.cfg.Now().UTC()
	for _, c := range in {
		cur := byID[c.UUID]
		cur.Rec.Name, cur.Rec.Vendor, cur.Rec.Model, cur.Rec.Serial = c.Name, c.Vendor, c.Model, c.Serial
		cur.Rec.UpdatedAt = now
		for _, va := range c.VersionedAttributes {
			cur.VAttrs = append(cur.VAttrs, fleetdbapi.VersionedAttributes{Namespace: va.Namespace, Data: va.Data, CreatedAt: now, LastReportedAt: now})
		}
		for _, a := range c.Attributes {
			if i := findAttr(cur.Attrs, a.Namespace); i >= 0 {
				cur.Attrs[i].Data, cur.Attrs[i].UpdatedAt = a.Data, now
			} else {
				cur.Attrs = append(cur.Attrs, fleetdbapi.Attributes{Namespace: a.Namespace, Data: a.Data, CreatedAt: now, UpdatedAt: now})
			}
		}
	}
	_ = s.save()
	updated(w, r, "")
}

func (s *Server) attributesList(w http.ResponseWriter, r *http.Request, srv *server) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	lo, hi := p.window(len(srv.Attrs))
	list(w, r, p, append([]fleetdbapi.Attributes{}, srv.Attrs[lo:hi]...), hi-lo, len(srv.Attrs))
}

func (s *Server) attributesCreate(w http.ResponseWriter, r *http.Request, srv *server) {
	var a fleetdbapi.Attributes
	if err := json.NewDecoder(r.Body).Decode(&a); err != nil || a.Namespace == "" {
		badRequest(w, "invalid attributes", fmt.Errorf("namespace and data are required: %v", err))
		return
	}
	if findAttr(srv.Attrs, a.Namespace) >= 0 {
		badRequest(w, "", fmt.Errorf("duplicate key value violates unique constraint \"idx_server_namespace\""))
		return
	}
	s.putAttr(srv, a.Namespace, a.Data)
	_ = s.save()
	created(w, r, a.Namespace)
}

func (s *Server) attributesGet(w http.ResponseWriter, r *http.Request, srv *server) {
	i := findAttr(srv.Attrs, r.PathValue("ns"))
	if i < 0 {
		notFound(w, "attribute "+r.PathValue("ns"))
		return
	}
	item(w, r, srv.Attrs[i])
}

func (s *Server) attributesUpdate(w http.ResponseWriter, r *http.Request, srv *server) {
	var a fleetdbapi.Attributes
	if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
		badRequest(w, "invalid attributes", err)
		return
	}
	ns := r.PathValue("ns")
	if findAttr(srv.Attrs, ns) < 0 {
		notFound(w, "attribute "+ns)
		return
	}
	s.putAttr(srv, ns, a.Data)
	_ = s.save()
	updated(w, r, ns)
}

func (s *Server) attributesDelete(w http.ResponseWriter, r *http.Request, srv *server) {
	if i := findAttr(srv.Attrs, r.PathValue("ns")); i >= 0 {
		srv.Attrs = append(srv.Attrs[:i], srv.Attrs[i+1:]...)
		_ = s.save()
	}
	writeJSON(w, http.StatusOK, fleetdbapi.ServerResponse{Message: "resource deleted"})
}

func (s *Server) versionedList(w http.ResponseWriter, r *http.Request, srv *server) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	ns := r.PathValue("ns")
	out := []fleetdbapi.VersionedAttributes{}
	// newest first, as fleetdb orders them
	for i := len(srv.VAttrs) - 1; i >= 0; i-- {
		if ns == "" || srv.VAttrs[i].Namespace == ns {
			out = append(out, srv.VAttrs[i])
		}
	}
	list(w, r, p, out, len(out), len(out))
}

func (s *Server) versionedCreate(w http.ResponseWriter, r *http.Request, srv *server) {
	var va fleetdbapi.VersionedAttributes
	if err := json.NewDecoder(r.Body).Decode(&va); err != nil || va.Namespace == "" {
		badRequest(w, "invalid versioned attributes", fmt.Errorf("namespace and data are required: %v", err))
		return
	}
	now := s.cfg.Now().UTC()
	for i := len(srv.VAttrs) - 1; i >= 0; i-- {
		cur := &srv.VAttrs[i]
		if cur.Namespace != va.Namespace {
			continue
		}
		if equalJSON(cur.Data, va.Data) {
			cur.Tally++
			cur.LastReportedAt = now
			_ = s.save()
			created(w, r, va.Namespace)
			return
		}
		break
	}
	srv.VAttrs = append(srv.VAttrs, fleetdbapi.VersionedAttributes{Namespace: va.Namespace, Data: va.Data, CreatedAt: now, LastReportedAt: now})
	_ = s.save()
	created(w, r, va.Namespace)
}

func (s *Server) credentialGet(w http.ResponseWriter, r *http.Request, srv *server) {
	c, ok := srv.Credentials[r.PathValue("slug")]
	if !ok {
		notFound(w, "credential "+r.PathValue("slug"))
		return
	}
	// fleetdb trims the decrypted password (trailing whitespace in stored secrets).
	c.Password = strings.TrimSpace(c.Password)
	item(w, r, c)
}

func (s *Server) credentialPut(w http.ResponseWriter, r *http.Request, srv *server) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badRequest(w, "invalid credential", err)
		return
	}
	now := s.cfg.Now().UTC()
	slug := r.PathValue("slug")
	c := fleetdbapi.ServerCredential{ServerID: srv.Rec.UUID, SecretType: slug, Username: in.Username, Password: in.Password, CreatedAt: now, UpdatedAt: now}
	if old, ok := srv.Credentials[slug]; ok {
		c.CreatedAt = old.CreatedAt
	}
	srv.Credentials[slug] = c
	_ = s.save()
	updated(w, r, slug)
}

func (s *Server) firmwareList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	var match []fleetdbapi.ComponentFirmwareVersion
	for _, f := range s.st.Firmware {
		if v := q.Get("vendor"); v != "" && f.Vendor != v {
			continue
		}
		if v := q.Get("version"); v != "" && f.Version != v {
			continue
		}
		if v := q.Get("filename"); v != "" && f.Filename != v {
			continue
		}
		if v := q.Get("checksum"); v != "" && f.Checksum != v {
			continue
		}
		if v := q.Get("component"); v != "" && f.Component != v {
			continue
		}
		if !containsAll(f.Model, q["model"]) {
			continue
		}
		match = append(match, *f)
	}
	lo, hi := p.window(len(match))
	out := append([]fleetdbapi.ComponentFirmwareVersion{}, match[lo:hi]...)
	list(w, r, p, out, len(out), len(match))
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *Server) firmwareCreate(w http.ResponseWriter, r *http.Request) {
	var f fleetdbapi.ComponentFirmwareVersion
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		badRequest(w, "invalid firmware", err)
		return
	}
	f.CreatedAt = s.cfg.Now().UTC()
	f.UpdatedAt = f.CreatedAt
	id := s.AddFirmware(f)
	created(w, r, id.String())
}

func (s *Server) firmwareGet(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("uuid"))
	if err != nil {
		badRequest(w, "", fmt.Errorf("%w: %v", fleetdbapi.ErrUUIDParse, err))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.st.fwByID[id]
	if !ok {
		notFound(w, "firmware "+id.String())
		return
	}
	item(w, r, *f)
}

// view renders a set with its attributes and member firmware records.
func (st *state) viewSet(fs *firmwareSet) fleetdbapi.ComponentFirmwareSet {
	out := fs.Rec
	out.Attributes = append([]fleetdbapi.Attributes{}, fs.Rec.Attributes...)
	out.ComponentFirmware = []fleetdbapi.ComponentFirmwareVersion{}
	for _, id := range fs.Firmware {
		if f, ok := st.fwByID[id]; ok {
			out.ComponentFirmware = append(out.ComponentFirmware, *f)
		}
	}
	return out
}

func (s *Server) setList(w http.ResponseWriter, r *http.Request) {
	p, err := parsePager(r)
	if err != nil {
		badRequest(w, "invalid pagination params", err)
		return
	}
	q := r.URL.Query()
	filters, err := parseAttrFilters(q["attr"])
	if err != nil {
		badRequest(w, "invalid filter", err)
		return
	}
	// vendor+model (+labels) select by the labels attribute, as fleetdb does: values are
	// lowercased and "default=true" is implied when no other label is given.
	if len(filters) == 0 && (q.Get("vendor") != "" || q.Get("model") != "" || q.Get("labels") != "") {
		if q.Get("vendor") == "" || q.Get("model") == "" {
			badRequest(w, "empty required attribute", fmt.Errorf("vendor and model are required"))
			return
		}
		add := func(k, v string) {
			filters = append(filters, attrFilter{ns: NSFirmwareSetLabels, keys: []string{k}, op: "eq", value: strings.ToLower(v)})
		}
		add("vendor", q.Get("vendor"))
		add("model", q.Get("model"))
		extra := false
		for _, kv := range strings.Split(q.Get("labels"), ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				add(k, v)
				extra = true
			}
		}
		if !extra {
			add("default", "true")
		}
	}
	name := q.Get("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	var match []fleetdbapi.ComponentFirmwareSet
	for _, fs := range s.st.Sets {
		if name != "" && fs.Rec.Name != name {
			continue
		}
		if !matchAll(filters, fs.Rec.Attributes) {
			continue
		}
		match = append(match, s.st.viewSet(fs))
	}
	lo, hi := p.window(len(match))
	out := append([]fleetdbapi.ComponentFirmwareSet{}, match[lo:hi]...)
	list(w, r, p, out, len(out), len(match))
}

func (s *Server) setGet(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("uuid"))
	if err != nil {
		badRequest(w, "", fmt.Errorf("%w: %v", fleetdbapi.ErrUUIDParse, err))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fs, ok := s.st.setByID[id]
	if !ok {
		notFound(w, "firmware set "+id.String())
		return
	}
	item(w, r, s.st.viewSet(fs))
}

// attrFilter is one "attr" query parameter: namespace[~key.path[~op~value]].
type attrFilter struct {
	ns    string
	keys  []string
	op    string
	value string
}

func parseAttrFilters(vals []string) ([]attrFilter, error) {
	var out []attrFilter
	for _, v := range vals {
		parts := strings.Split(v, "~")
		f := attrFilter{ns: parts[0]}
		if len(parts) > 1 {
			f.keys = strings.Split(parts[1], ".")
		}
		if len(parts) >= 4 {
			f.op, f.value = parts[2], parts[3]
			switch f.op {
			case "eq", "like", "gt", "lt":
			default:
				return nil, fmt.Errorf("attribute filter %q: unknown operator %q", v, f.op)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func vaAsAttrs(vas []fleetdbapi.VersionedAttributes) []fleetdbapi.Attributes {
	out := make([]fleetdbapi.Attributes, 0, len(vas))
	for _, va := range vas {
		out = append(out, fleetdbapi.Attributes{Namespace: va.Namespace, Data: va.Data})
	}
	return out
}

func matchAll(filters []attrFilter, attrs []fleetdbapi.Attributes) bool {
	for _, f := range filters {
		i := findAttr(attrs, f.ns)
		if i < 0 || !f.match(attrs[i].Data) {
			return false
		}
	}
	return true
}

// match evaluates the filter against attribute data like json_extract_path_text does.
func (f attrFilter) match(data json.RawMessage) bool {
	if len(f.keys) == 0 {
		return true
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return false
	}
	for _, k := range f.keys {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false
		}
	}
	if f.op == "" {
		return true
	}
	var text string
	switch x := v.(type) {
	case string:
		text = x
	case nil:
		return false
	default:
		b, _ := json.Marshal(x)
		text = string(b)
	}
	switch f.op {
	case "eq":
		return text == f.value
	case "like":
		pat := f.value
		if !strings.Contains(pat, "%") {
			pat += "%"
		}
		return likeMatch(text, pat)
	case "gt", "lt":
		a, err1 := strconv.Atoi(text)
		b, err2 := strconv.Atoi(f.value)
		if err1 != nil || err2 != nil {
			return false
		}
		if f.op == "gt" {
			return a > b
		}
		return a < b
	}
	return false
}

// likeMatch is SQL LIKE with % only.
func likeMatch(s, pat string) bool {
	parts := strings.Split(pat, "%")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, p)
		}
		j := strings.Index(s, p)
		if j < 0 {
			return false
		}
		s = s[j+len(p):]
	}
	return s == ""
}

func equalJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
