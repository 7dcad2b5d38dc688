package outofband

import (
	"context"
	"testing"
	"time"
)

func TestPolicyFor(t *testing.T) {
	p := Policy{
		Defaults: Timeouts{PollInterval: time.Second},
		Overrides: []Override{
			{Vendor: "dell", Component: "BMC", Timeouts: Timeouts{BMCReboot: 30 * time.Minute}},
			{Vendor: "dell", Timeouts: Timeouts{BMCReboot: 20 * time.Minute, Upload: time.Hour}},
			{Component: "bios", Timeouts: Timeouts{Install: 2 * time.Hour}},
		},
	}
	tests := []struct {
		vendor, component string
		reboot, upload    time.Duration
		install, poll     time.Duration
	}{
		{"Dell Inc.", "BMC", 30 * time.Minute, time.Hour, DefaultTimeouts.Install, time.Second},
		{"Dell Inc.", "", 20 * time.Minute, time.Hour, DefaultTimeouts.Install, time.Second},
		{"Dell Inc.", "BIOS", 20 * time.Minute, time.Hour, 2 * time.Hour, time.Second},
		{"Supermicro", "BIOS", DefaultTimeouts.BMCReboot, DefaultTimeouts.Upload, 2 * time.Hour, time.Second},
		{"Supermicro", "NIC", DefaultTimeouts.BMCReboot, DefaultTimeouts.Upload, DefaultTimeouts.Install, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.vendor+"/"+tc.component, func(t *testing.T) {
			got := p.For(tc.vendor, tc.component)
			if got.BMCReboot != tc.reboot || got.Upload != tc.upload || got.Install != tc.install || got.PollInterval != tc.poll {
				t.Errorf("For = reboot %s upload %s install %s poll %s", got.BMCReboot, got.Upload, got.Install, got.PollInterval)
			}
			if got.LoginAttempts != DefaultTimeouts.LoginAttempts {
				t.Errorf("unset field not defaulted: %d", got.LoginAttempts)
			}
		})
	}
}

func TestBackoffBounded(t *testing.T) {
	to := Timeouts{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	b := newBackoff(to)
	for n := 1; n < 20; n++ {
		d := b.NextBackOff()
		if d < 50*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("backoff(%d) = %s, outside [50ms, 1.5s]", n, d)
		}
	}
}

func TestWithinAbandonsHungCalls(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	began := time.Now()
	_, err := within(t.Context(), &Session{s: NewSessions(nil)}, "hung call", 50*time.Millisecond, func(context.Context) (int, error) {
		<-release // ignores its context, as gofish requests do
		return 0, nil
	})
	if classify(err) != classTimeout || time.Since(began) > time.Second {
		t.Fatalf("err %v after %s, want a deadline error at once", err, time.Since(began))
	}
}

func TestParseOverride(t *testing.T) {
	o, err := ParseOverride("dell/BIOS:install=2h;max-poll-interval=1m;poll-errors=9")
	if err != nil {
		t.Fatal(err)
	}
	if o.Vendor != "dell" || o.Component != "BIOS" || o.Timeouts.Install != 2*time.Hour ||
		o.Timeouts.MaxPollInterval != time.Minute || o.Timeouts.PollErrors != 9 {
		t.Fatalf("override %+v", o)
	}
	p := Policy{Overrides: []Override{o}}
	if got := p.For("Dell Inc.", "bios").Install; got != 2*time.Hour {
		t.Errorf("Dell BIOS install bound %s, want 2h", got)
	}
	if got := p.For("Dell Inc.", "BMC").Install; got != DefaultTimeouts.Install {
		t.Errorf("Dell BMC install bound %s, want the default", got)
	}
	if o, err := ParseOverride("*:reboot=20m"); err != nil || o.Vendor != "" || o.Timeouts.BMCReboot != 20*time.Minute {
		t.Errorf("every-vendor override %+v, %v", o, err)
	}
	for _, bad := range []string{"dell", "dell:install", "dell:install=-1s", "dell:nope=1s", "dell:poll-errors=0"} {
		if _, err := ParseOverride(bad); err == nil {
			t.Errorf("ParseOverride(%q) accepted", bad)
		}
	}
}
