// Package fleetdb is a fleetdb-compatible HTTP server for tests and demos: the subset of the
// fleetdb (formerly Hollow serverservice) v1 REST API that Flasher uses, served from memory
// (optionally saved to a JSON file) with the JSON shapes of the fleetdb client package's own
// types, so the shapes cannot drift from github.com/metal-toolbox/fleetdb v1.20.3. It is a
// fixture, not a fleetdb replacement: no database, no OIDC, no scopes, no secrets encryption,
// no server-side validation beyond what the tests need. Faults (status codes, hangs, slow
// responses) can be injected and every request is counted. It listens on loopback only.
package fleetdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
)

// Attribute namespaces the simulator writes when it is seeded in Flasher's terms; they are the
// ones fleetdb's own inventory code (alloy, component-inventory) uses.
const (
	// NSVendor holds {"vendor","model","serial"} of a server.
	NSVendor = "sh.hollow.alloy.server_vendor_attributes"
	// NSBMC holds {"address"} of a server's BMC.
	NSBMC = "sh.hollow.bmc_info"
	// NSFirmwareOutOfBand is the component versioned attribute {"installed": "<version>"}
	// written by out-of-band inventory collection.
	NSFirmwareOutOfBand = "sh.hollow.alloy.outofband.firmware"
	// NSFirmwareInBand is the same written by in-band collection.
	NSFirmwareInBand = "sh.hollow.alloy.inband.firmware"
	// NSFirmwareSetLabels holds the labels of a firmware set: {"vendor","model","default",...}.
	NSFirmwareSetLabels = "sh.hollow.firmware_set.labels"
	// CredentialBMC is the credential slug of BMC credentials.
	CredentialBMC = "bmc"
)

// Config configures a simulator.
type Config struct {
	// Token, when set, is the bearer token every request must carry.
	Token string
	// Now is the clock for created/updated timestamps; time.Now when nil.
	Now func() time.Time
	// File, when set, is loaded at New (if it exists) and rewritten after every change made
	// through the HTTP API or the seeding methods.
	File string
}

// Server is the simulated fleetdb. Its methods are safe for concurrent use.
type Server struct {
	cfg Config

	mu       sync.Mutex
	st       *state
	faults   []*faultEntry
	counts   map[string]int
	total    int
	unauth   int
	injected int

	http *http.Server
	ln   net.Listener
	url  string
	stop chan struct{}
}

// New returns a simulator with an empty (or loaded) store. Call Start to listen, or use Handler.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, st: newState(), counts: map[string]int{}, stop: make(chan struct{})}
	if cfg.File != "" {
		b, err := os.ReadFile(cfg.File)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("fleetdb sim: load %s: %w", cfg.File, err)
		default:
			if err := json.Unmarshal(b, s.st); err != nil {
				return nil, fmt.Errorf("fleetdb sim: load %s: %w", cfg.File, err)
			}
			s.st.reindex()
		}
	}
	return s, nil
}

// Start listens on addr (a loopback host:port; "" means 127.0.0.1:0) and serves until Close.
func (s *Server) Start(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("fleetdb sim: listen %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("fleetdb sim: listen %s: only loopback addresses are allowed", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fleetdb sim: listen %s: %w", addr, err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return nil
}

// URL is the base URL to give the fleetdb client ("http://127.0.0.1:port").
func (s *Server) URL() string { return s.url }

// Close stops serving and releases hanging requests.
func (s *Server) Close() error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	if s.http == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// save writes the store to cfg.File; the caller holds s.mu.
func (s *Server) save() error {
	if s.cfg.File == "" {
		return nil
	}
	b, err := json.Marshal(s.st)
	if err != nil {
		return fmt.Errorf("fleetdb sim: save: %w", err)
	}
	tmp := s.cfg.File + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("fleetdb sim: save: %w", err)
	}
	return os.Rename(tmp, s.cfg.File)
}

// state is everything the simulator stores. It marshals to the JSON file.
type state struct {
	Servers  []*server                                          `json:"servers"`
	Firmware []*fleetdbapi.ComponentFirmwareVersion             `json:"firmware"`
	Sets     []*firmwareSet                                     `json:"firmware_sets"`
	byID     map[uuid.UUID]*server                              `json:"-"`
	fwByID   map[uuid.UUID]*fleetdbapi.ComponentFirmwareVersion `json:"-"`
	setByID  map[uuid.UUID]*firmwareSet                         `json:"-"`
}

type server struct {
	Rec         fleetdbapi.Server                      `json:"server"`
	Attrs       []fleetdbapi.Attributes                `json:"attributes"`
	VAttrs      []fleetdbapi.VersionedAttributes       `json:"versioned_attributes"`
	Components  []*component                           `json:"components"`
	Credentials map[string]fleetdbapi.ServerCredential `json:"credentials"`
}

type component struct {
	Rec    fleetdbapi.ServerComponent       `json:"component"`
	Attrs  []fleetdbapi.Attributes          `json:"attributes"`
	VAttrs []fleetdbapi.VersionedAttributes `json:"versioned_attributes"`
}

type firmwareSet struct {
	Rec      fleetdbapi.ComponentFirmwareSet `json:"set"`
	Firmware []uuid.UUID                     `json:"firmware"`
}

func newState() *state {
	st := &state{}
	st.reindex()
	return st
}

func (st *state) reindex() {
	st.byID = map[uuid.UUID]*server{}
	st.fwByID = map[uuid.UUID]*fleetdbapi.ComponentFirmwareVersion{}
	st.setByID = map[uuid.UUID]*firmwareSet{}
	for _, s := range st.Servers {
		st.byID[s.Rec.UUID] = s
	}
	for _, f := range st.Firmware {
		st.fwByID[f.UUID] = f
	}
	for _, fs := range st.Sets {
		st.setByID[fs.Rec.UUID] = fs
	}
}

// insertServer adds a server keeping list order stable (by id, like a primary-key scan) so
// pages never overlap. UUID byte order is the order of their text.
func (st *state) insertServer(srv *server) {
	i := sort.Search(len(st.Servers), func(i int) bool {
		return bytes.Compare(st.Servers[i].Rec.UUID[:], srv.Rec.UUID[:]) >= 0
	})
	st.Servers = append(st.Servers, nil)
	copy(st.Servers[i+1:], st.Servers[i:])
	st.Servers[i] = srv
}

// latestVA returns the newest versioned attribute of each namespace, as fleetdb's list
// preloading does.
func latestVA(vas []fleetdbapi.VersionedAttributes) []fleetdbapi.VersionedAttributes {
	idx := map[string]int{}
	out := []fleetdbapi.VersionedAttributes{}
	for _, va := range vas {
		if i, ok := idx[va.Namespace]; ok {
			if !va.CreatedAt.Before(out[i].CreatedAt) {
				out[i] = va
			}
			continue
		}
		idx[va.Namespace] = len(out)
		out = append(out, va)
	}
	return out
}

func findAttr(attrs []fleetdbapi.Attributes, ns string) int {
	for i, a := range attrs {
		if a.Namespace == ns {
			return i
		}
	}
	return -1
}

// componentTypeID is a stable id per component type slug.
func componentTypeID(slug string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("fleetdb-sim/component-type/"+strings.ToLower(slug))).String()
}
