package outofband_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// countingListener counts the TCP connections a BMC accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestSessionReusesConnections: bmclib (through gofish) asks for a new connection per request;
// a session keeps its connections, so many Redfish requests cost a handful of TLS handshakes.
func TestSessionReusesConnections(t *testing.T) {
	tests := []struct {
		name string
		cfg  redfish.Config
		// maxConns bounds the connections of a first login (every provider probes, and the
		// probes' connections race each other, so one more may open on a busy machine) and the
		// calls after it. Without reuse every request opens its own: 35 or more here.
		maxConns int64
	}{
		{name: "dell", cfg: dellConfig("conn-dell"), maxConns: 5},
		{name: "openbmc", cfg: openBMCConfig("conn-asrr"), maxConns: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg, err := redfish.SelfSignedTLS("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			tc.cfg.TLS = tlsCfg
			b, err := redfish.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var conns atomic.Int64
			if err := b.Start(countingListener{l, &conns}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			target, err := outofband.ParseTarget(inventory.BMC{Address: b.URL(), InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			creds := func(context.Context) (inventory.Credentials, error) {
				return inventory.Credentials{Username: tc.cfg.Username, Password: tc.cfg.Password}, nil
			}
			ctx := context.Background()
			sess, err := outofband.NewSessions(nil).Open(ctx, target, creds, testTimeouts, nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				if _, err := sess.PowerState(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := sess.Inventory(ctx); err != nil {
				t.Fatal(err)
			}
			sess.Close()
			reqs := b.Counters().Requests
			if reqs < 20 {
				t.Fatalf("only %d requests reached the BMC; the test needs many", reqs)
			}
			if got := conns.Load(); got > tc.maxConns {
				t.Errorf("%d requests over %d connections, want at most %d connections", reqs, got, tc.maxConns)
			}
			// Logging out still happens (in the background) over the kept connection.
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(5 * time.Second)
		wait:
			for b.Counters().Logouts == 0 {
				select {
				case <-tick.C:
				case <-deadline:
					break wait
				}
			}
			if got := b.Counters().Logouts; got != 1 {
				t.Errorf("logouts = %d, want 1", got)
			}
		})
	}
}
