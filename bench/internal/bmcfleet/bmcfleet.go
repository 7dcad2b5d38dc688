// Package bmcfleet starts many simulated BMCs (sim/redfish) in the benchmark's own process, each
// on its own loopback port, counts what they were asked, and writes the inventory file Flasher
// reads for them. The benchmarks of bench/ that talk to BMCs share it. It is for benchmarks only.
package bmcfleet

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// Fleet is one side's simulated BMCs and the TCP connections they accepted.
type Fleet struct {
	BMCs  []*redfish.BMC
	conns atomic.Int64
	cpu0  time.Duration
}

// Load is what one side cost the simulated BMCs and the process.
type Load struct {
	Requests, Logins, Logouts, Conns int64
	CPU                              time.Duration
}

// Start starts n BMCs over plain HTTP; config gives the i-th one's configuration.
func Start(n int, config func(i int) redfish.Config) (*Fleet, error) {
	fl := &Fleet{BMCs: make([]*redfish.BMC, 0, n)}
	for i := range n {
		b, err := redfish.New(config(i))
		if err != nil {
			fl.Close()
			return nil, err
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fl.Close()
			return nil, err
		}
		if err := b.Start(countingListener{l, &fl.conns}); err != nil {
			fl.Close()
			return nil, err
		}
		fl.BMCs = append(fl.BMCs, b)
	}
	fl.cpu0 = ProcessCPU()
	return fl, nil
}

// Close stops every BMC.
func (fl *Fleet) Close() {
	for _, b := range fl.BMCs {
		_ = b.Close()
	}
}

// Load sums the BMCs' counters and the process CPU used since Start.
func (fl *Fleet) Load() Load {
	l := Load{Conns: fl.conns.Load(), CPU: ProcessCPU() - fl.cpu0}
	for _, b := range fl.BMCs {
		c := b.Counters()
		l.Requests += int64(c.Requests)
		l.Logins += int64(c.Logins)
		l.Logouts += int64(c.Logouts)
	}
	return l
}

// countingListener counts accepted connections: a client without keep-alive pays one TCP
// connection (and one TLS handshake over HTTPS) per request.
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

// ProcessCPU is the user+system CPU time the process used so far (0 where unknown).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// WriteInventory writes the inventory file of bmcs to path: each BMC a server of vendor and
// model reached over plain HTTP with the given credentials, its components as the BMC reports
// them (a component without vendor and model is the server's own), plus firmware.
func WriteInventory(path, vendor, model, user, pass string, bmcs []*redfish.BMC, firmware []file.FirmwareDoc) error {
	doc := file.Document{Credentials: map[string]file.CredentialDoc{"fleet": {Username: user, Password: pass}}, Firmware: firmware}
	for _, b := range bmcs {
		cfg := b.Config()
		sd := file.ServerDoc{ID: cfg.Name, Vendor: vendor, Model: model, Serial: cfg.Serial,
			BMC: file.BMCDoc{Address: "http://" + b.Addr(), Credentials: "fleet"}}
		for _, c := range cfg.Components {
			v, m := c.Vendor, c.Model
			if v == "" {
				v, m = vendor, model
			}
			sd.Components = append(sd.Components, file.ComponentDoc{Slug: c.Slug, Vendor: v, Model: m, Serial: c.Serial, Version: c.Version, OutOfBand: true})
		}
		doc.Servers = append(doc.Servers, sd)
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return os.WriteFile(path, b, 0o600)
}

// Each runs fn on every BMC, c at once, as a bare script's worker pool would, and returns how
// many failed with the first error.
func Each(bmcs []*redfish.BMC, c int, fn func(*redfish.BMC) error) error {
	work := make(chan *redfish.BMC)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := fn(b); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, b := range bmcs {
		work <- b
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d BMC(s) failed, first: %v", n, firstErr.Load())
	}
	return nil
}
