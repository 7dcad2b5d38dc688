// Package redfish simulates one Redfish BMC faithfully enough that the unmodified bmclib v2.3.5
// dell and openbmc providers run end to end against it: sessions, inventory, power, BMC reset,
// firmware upload, task polling and verification. A BMC speaks as a Dell iDRAC or as an OpenBMC
// (Personality), validates uploaded images with sim/image, installs them through time-driven
// task states, applies OnReset updates only after a host power cycle, reboots (unreachable) after
// a BMC update, persists installed versions in a state directory and injects faults per
// operation. It owns no listener policy (fleet mode lives in sim/fleet) and never talks to
// anything but its own clients.
package redfish

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Personality is the kind of BMC firmware simulated.
type Personality string

// Personalities.
const (
	// Dell is an iDRAC 9: System.Embedded.1, iDRAC.Embedded.1, Dell jobs in task Oem data.
	Dell Personality = "dell"
	// OpenBMC is bmcweb: GET / mentions OpenBMC, plain TaskState tasks, BIOS needs the host off.
	OpenBMC Personality = "openbmc"
)

// Component slugs the simulator models (bmc-toolbox/common slugs).
const (
	SlugBMC   = "BMC"
	SlugBIOS  = "BIOS"
	SlugNIC   = "NIC"
	SlugDrive = "Drive"
)

// Component is one firmware-bearing component of the simulated server.
type Component struct {
	// Slug is "BMC", "BIOS", "NIC" or "Drive".
	Slug string `json:"slug"`
	// ID is the Redfish id; defaulted per personality ("iDRAC.Embedded.1", "NIC.Slot.1", ...).
	ID      string `json:"id,omitempty"`
	Vendor  string `json:"vendor,omitempty"`
	Model   string `json:"model,omitempty"`
	Serial  string `json:"serial,omitempty"`
	Version string `json:"version"`
	// Previous is the version before the last applied update ("" if none).
	Previous string `json:"previous,omitempty"`
}

// Config describes one simulated BMC and its server.
type Config struct {
	// Name identifies the server in errors, logs and the state file name.
	Name        string
	Personality Personality
	// Vendor and Model are the server's (System Manufacturer/Model). Images for BMC and BIOS
	// must carry these; images for NICs and drives carry the component's vendor and model.
	Vendor, Model, Serial string
	// Board is the baseboard part number a Supermicro BMC reports in its FRU
	// (default: derived from Model as bmclib does, e.g. SYS-5019C-MR → X11SCM-F).
	Board              string
	Components         []Component
	Username, Password string
	// InstallDuration is how long an install task runs before it completes or is scheduled
	// (default 2s).
	InstallDuration time.Duration
	// ApplyDuration is how long a scheduled (OnReset) job runs after the host boots before it
	// completes (default 0: completes at boot).
	ApplyDuration time.Duration
	// BMCRebootDelay is the time between a BMC update task completing (or a Manager.Reset
	// reply) and the BMC going down (default 500ms).
	BMCRebootDelay time.Duration
	// BMCRebootDuration is how long the BMC is unreachable while it reboots (default 5s).
	BMCRebootDuration time.Duration
	// MaxImageSizeBytes is what a standard personality's UpdateService advertises and enforces
	// (413); 0 keeps the personality's own (none on iLO 5).
	MaxImageSizeBytes int64
	// SessionTimeout expires idle sessions (default 30m, as on iDRAC).
	SessionTimeout time.Duration
	// MaxSessions, when positive, refuses logins beyond that many live sessions.
	MaxSessions int
	// StateDir, when set, keeps installed versions and power state in StateDir/<Name>.json
	// across simulator restarts.
	StateDir string
	// TLS serves HTTPS with this configuration; nil serves plain HTTP.
	TLS *tls.Config
	// Faults are set at start; see BMC.SetFault.
	Faults map[Op]Fault
	// Clock defaults to the wall clock.
	Clock Clock
	// Logger receives one line per noteworthy event (nil: silent).
	Logger *log.Logger
}

// BMC is one simulated BMC. It is safe for concurrent use.
type BMC struct {
	cfg   Config
	clock Clock
	ids   ids

	mu          sync.Mutex
	comps       []Component
	power       string // "On" / "Off"
	powerGen    int    // bumps the system ETag
	sessions    map[string]*session
	sessionSeq  int
	tasks       []*task // current Redfish tasks (lost on BMC reboot)
	jobs        []*task // Dell job queue (survives BMC reboots); same pointers as tasks
	taskSeq     int     // OpenBMC task ids, reset on reboot
	jobSeq      int     // Dell job ids, persisted
	faults      map[Op]Fault
	faultGen    chan struct{} // closed and replaced whenever faults change, to wake hung requests
	counters    Counters
	down        bool
	pendingBMC  *task // BMC image waiting for the reboot to be applied
	hpeTask     *task // the flash iLO reports in UpdateService Oem.Hpe
	closed      bool
	closeCh     chan struct{}
	addr        string
	srv         *http.Server
	listener    net.Listener
	timers      map[int]Timer
	timerSeq    int
	persistErrs int
	smc         smcState // Supermicro web interface
}

type session struct {
	id       string
	token    string
	lastUsed time.Time
}

// New validates cfg and returns a BMC that is not yet serving; call Start.
func New(cfg Config) (*BMC, error) {
	if cfg.Personality != Dell && cfg.Personality != OpenBMC && !cfg.Personality.supermicro() && !cfg.Personality.standard() {
		return nil, fmt.Errorf("sim BMC %q: unknown personality %q", cfg.Name, cfg.Personality)
	}
	if cfg.Name == "" {
		return nil, errors.New("sim BMC: Name is required")
	}
	if strings.ContainsAny(cfg.Name, "/\\") {
		return nil, fmt.Errorf("sim BMC %q: name must not contain path separators", cfg.Name)
	}
	if cfg.Username == "" {
		return nil, fmt.Errorf("sim BMC %q: Username is required", cfg.Name)
	}
	if cfg.InstallDuration <= 0 {
		cfg.InstallDuration = 2 * time.Second
	}
	if cfg.BMCRebootDelay <= 0 {
		cfg.BMCRebootDelay = 500 * time.Millisecond
	}
	if cfg.BMCRebootDuration <= 0 {
		cfg.BMCRebootDuration = 5 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 30 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	b := &BMC{
		cfg:      cfg,
		clock:    cfg.Clock,
		ids:      idsFor(cfg.Personality),
		power:    "On",
		faultGen: make(chan struct{}),
		closeCh:  make(chan struct{}),
	}
	b.comps = make([]Component, len(cfg.Components))
	copy(b.comps, cfg.Components)
	counts := map[string]int{}
	for i := range b.comps {
		c := &b.comps[i]
		switch c.Slug {
		case SlugBMC, SlugBIOS, SlugNIC, SlugDrive:
		default:
			return nil, fmt.Errorf("sim BMC %q: unsupported component slug %q", cfg.Name, c.Slug)
		}
		if c.Version == "" {
			return nil, fmt.Errorf("sim BMC %q: component %s has no version", cfg.Name, c.Slug)
		}
		if c.ID == "" {
			c.ID = b.ids.componentID(c.Slug, counts[c.Slug])
		}
		counts[c.Slug]++
	}
	if counts[SlugBMC] != 1 || counts[SlugBIOS] != 1 {
		return nil, fmt.Errorf("sim BMC %q: need exactly one BMC and one BIOS component", cfg.Name)
	}
	for op, f := range cfg.Faults {
		if err := f.Validate(op); err != nil {
			return nil, fmt.Errorf("sim BMC %q: %w", cfg.Name, err)
		}
	}
	if err := b.loadState(); err != nil {
		return nil, err
	}
	for op, f := range cfg.Faults {
		b.setFaultLocked(op, f)
	}
	return b, nil
}

// Name returns the configured server name.
func (b *BMC) Name() string { return b.cfg.Name }

// Personality returns the BMC's personality.
func (b *BMC) Personality() Personality { return b.cfg.Personality }

// Config returns the configuration the BMC was created with.
func (b *BMC) Config() Config { return b.cfg }

// Start serves the BMC on l. After a BMC reboot the BMC listens again on l's address.
func (b *BMC) Start(l net.Listener) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("sim BMC %s: closed", b.cfg.Name)
	}
	if b.srv != nil {
		return fmt.Errorf("sim BMC %s: already started", b.cfg.Name)
	}
	b.addr = l.Addr().String()
	b.serveLocked(l)
	return nil
}

func (b *BMC) serveLocked(l net.Listener) {
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if b.cfg.TLS != nil {
		l = tls.NewListener(l, b.cfg.TLS)
	}
	b.srv, b.listener = srv, l
	go func() { _ = srv.Serve(l) }()
}

// Addr returns host:port the BMC listens on ("" before Start).
func (b *BMC) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// URL returns the base URL of the BMC ("https://host:port" or "http://host:port").
func (b *BMC) URL() string {
	scheme := "http"
	if b.cfg.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + b.Addr()
}

// Close stops serving, releases hung requests and cancels timers. It does not write state
// beyond what was already persisted.
func (b *BMC) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.closeCh)
	for _, t := range b.timers {
		t.Stop()
	}
	b.timers = nil
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		return srv.Close()
	}
	return nil
}

// Down reports whether the BMC is rebooting (its port refuses connections).
func (b *BMC) Down() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down
}

// Counters returns a copy of the BMC's counters.
func (b *BMC) Counters() Counters {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counters.clone()
}

// Components returns the components with their installed versions.
func (b *BMC) Components() []Component {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(b.clock.Now())
	out := make([]Component, len(b.comps))
	copy(out, b.comps)
	return out
}

// InstalledVersion returns the installed version of the first component whose slug or Redfish
// id equals component (case-insensitive), or "".
func (b *BMC) InstalledVersion(component string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(b.clock.Now())
	for _, c := range b.comps {
		if strings.EqualFold(c.Slug, component) || strings.EqualFold(c.ID, component) {
			return c.Version
		}
	}
	return ""
}

// SetVersion changes the installed version of the first component whose slug or Redfish id
// equals component (and whose serial equals serial, when given), as an update made outside
// Flasher would. It reports whether a component matched.
func (b *BMC) SetVersion(component, serial, version string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceLocked(b.clock.Now())
	for i := range b.comps {
		c := &b.comps[i]
		if (strings.EqualFold(c.Slug, component) || strings.EqualFold(c.ID, component)) && (serial == "" || strings.EqualFold(c.Serial, serial)) {
			c.Previous, c.Version = c.Version, version
			return true
		}
	}
	return false
}

// PowerState returns the host power state, "On" or "Off".
func (b *BMC) PowerState() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.power
}

// SetPowerState sets the host power state directly (no counters, no OnReset jobs run), for
// test setup.
func (b *BMC) SetPowerState(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.power = "On"
	} else {
		b.power = "Off"
	}
	b.powerGen++
	b.persistLocked()
}

// SetFault attaches f to op, replacing any fault there; an invalid combination is an error.
func (b *BMC) SetFault(op Op, f Fault) error {
	if err := f.Validate(op); err != nil {
		return fmt.Errorf("sim BMC %s: %w", b.cfg.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setFaultLocked(op, f)
	return nil
}

func (b *BMC) setFaultLocked(op Op, f Fault) {
	if op == OpQueue && f.Kind == KindLeftover {
		b.addLeftoverLocked(f)
	}
	if b.faults == nil {
		b.faults = make(map[Op]Fault, 1)
	}
	b.faults[op] = f
	b.wakeLocked()
}

// ClearFault removes the fault on op (and, for OpQueue, the leftover jobs it created).
func (b *BMC) ClearFault(op Op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clearFaultLocked(op)
}

func (b *BMC) clearFaultLocked(op Op) {
	delete(b.faults, op)
	if op == OpQueue {
		b.removeLeftoversLocked()
	}
	b.wakeLocked()
}

// ClearFaults removes every fault.
func (b *BMC) ClearFaults() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for op := range b.faults {
		b.clearFaultLocked(op)
	}
}

// Faults returns the active faults.
func (b *BMC) Faults() map[Op]Fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[Op]Fault, len(b.faults))
	for k, v := range b.faults {
		out[k] = v
	}
	return out
}

func (b *BMC) wakeLocked() {
	close(b.faultGen)
	b.faultGen = make(chan struct{})
}

// takeFaultLocked returns the fault on op, consuming one firing of a counted fault.
func (b *BMC) takeFaultLocked(op Op) (Fault, bool) {
	f, ok := b.faults[op]
	if !ok {
		return f, false
	}
	if f.Count > 0 {
		f.Count--
		if f.Count == 0 {
			delete(b.faults, op)
		} else {
			b.faults[op] = f
		}
		f.Count = 1
	}
	return f, true
}

// Reboot reboots the BMC now: it goes down for d (0: the configured reboot time), sessions
// and Redfish tasks are lost, Dell jobs survive.
func (b *BMC) Reboot(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rebootLocked(d)
}

func (b *BMC) rebootDurationLocked() time.Duration {
	if f, ok := b.faults[OpReboot]; ok && f.Kind == KindDuration && f.Delay > 0 {
		return time.Duration(f.Delay)
	}
	return b.cfg.BMCRebootDuration
}

func (b *BMC) rebootLocked(d time.Duration) {
	if b.closed || b.down {
		return
	}
	if d <= 0 {
		d = b.rebootDurationLocked()
	}
	b.down = true
	b.counters.BMCReboots++
	b.logf("BMC rebooting for %s", d)
	srv := b.srv
	b.srv, b.listener = nil, nil
	if srv != nil {
		// Close drops the listener (new connections are refused, like a BMC whose network
		// stack is gone) and every open connection. It does not wait for handlers, so it is
		// safe under b.mu, and the port is free again before bootUp listens.
		_ = srv.Close()
	}
	b.afterLocked(d, b.bootUp)
}

func (b *BMC) bootUp() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	now := b.clock.Now()
	b.advanceLocked(now)
	// In-memory state of the BMC firmware is gone.
	b.sessions = nil
	b.smc = smcState{}
	b.tasks = nil
	b.taskSeq = 0
	if b.cfg.Personality == Dell {
		// The Lifecycle Controller job queue survives; unfinished jobs show up as tasks again.
		for _, j := range b.jobs {
			if j.final == "" {
				b.tasks = append(b.tasks, j)
			}
		}
	}
	if t := b.pendingBMC; t != nil {
		b.pendingBMC = nil
		b.applyLocked(t)
	}
	l, err := net.Listen("tcp", b.addr)
	if err != nil {
		// The address was taken while we were down; stay down and say so.
		b.logf("BMC could not listen again on %s: %v", b.addr, err)
		return
	}
	b.down = false
	b.serveLocked(l)
	b.logf("BMC up again")
}

func (b *BMC) afterLocked(d time.Duration, f func()) {
	if b.timers == nil {
		b.timers = make(map[int]Timer, 1)
	}
	b.timerSeq++
	id := b.timerSeq
	b.timers[id] = b.clock.AfterFunc(d, func() {
		b.mu.Lock()
		delete(b.timers, id)
		b.mu.Unlock()
		f()
	})
}

func (b *BMC) logf(format string, args ...any) {
	if b.cfg.Logger != nil {
		b.cfg.Logger.Printf("sim BMC %s: %s", b.cfg.Name, fmt.Sprintf(format, args...))
	}
}
