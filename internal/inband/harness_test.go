package inband_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/internal/api"
	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/testenv"
	"github.com/flasher-dev/flasher/sim/hosttools"
)

// binary is the stand-in host tool, built once for the test binary.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inband-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = hosttools.Build(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixture is a control plane with the in-band service, a firmware web server on loopback, and
// one simulated host whose tools ironlib uses (process-wide env: tests must not run in parallel).
type fixture struct {
	t      *testing.T
	env    *testenv.Env
	svc    *inband.Service
	host   *hosttools.Host
	web    *httptest.Server
	server string // the host's server id
	inv    *agent.Inventory
	dbPath string
	cfg    inband.Config

	src      *file.Source
	invPath  string
	servers  string   // the servers section of the inventory file
	firmware []string // catalog records added by image
}

type fixtureOpt func(*inband.Config)

func newFixture(t *testing.T, profile hosttools.Profile, serverID string, opts ...fixtureOpt) *fixture {
	t.Helper()
	h, err := hosttools.NewHost(t.TempDir(), profile, hosttools.WithBinary(binary))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h.EnvMap() {
		t.Setenv(k, v)
	}
	f := &fixture{t: t, host: h, server: serverID}
	f.web = httptest.NewServer(http.FileServer(http.Dir(h.Dir)))
	t.Cleanup(f.web.Close)

	// The inventory source lists the server with the components ironlib sees on the host.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.inv, err = (&agent.Ironlib{}).Inventory(ctx)
	if err != nil {
		t.Fatalf("ironlib inventory of the simulated host: %v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "credentials:\n  c:\n    username: u\n    password: p\nservers:\n")
	for _, id := range []string{serverID, "other-server"} {
		fmt.Fprintf(&b, "  - id: %s\n    vendor: %q\n    model: %q\n    bmc: {address: \"127.0.0.1:1\", credentials: c}\n    components:\n", id, f.inv.Vendor, f.inv.Model)
		for _, c := range f.inv.Components {
			if c.Version == "" {
				continue
			}
			fmt.Fprintf(&b, "      - {slug: %q, vendor: %q, model: %q, serial: %q, version: %q, inband: true}\n", c.Slug, c.Vendor, c.Model, c.Serial, c.Version)
		}
	}
	f.servers = b.String()
	f.invPath = filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(f.invPath, []byte(f.servers), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := file.NewSource(f.invPath)
	if err != nil {
		t.Fatal(err)
	}
	f.src = src
	cache, err := artifact.New(artifact.Config{Dir: t.TempDir(), MaxBytes: 1 << 30,
		Allow: artifact.AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	f.cfg = inband.Config{
		Inventory: src, Images: cache, ConnectTimeout: 10 * time.Second, LostTimeout: 10 * time.Second,
		RebootTimeout: 10 * time.Second, HeartbeatInterval: 500 * time.Millisecond, CancelPoll: 50 * time.Millisecond,
		Logger: testLogger(t),
	}
	for _, o := range opts {
		o(&f.cfg)
	}
	f.dbPath = filepath.Join(t.TempDir(), "flasher.db")
	f.start()
	return f
}

// start starts (or restarts, on the same database) the control plane on a free port.
func (f *fixture) start() {
	f.restartOn("")
}

// restartOn restarts the control plane on the same database and address (empty: a free
// port), as a restarted server process would.
func (f *fixture) restartOn(addr string) {
	svc, err := inband.New(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.svc = svc
	edge := api.NewAgentService(api.AgentServiceConfig{Agents: svc, ChunkSize: 1024, Logger: f.cfg.Logger})
	f.env = testenv.Start(f.t, testenv.Config{
		Executors: map[task.Method]scheduler.Executor{task.MethodInBand: svc},
		Inventory: f.cfg.Inventory, DBPath: f.dbPath, Register: edge.Register, Logger: f.cfg.Logger,
		ServerOptions: []grpc.ServerOption{grpc.ChainStreamInterceptor(api.InsecureAgentIdentity())},
		Addr:          addr,
	})
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("INBAND_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// image makes an update image on the host, serves it on the web server and adds it to the
// catalog (dotted versions) for components of vendor and model.
func (f *fixture) image(component, vendor, model, version string, opts ...hosttools.ImageOption) (url, checksum string) {
	f.t.Helper()
	p, err := f.host.MakeUpdateImage(component, version, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		f.t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	rel, err := filepath.Rel(f.host.Dir, p)
	if err != nil {
		f.t.Fatal(err)
	}
	url, checksum = f.web.URL+"/"+filepath.ToSlash(rel), "sha256:"+hex.EncodeToString(sum[:])
	f.firmware = append(f.firmware, fmt.Sprintf("  - {id: fw-%d, vendor: %q, models: [%q], component: %q, version: %q, scheme: dotted, url: %q, checksum: %q, method: in-band}\n",
		len(f.firmware), vendor, model, component, version, url, checksum))
	doc := f.servers + "firmware:\n" + strings.Join(f.firmware, "")
	if err := os.WriteFile(f.invPath, []byte(doc), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := f.src.Reload(); err != nil {
		f.t.Fatalf("inventory reload: %v", err)
	}
	return url, checksum
}

// component returns the host component with slug (and vendor, when given).
func (f *fixture) component(slug, vendor string) agent.Component {
	f.t.Helper()
	for _, c := range f.inv.Components {
		if strings.EqualFold(c.Slug, slug) && (vendor == "" || strings.Contains(strings.ToLower(c.Vendor), strings.ToLower(vendor))) {
			return c
		}
	}
	f.t.Fatalf("host has no %s %s: %+v", vendor, slug, f.inv.Components)
	return agent.Component{}
}

// create creates an IN_BAND task with explicit firmware items.
func (f *fixture) create(serverID string, items ...*flasherv1.Firmware) string {
	f.t.Helper()
	resp, err := f.env.Tasks.CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{
		ServerId: serverID, Method: flasherv1.Method_METHOD_IN_BAND,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: items}},
	}})
	if err != nil {
		f.t.Fatalf("CreateTask: %v", err)
	}
	return resp.GetTask().GetId()
}

// runningAgent is an in-process flasher-agent.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan struct{}
	conn   *grpc.ClientConn
	// cancelHandled is closed once the agent has handled a cancel from the server.
	cancelHandled chan struct{}
}

// cancelWatch sees the agent handle a cancel on its stream: the agent reads its next message
// only after it has acted on the previous one, so the read after a cancel marks it handled.
type cancelWatch struct {
	handled chan struct{}
	once    sync.Once
}

func (w *cancelWatch) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &cancelWatchStream{ClientStream: s, w: w}, nil
}

type cancelWatchStream struct {
	grpc.ClientStream
	w       *cancelWatch
	pending bool // the last message read was a cancel
}

func (s *cancelWatchStream) RecvMsg(m any) error {
	if s.pending {
		s.w.once.Do(func() { close(s.w.handled) })
	}
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*flasherv1.ConnectResponse); ok && err == nil && r.GetCancel() != nil {
		s.pending = true
	}
	return err
}

func (r *runningAgent) stop() {
	r.cancel()
	<-r.done
	r.conn.Close()
}

type agentOpt func(*agent.Config)

// startAgent runs an agent for serverID with stateDir, dialing addr (the server's, or a proxy's).
func (f *fixture) startAgent(addr, serverID, stateDir string, opts ...agentOpt) *runningAgent {
	f.t.Helper()
	w := &cancelWatch{handled: make(chan struct{})}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStreamInterceptor(w.intercept))
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := agent.Config{Conn: conn, ServerID: serverID, StateDir: stateDir, Host: &agent.Ironlib{Grace: 2 * time.Second},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: f.cfg.Logger.With("agent", serverID)}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{cancel: cancel, done: make(chan struct{}), conn: conn, cancelHandled: w.handled}
	go func() { defer close(r.done); _ = a.Run(ctx) }()
	var once sync.Once
	f.t.Cleanup(func() { once.Do(r.stop) })
	return r
}

// waitAgent waits until serverID's agent is connected.
func (f *fixture) waitAgent(serverID string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, a := range f.svc.Agents() {
			if a.ServerID == serverID {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("agent for %s not connected after %s", serverID, timeout)
}

// waitProgress waits until the task has progress matching ok.
func (f *fixture) waitProgress(id string, timeout time.Duration, ok func(task.Progress) bool) task.Progress {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		tk, err := f.env.Store.GetTask(context.Background(), id)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, p := range tk.Progress {
			if ok(p) {
				return p
			}
		}
		if tk.State.Terminal() {
			f.t.Fatalf("task %s ended %s (%+v) before the awaited progress; progress %+v", id, tk.State, tk.Failure, tk.Progress)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("task %s: awaited progress not seen within %s", id, timeout)
	return task.Progress{}
}

// waitTool waits until a stand-in tool of this host runs with arg on its command line: the
// install is really in the tool, not in ironlib's inventory before it.
func (f *fixture) waitTool(arg string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			cmd := string(b)
			if strings.Contains(cmd, f.host.BinDir) && strings.Contains(cmd, arg) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("no stand-in tool running with %q after %s", arg, timeout)
}

// waitFaultTaken waits until the stand-in tool for op has taken the last use of the limited
// fault armed under key ("sum:UpdateBios") and is still running: the tool is inside the fault
// (hanging, say), not merely started. A tool stopped before it takes its fault would leave the
// fault armed for the next run.
func (f *fixture) waitFaultTaken(key, op string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		armed, err := f.host.Armed(key)
		if err != nil {
			f.t.Fatal(err)
		}
		runs, err := f.host.Runs()
		if err != nil {
			f.t.Fatal(err)
		}
		for _, r := range runs {
			if !armed && r.Op == op && r.End.IsZero() {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("stand-in tool did not take the fault %q within %s", key, timeout)
}

func (f *fixture) applied(slug string) int {
	f.t.Helper()
	n, err := f.host.Applied(slug)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) installed(slug, serial string) string {
	f.t.Helper()
	v, err := f.host.InstalledVersion(slug, serial)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}
