package outofband

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Timeouts bound every wait of the executor. Zero fields take the value of the less specific
// level (component override → vendor override → Defaults).
type Timeouts struct {
	// Connect bounds one login attempt (bmclib Open).
	Connect time.Duration
	// Call bounds one ordinary BMC call: power state, install steps, task status, BMC reset.
	Call time.Duration
	// Inventory bounds one inventory read (many Redfish requests).
	Inventory time.Duration
	// Upload bounds one firmware upload.
	Upload time.Duration
	// Install bounds the wait for one BMC job to end, host power cycle included.
	Install time.Duration
	// PollInterval is the first wait between two reads of a job or version; it grows by half
	// at each read that shows no change, up to MaxPollInterval.
	PollInterval    time.Duration
	MaxPollInterval time.Duration
	// UnknownState bounds how long a job may report a state Flasher does not know before the
	// step fails with the BMC's words.
	UnknownState time.Duration
	// Verify bounds the wait for the inventory to show the new version once the job ended.
	Verify time.Duration
	// BMCReboot bounds the wait for a BMC to come back after its firmware update or a reset.
	BMCReboot time.Duration
	// LoginAttempts bounds logins per connect; only transient failures are retried.
	LoginAttempts int
	// UploadAttempts bounds uploads per component; only transport failures are retried (the BMC's
	// own queue check refuses a second job for a component that has one).
	UploadAttempts int
	// PollErrors is how many consecutive failed status polls are tolerated.
	PollErrors int
	// ReadyReads is how many successful reads in a row make a rebooted BMC ready.
	ReadyReads int
	// Backoff is the first wait between retries; it doubles up to MaxBackoff, with jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DefaultTimeouts are sized for real BMCs: iDRAC uploads of large images and BMC reboots take
// minutes.
var DefaultTimeouts = Timeouts{
	Connect:      60 * time.Second,
	Call:         60 * time.Second,
	Inventory:    3 * time.Minute,
	Upload:       30 * time.Minute,
	Install:      90 * time.Minute,
	PollInterval: 10 * time.Second,
	// A few requests a minute per BMC while a long job runs.
	MaxPollInterval: 30 * time.Second,
	UnknownState:    2 * time.Minute,
	ReadyReads:      3,
	Verify:          5 * time.Minute,
	BMCReboot:       15 * time.Minute,
	LoginAttempts:   4,
	UploadAttempts:  2,
	PollErrors:      6,
	Backoff:         2 * time.Second,
	MaxBackoff:      time.Minute,
}

// Override changes timeouts for servers of one vendor, and optionally one component slug.
type Override struct {
	// Vendor matches the server vendor case-insensitively as a prefix ("dell" matches "Dell Inc.");
	// empty matches every vendor.
	Vendor string
	// Component matches the component slug case-insensitively; empty matches every component.
	Component string
	Timeouts  Timeouts
}

// merge returns t with the zero fields taken from base.
func (t Timeouts) merge(base Timeouts) Timeouts {
	pick := func(v, b time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return b
	}
	pickN := func(v, b int) int {
		if v > 0 {
			return v
		}
		return b
	}
	return Timeouts{
		Connect:         pick(t.Connect, base.Connect),
		Call:            pick(t.Call, base.Call),
		Inventory:       pick(t.Inventory, base.Inventory),
		Upload:          pick(t.Upload, base.Upload),
		Install:         pick(t.Install, base.Install),
		PollInterval:    pick(t.PollInterval, base.PollInterval),
		MaxPollInterval: pick(t.MaxPollInterval, base.MaxPollInterval),
		UnknownState:    pick(t.UnknownState, base.UnknownState),
		ReadyReads:      pickN(t.ReadyReads, base.ReadyReads),
		Verify:          pick(t.Verify, base.Verify),
		BMCReboot:       pick(t.BMCReboot, base.BMCReboot),
		LoginAttempts:   pickN(t.LoginAttempts, base.LoginAttempts),
		UploadAttempts:  pickN(t.UploadAttempts, base.UploadAttempts),
		PollErrors:      pickN(t.PollErrors, base.PollErrors),
		Backoff:         pick(t.Backoff, base.Backoff),
		MaxBackoff:      pick(t.MaxBackoff, base.MaxBackoff),
	}
}

// Policy resolves timeouts per vendor and component.
type Policy struct {
	// Defaults apply where no override matches; zero fields take DefaultTimeouts.
	Defaults  Timeouts
	Overrides []Override
}

// For returns the timeouts of one vendor's component; component "" asks for the server-wide
// timeouts (connect, power, inventory). Vendor-wide overrides apply first, then
// vendor+component ones, each in list order.
func (p Policy) For(vendor, component string) Timeouts {
	out := p.Defaults.merge(DefaultTimeouts)
	v := strings.ToLower(strings.TrimSpace(vendor))
	for _, pass := range []bool{false, true} {
		for _, o := range p.Overrides {
			if (o.Component != "") != pass {
				continue
			}
			if o.Vendor != "" && !strings.HasPrefix(v, strings.ToLower(o.Vendor)) {
				continue
			}
			if o.Component != "" && !strings.EqualFold(o.Component, component) {
				continue
			}
			out = o.Timeouts.merge(out)
		}
	}
	return out
}

// timeoutFields names every field of Timeouts the way flags, YAML and overrides spell them.
var timeoutFields = []struct {
	name string
	dur  func(*Timeouts) *time.Duration
	n    func(*Timeouts) *int
}{
	{name: "connect", dur: func(t *Timeouts) *time.Duration { return &t.Connect }},
	{name: "call", dur: func(t *Timeouts) *time.Duration { return &t.Call }},
	{name: "inventory", dur: func(t *Timeouts) *time.Duration { return &t.Inventory }},
	{name: "upload", dur: func(t *Timeouts) *time.Duration { return &t.Upload }},
	{name: "install", dur: func(t *Timeouts) *time.Duration { return &t.Install }},
	{name: "poll-interval", dur: func(t *Timeouts) *time.Duration { return &t.PollInterval }},
	{name: "max-poll-interval", dur: func(t *Timeouts) *time.Duration { return &t.MaxPollInterval }},
	{name: "unknown-state", dur: func(t *Timeouts) *time.Duration { return &t.UnknownState }},
	{name: "verify", dur: func(t *Timeouts) *time.Duration { return &t.Verify }},
	{name: "reboot", dur: func(t *Timeouts) *time.Duration { return &t.BMCReboot }},
	{name: "backoff", dur: func(t *Timeouts) *time.Duration { return &t.Backoff }},
	{name: "max-backoff", dur: func(t *Timeouts) *time.Duration { return &t.MaxBackoff }},
	{name: "login-attempts", n: func(t *Timeouts) *int { return &t.LoginAttempts }},
	{name: "upload-attempts", n: func(t *Timeouts) *int { return &t.UploadAttempts }},
	{name: "poll-errors", n: func(t *Timeouts) *int { return &t.PollErrors }},
	{name: "ready-reads", n: func(t *Timeouts) *int { return &t.ReadyReads }},
}

// ParseOverride reads one override, "VENDOR[/COMPONENT]:FIELD=VALUE;FIELD=VALUE…", e.g.
// "dell/BIOS:install=2h;max-poll-interval=1m". VENDOR matches as in Override ("*" or "" for
// every vendor); FIELD is a Timeouts field in flag spelling (connect, call, inventory, upload,
// install, poll-interval, max-poll-interval, unknown-state, verify, reboot, backoff,
// max-backoff, login-attempts, upload-attempts, poll-errors, ready-reads).
func ParseOverride(s string) (Override, error) {
	who, settings, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || strings.TrimSpace(settings) == "" {
		return Override{}, fmt.Errorf("BMC override %q: want VENDOR[/COMPONENT]:FIELD=VALUE;…", s)
	}
	var o Override
	o.Vendor, o.Component, _ = strings.Cut(strings.TrimSpace(who), "/")
	o.Vendor, o.Component = strings.TrimSpace(o.Vendor), strings.TrimSpace(o.Component)
	if o.Vendor == "*" {
		o.Vendor = ""
	}
	for _, kv := range strings.Split(settings, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Override{}, fmt.Errorf("BMC override %q: %q is not FIELD=VALUE", s, kv)
		}
		if err := o.Timeouts.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return Override{}, fmt.Errorf("BMC override %q: %w", s, err)
		}
	}
	return o, nil
}

// Set sets one field by its flag spelling; durations and counts must be positive.
func (t *Timeouts) Set(name, value string) error {
	for _, f := range timeoutFields {
		if f.name != name {
			continue
		}
		if f.dur != nil {
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return fmt.Errorf("%s: %q is not a positive duration", name, value)
			}
			*f.dur(t) = d
			return nil
		}
		n, err := strconv.Atoi(value)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s: %q is not a positive count", name, value)
		}
		*f.n(t) = n
		return nil
	}
	return fmt.Errorf("unknown timeout field %q", name)
}
