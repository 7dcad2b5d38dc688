package outofband_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/testenv"
	"github.com/flasher-dev/flasher/sim/image"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// testTimeouts are short: the simulator installs in a few hundred milliseconds.
var testTimeouts = outofband.Timeouts{
	Connect: 2 * time.Second, Call: 2 * time.Second, Inventory: 3 * time.Second, Upload: 3 * time.Second,
	Install: 4 * time.Second, PollInterval: 40 * time.Millisecond, Verify: 800 * time.Millisecond,
	BMCReboot: 5 * time.Second, LoginAttempts: 2, UploadAttempts: 2, PollErrors: 3,
	Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
}

const (
	simInstall      = 300 * time.Millisecond
	simRebootDelay  = 50 * time.Millisecond
	simRebootLength = 400 * time.Millisecond
)

func dellConfig(name string) redfish.Config {
	return redfish.Config{
		Name: name, Personality: redfish.Dell, Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "SN-" + name,
		Username: "root", Password: "calvin",
		Components: []redfish.Component{
			{Slug: redfish.SlugBMC, Version: "6.10.30.00"},
			{Slug: redfish.SlugBIOS, Version: "2.11.4"},
			{Slug: redfish.SlugNIC, Vendor: "Broadcom", Model: "BCM57414", Serial: "NIC-A1", Version: "21.80.16.95"},
			{Slug: redfish.SlugNIC, Vendor: "Broadcom", Model: "BCM57414", Serial: "NIC-A2", Version: "21.80.16.95"},
			{Slug: redfish.SlugDrive, Vendor: "Micron", Model: "MTFDDAK480TDS", Serial: "DRV-1", Version: "D3MU001"},
		},
		InstallDuration: simInstall, BMCRebootDelay: simRebootDelay, BMCRebootDuration: simRebootLength,
	}
}

func openBMCConfig(name string) redfish.Config {
	return redfish.Config{
		Name: name, Personality: redfish.OpenBMC, Vendor: "ASRockRack", Model: "ROMED8HM3", Serial: "SN-" + name,
		Username: "admin", Password: "admin",
		Components: []redfish.Component{
			{Slug: redfish.SlugBMC, Version: "2.14.0"},
			{Slug: redfish.SlugBIOS, Version: "3.50"},
		},
		InstallDuration: simInstall, BMCRebootDelay: simRebootDelay, BMCRebootDuration: simRebootLength,
	}
}

// catalogImage is one firmware the test catalog offers.
type catalogImage struct {
	id, component, vendor, model, version string
	// corrupt serves bytes that do not match the catalog checksum.
	corrupt bool
	// missing is listed but not served (404).
	missing bool
}

// dellImages and openBMCImages are the catalogs of the two test server models.
var dellImages = []catalogImage{
	{id: "dell-bmc-7", component: "BMC", vendor: "Dell Inc.", model: "PowerEdge R6515", version: "7.00.00.171"},
	{id: "dell-bios-2.19.1", component: "BIOS", vendor: "Dell Inc.", model: "PowerEdge R6515", version: "2.19.1"},
	{id: "dell-bios-2.13.3", component: "BIOS", vendor: "Dell Inc.", model: "PowerEdge R6515", version: "2.13.3"},
	{id: "dell-bios-2.11.4", component: "BIOS", vendor: "Dell Inc.", model: "PowerEdge R6515", version: "2.11.4"},
	{id: "bcm-nic-22", component: "NIC", vendor: "Broadcom", model: "BCM57414", version: "22.31.6.0"},
	{id: "dell-bios-bad", component: "BIOS", vendor: "Dell Inc.", model: "PowerEdge R6515", version: "2.20.0", corrupt: true},
	{id: "dell-bios-gone", component: "BIOS", vendor: "Dell Inc.", model: "PowerEdge R6515", version: "2.21.0", missing: true},
}

var openBMCImages = []catalogImage{
	{id: "asrr-bmc-2.16", component: "BMC", vendor: "ASRockRack", model: "ROMED8HM3", version: "2.16.0"},
	{id: "asrr-bios-3.80", component: "BIOS", vendor: "ASRockRack", model: "ROMED8HM3", version: "3.80"},
}

const imageSize = 64 << 10

func (c catalogImage) bytes() []byte {
	return image.Make(image.Header{Component: c.component, Vendor: c.vendor, Model: c.model, Version: c.version}, imageSize, "")
}

// imageServer serves the catalog's images over loopback HTTP and counts requests.
type imageServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
}

func startImages(t *testing.T, imgs []catalogImage) *imageServer {
	t.Helper()
	s := &imageServer{}
	byName := map[string]catalogImage{}
	for _, c := range imgs {
		byName[c.id+".bin"] = c
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		c, ok := byName[strings.TrimPrefix(r.URL.Path, "/images/")]
		if !ok || c.missing {
			http.NotFound(w, r)
			return
		}
		b := c.bytes()
		if c.corrupt {
			b = append([]byte(nil), b...)
			b[len(b)-2] ^= 0xff
		}
		http.ServeContent(w, r, c.id+".bin", time.Time{}, strings.NewReader(string(b)))
	}))
	t.Cleanup(s.Close)
	return s
}

// startBMC serves a simulated BMC over HTTPS on a loopback port.
func startBMC(t *testing.T, cfg redfish.Config) *redfish.BMC {
	t.Helper()
	if cfg.TLS == nil {
		tlsCfg, err := redfish.SelfSignedTLS("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = tlsCfg
	}
	b, err := redfish.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// server is one inventory entry: a BMC (or a dead address) and the versions the inventory
// believes are installed (stale on purpose in some tests).
type server struct {
	id       string
	cfg      redfish.Config
	bmc      *redfish.BMC
	addr     string            // overrides bmc.Addr()
	password string            // overrides cfg.Password in the inventory
	versions map[string]string // slug → inventory version override
	// tlsMode is how the inventory asks for the BMC's certificate to be checked: "" marks it
	// insecure_skip_verify (a factory self-signed certificate, as the simulator has), "verify"
	// sets nothing (verification against the system roots), "pin" pins its real fingerprint and
	// "pin-wrong" another one; "ca" names caFile as the BMC's CA.
	tlsMode string
	caFile  string
	// updatePath is the inventory's bmc.update_path ("" chooses by vendor).
	updatePath string
}

// writeInventory writes the YAML inventory of servers and the images' catalog, with one
// firmware set per server model holding the latest BMC, BIOS and NIC.
func writeInventory(t *testing.T, imgs *imageServer, servers []server, catalog []catalogImage) string {
	t.Helper()
	doc := file.Document{Credentials: map[string]file.CredentialDoc{}}
	models := map[string]bool{}
	for _, s := range servers {
		addr := s.addr
		if addr == "" {
			addr = s.bmc.Addr()
		}
		pw := s.cfg.Password
		if s.password != "" {
			pw = s.password
		}
		doc.Credentials[s.id] = file.CredentialDoc{Username: s.cfg.Username, Password: pw}
		sd := file.ServerDoc{ID: s.id, Vendor: s.cfg.Vendor, Model: s.cfg.Model, Serial: s.cfg.Serial,
			BMC: file.BMCDoc{Address: addr, Credentials: s.id, InsecureSkipVerify: s.tlsMode == "", UpdatePath: s.updatePath}}
		switch s.tlsMode {
		case "pin":
			sd.BMC.Fingerprint = certFingerprint(t, addr)
		case "pin-wrong":
			sd.BMC.Fingerprint = strings.Repeat("ab", 32)
		case "ca":
			sd.BMC.CAFile = s.caFile
		}
		for _, c := range s.cfg.Components {
			v := c.Version
			if o, ok := s.versions[c.Slug]; ok {
				v = o
			}
			vendor, model := c.Vendor, c.Model
			if c.Slug == redfish.SlugBMC || c.Slug == redfish.SlugBIOS {
				vendor, model = s.cfg.Vendor, s.cfg.Model
			}
			sd.Components = append(sd.Components, file.ComponentDoc{Slug: c.Slug, Vendor: vendor, Model: model, Serial: c.Serial,
				Version: v, OutOfBand: c.Slug != redfish.SlugDrive, InBand: c.Slug == redfish.SlugDrive})
		}
		doc.Servers = append(doc.Servers, sd)
		models[s.cfg.Model] = true
	}
	latest := map[string][]string{}
	for _, c := range catalog {
		sum := sha256.Sum256(c.bytes())
		doc.Firmware = append(doc.Firmware, file.FirmwareDoc{
			ID: c.id, Vendor: c.vendor, Models: []string{c.model}, Component: c.component, Version: c.version,
			Scheme: "dotted", Filename: c.id + ".bin", URL: imgs.URL + "/images/" + c.id + ".bin",
			Checksum: "sha256:" + hex.EncodeToString(sum[:]), Method: "out-of-band",
		})
		switch c.id {
		case "dell-bmc-7", "dell-bios-2.19.1", "bcm-nic-22":
			latest["PowerEdge R6515"] = append(latest["PowerEdge R6515"], c.id)
		case "asrr-bmc-2.16", "asrr-bios-3.80":
			latest["ROMED8HM3"] = append(latest["ROMED8HM3"], c.id)
		}
	}
	for model, ids := range latest {
		if !models[model] {
			continue
		}
		vendor := "Dell Inc."
		if model == "ROMED8HM3" {
			vendor = "ASRockRack"
		}
		doc.FirmwareSets = append(doc.FirmwareSets, file.FirmwareSetDoc{ID: "set-" + strings.ToLower(model[len(model)-5:]),
			Name: model + " latest", Labels: map[string]string{"vendor": vendor, "model": model}, Firmware: ids})
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fixture is a control plane with the out-of-band executor over real simulated BMCs.
type fixture struct {
	t      *testing.T
	env    *testenv.Env
	src    *file.Source
	cache  *artifact.Cache
	imgs   *imageServer
	dbPath string
	policy outofband.Policy
}

func newFixture(t *testing.T, servers []server, catalog []catalogImage, imgs *imageServer) *fixture {
	t.Helper()
	if imgs == nil {
		imgs = startImages(t, catalog)
	}
	src, err := file.NewSource(writeInventory(t, imgs, servers, catalog), file.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, src: src, imgs: imgs, dbPath: filepath.Join(t.TempDir(), "flasher.db"),
		policy: outofband.Policy{Defaults: testTimeouts}}
	f.cache = newCache(t)
	f.start()
	return f
}

func newCache(t *testing.T) *artifact.Cache {
	t.Helper()
	c, err := artifact.New(artifact.Config{Dir: filepath.Join(t.TempDir(), "cache"), MaxBytes: 64 << 20,
		Allow: artifact.AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// start starts (or restarts, on the same database) the control plane with a new executor.
func (f *fixture) start() {
	x, err := outofband.New(outofband.Config{Inventory: f.src, Images: f.cache, Policy: f.policy,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.t.Fatal(err)
	}
	f.env = testenv.Start(f.t, testenv.Config{
		Executors: map[task.Method]scheduler.Executor{task.MethodOutOfBand: x},
		Inventory: f.src, DBPath: f.dbPath,
	})
}

func (f *fixture) create(spec *flasherv1.TaskSpec) string {
	f.t.Helper()
	resp, err := f.env.Tasks.CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: spec})
	if err != nil {
		f.t.Fatalf("CreateTask: %v", err)
	}
	return resp.Task.Id
}

func setSpec(serverID string, force bool) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{ServerId: serverID, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
		Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: force}}}
}

func firmwareSpec(serverID string, items ...*flasherv1.Firmware) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{ServerId: serverID, Method: flasherv1.Method_METHOD_OUT_OF_BAND,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: items}}}
}

// item is an explicit firmware item for a catalog image.
func (f *fixture) item(id string, force bool) *flasherv1.Firmware {
	f.t.Helper()
	cat, err := f.src.Catalog(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	for _, fw := range cat.Firmware {
		if fw.ID == id {
			return &flasherv1.Firmware{Component: fw.Component, Version: fw.Version, Url: fw.URL, Checksum: fw.Checksum, Force: force}
		}
	}
	f.t.Fatalf("no catalog image %s", id)
	return nil
}

func progressOf(tk *task.Task, component, serial string) task.Progress {
	for _, p := range tk.Progress {
		if p.Component == component && p.Serial == serial {
			return p
		}
	}
	return task.Progress{}
}

func (f *fixture) events(id string) []task.Event {
	f.t.Helper()
	evs, err := f.env.Store.Events(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

// certFingerprint is the sha256 of the certificate the server at addr presents.
func certFingerprint(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(addr, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the certificate to pin it
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}
