// Package fleet runs many simulated BMCs (sim/redfish) in one process, each on its own
// loopback address (127.0.x.y), with a mix of Dell iDRAC and OpenBMC-based servers. It writes
// the inventory file Flasher reads (servers, components, installed versions, BMC addresses
// and credentials, a firmware catalog and firmware sets), serves the firmware images over
// HTTP, and offers a JSON control API to inject faults and read per-BMC counters. It listens
// on loopback only and holds no per-BMC goroutines beyond each BMC's accept loop.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// Config describes a fleet.
type Config struct {
	// N is the number of BMCs (default 10).
	N int
	// FirstIP is the loopback address of the first BMC (default 127.0.1.1); the following
	// BMCs count up, skipping .0 and .255. It must lie in 127.0.0.0/8.
	FirstIP string
	// Port is the port every BMC listens on; 0 gives each BMC its own ephemeral port.
	Port int
	// PlainHTTP serves the BMCs over HTTP instead of HTTPS (self-signed, like a factory BMC).
	PlainHTTP bool
	// Username and Password are every BMC's credentials (default "root" / "calvin").
	Username, Password string
	// Install/reboot timings passed to every BMC (see redfish.Config; zero = its default).
	InstallDuration, ApplyDuration, BMCRebootDelay, BMCRebootDuration time.Duration
	// MaxSessions is passed to every BMC (0: unlimited).
	MaxSessions int
	// StateDir keeps each BMC's installed versions across restarts ("" = in memory only).
	StateDir string
	// ImageSize is the size of every served firmware image in bytes (default 64 KiB).
	ImageSize int
	// ImagesAddr is where the image server listens (default 127.0.0.1:0).
	ImagesAddr string
	// ControlAddr, when set, serves the control API there (e.g. 127.0.0.1:0).
	ControlAddr string
	// InventoryPath, when set, gets the inventory YAML written at start.
	InventoryPath string
	// Faults are set at start, keyed by server id ("sim-0001").
	Faults map[string]map[redfish.Op]redfish.Fault
	// Clock is passed to every BMC (default wall clock).
	Clock redfish.Clock
	// Logger receives BMC events (nil: silent).
	Logger *log.Logger
}

// Server is one simulated server of the fleet.
type Server struct {
	ID      string
	Name    string
	Profile string // "dell-r6515", "asrr-romed8hm3", ...
	BMC     *redfish.BMC
}

// Fleet is a running fleet.
type Fleet struct {
	cfg      Config
	servers  []*Server
	byID     map[string]*Server
	images   []*firmwareImage
	byFile   map[string]*firmwareImage
	sets     []file.FirmwareSetDoc
	imgSrv   *http.Server
	imgURL   string
	ctlSrv   *http.Server
	ctlURL   string
	stopCtx  func() bool
	extra    extra // added by AddImage and Extend
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// ServerID returns the id of the i-th server (0-based).
func ServerID(i int) string { return fmt.Sprintf("sim-%04d", i+1) }

// Start starts the fleet; it runs until Close or until ctx is done.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.N <= 0 {
		cfg.N = 10
	}
	if cfg.FirstIP == "" {
		cfg.FirstIP = "127.0.1.1"
	}
	if cfg.Username == "" {
		cfg.Username, cfg.Password = "root", "calvin"
	}
	if cfg.ImageSize <= 0 {
		cfg.ImageSize = 64 << 10
	}
	if cfg.ImagesAddr == "" {
		cfg.ImagesAddr = "127.0.0.1:0"
	}
	first, err := netip.ParseAddr(cfg.FirstIP)
	if err != nil || !netip.MustParsePrefix("127.0.0.0/8").Contains(first) {
		return nil, fmt.Errorf("fleet: FirstIP %q is not a 127.0.0.0/8 address", cfg.FirstIP)
	}
	for _, addr := range []string{cfg.ImagesAddr, cfg.ControlAddr} {
		if addr != "" && !isLoopback(addr) {
			return nil, fmt.Errorf("fleet: %s is not a loopback address", addr)
		}
	}
	var tlsCfg *tls.Config
	if !cfg.PlainHTTP {
		if tlsCfg, err = redfish.SelfSignedTLS("127.0.0.1", "localhost"); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}

	f := &Fleet{cfg: cfg, byID: make(map[string]*Server, cfg.N), byFile: map[string]*firmwareImage{}}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()

	// Images first: the catalog needs the server's URL.
	il, err := net.Listen("tcp", cfg.ImagesAddr)
	if err != nil {
		return nil, fmt.Errorf("fleet: image server: %w", err)
	}
	f.imgURL = "http://" + il.Addr().String()
	f.images, f.sets = buildCatalog(cfg.N, cfg.ImageSize, f.imgURL)
	for _, img := range f.images {
		f.byFile[img.doc.Filename] = img
	}
	f.imgSrv = &http.Server{Handler: http.HandlerFunc(f.serveImage), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = f.imgSrv.Serve(il) }()

	ip := first
	for i := range cfg.N {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("fleet: start cancelled after %d BMCs: %w", i, err)
		}
		for ip.As4()[3] == 0 || ip.As4()[3] == 255 {
			ip = ip.Next()
		}
		if !netip.MustParsePrefix("127.0.0.0/8").Contains(ip) {
			return nil, fmt.Errorf("fleet: ran out of 127.0.0.0/8 addresses at BMC %d", i)
		}
		p := profiles[i%len(profiles)]
		id := ServerID(i)
		bcfg := redfish.Config{
			Name: id, Personality: p.personality, Vendor: p.vendor, Model: p.model,
			Serial: fmt.Sprintf("%s%05d", p.serial, i+1), Components: p.components(i),
			Username: cfg.Username, Password: cfg.Password,
			InstallDuration: cfg.InstallDuration, ApplyDuration: cfg.ApplyDuration,
			BMCRebootDelay: cfg.BMCRebootDelay, BMCRebootDuration: cfg.BMCRebootDuration,
			MaxSessions: cfg.MaxSessions, StateDir: cfg.StateDir, TLS: tlsCfg,
			Faults: cfg.Faults[id], Clock: cfg.Clock, Logger: cfg.Logger,
		}
		b, err := redfish.New(bcfg)
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		l, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(cfg.Port)).String())
		if err != nil {
			return nil, fmt.Errorf("fleet: BMC %s: %w", id, err)
		}
		if err := b.Start(l); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("fleet: %w", err)
		}
		s := &Server{ID: id, Name: fmt.Sprintf("%s-%04d", p.key, i+1), Profile: p.key, BMC: b}
		f.servers = append(f.servers, s)
		f.byID[id] = s
		ip = ip.Next()
	}

	if cfg.ControlAddr != "" {
		cl, err := net.Listen("tcp", cfg.ControlAddr)
		if err != nil {
			return nil, fmt.Errorf("fleet: control API: %w", err)
		}
		f.ctlURL = "http://" + cl.Addr().String()
		f.ctlSrv = &http.Server{Handler: f.ControlHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
		go func() { _ = f.ctlSrv.Serve(cl) }()
	}
	if cfg.InventoryPath != "" {
		if err := f.WriteInventory(cfg.InventoryPath); err != nil {
			return nil, err
		}
	}
	f.stopCtx = context.AfterFunc(ctx, func() { _ = f.Close() })
	ok = true
	return f, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Servers returns the fleet's servers in id order.
func (f *Fleet) Servers() []*Server { return f.servers }

// Server returns the server with the given id, or nil.
func (f *Fleet) Server(id string) *Server { return f.byID[id] }

// BMCs returns every BMC in server id order.
func (f *Fleet) BMCs() []*redfish.BMC {
	out := make([]*redfish.BMC, len(f.servers))
	for i, s := range f.servers {
		out[i] = s.BMC
	}
	return out
}

// BMC returns the BMC of a server id, or nil.
func (f *Fleet) BMC(id string) *redfish.BMC {
	if s := f.byID[id]; s != nil {
		return s.BMC
	}
	return nil
}

// ImagesURL is the base URL of the image server ("http://127.0.0.1:port").
func (f *Fleet) ImagesURL() string { return f.imgURL }

// ControlURL is the base URL of the control API, or "" when it is not served.
func (f *Fleet) ControlURL() string { return f.ctlURL }

// Image returns the bytes of a served image by file name.
func (f *Fleet) Image(filename string) ([]byte, bool) {
	img, ok := f.byFile[filename]
	if !ok {
		return f.extraImage(filename)
	}
	return img.bytes(f.cfg.ImageSize), true
}

func (f *Fleet) serveImage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := filepath.Base(r.URL.Path)
	if filepath.Dir(r.URL.Path) != "/images" {
		http.NotFound(w, r)
		return
	}
	data, ok := f.Image(name)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(data)
}

// Address returns what the inventory lists as the BMC address of s: "host:port" for HTTPS
// (bmclib's default scheme), "http://host:port" for plain HTTP.
func (f *Fleet) Address(s *Server) string {
	if f.cfg.PlainHTTP {
		return "http://" + s.BMC.Addr()
	}
	return s.BMC.Addr()
}

// CredentialsKey is the key of the fleet's BMC credentials in the inventory.
const CredentialsKey = "sim-bmc"

// Inventory returns the inventory document of the fleet with the versions installed now.
func (f *Fleet) Inventory() file.Document {
	doc := file.Document{
		Credentials: map[string]file.CredentialDoc{CredentialsKey: {Username: f.cfg.Username, Password: f.cfg.Password}},
	}
	for _, s := range f.servers {
		cfg := s.BMC.Config()
		sd := file.ServerDoc{
			ID: s.ID, Name: s.Name, Facility: "sim", Vendor: cfg.Vendor, Model: cfg.Model, Serial: cfg.Serial,
			BMC: file.BMCDoc{Address: f.Address(s), Credentials: CredentialsKey, InsecureSkipVerify: !f.cfg.PlainHTTP},
		}
		for _, c := range s.BMC.Components() {
			cd := file.ComponentDoc{Slug: c.Slug, Vendor: c.Vendor, Model: c.Model, Serial: c.Serial, Version: c.Version}
			switch c.Slug {
			case redfish.SlugBMC, redfish.SlugBIOS:
				cd.OutOfBand = true
			default:
				cd.InBand = true
				// iDRAC also flashes NICs and drives; OpenBMC does not.
				cd.OutOfBand = cfg.Personality == redfish.Dell
			}
			sd.Components = append(sd.Components, cd)
		}
		doc.Servers = append(doc.Servers, sd)
	}
	for _, img := range f.images {
		doc.Firmware = append(doc.Firmware, img.doc)
	}
	doc.FirmwareSets = append(doc.FirmwareSets, f.sets...)
	f.extendDoc(&doc)
	return doc
}

// WriteInventory writes the inventory YAML to path atomically.
func (f *Fleet) WriteInventory(path string) error {
	doc := f.Inventory()
	data, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("fleet: marshal inventory: %w", err)
	}
	header := []byte("# Written by flasher-sim: the simulated fleet's servers, BMCs, installed versions,\n# firmware catalog and firmware sets. Regenerated at every start.\n")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(header, data...), 0o600); err != nil {
		return fmt.Errorf("fleet: write inventory: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("fleet: write inventory: %w", err)
	}
	return nil
}

// Close stops every BMC and server of the fleet.
func (f *Fleet) Close() error {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.closed {
		return f.closeErr
	}
	f.closed = true
	if f.stopCtx != nil {
		f.stopCtx()
	}
	var errs []error
	for _, s := range f.servers {
		errs = append(errs, s.BMC.Close())
	}
	if f.imgSrv != nil {
		errs = append(errs, f.imgSrv.Close())
	}
	if f.ctlSrv != nil {
		errs = append(errs, f.ctlSrv.Close())
	}
	f.closeErr = errors.Join(errs...)
	return f.closeErr
}
