// Command collect measures what a Flasher collect costs over bmclib itself: it reads the
// installed versions of a fleet of simulated Dell BMCs through InventoryService.CollectInventory
// (the API, the collector, the out-of-band executor's sessions, the SQLite store) and, on a
// second identical fleet, with a bare bmclib loop (log in, Inventory, log out) at the same
// concurrency. It prints the wall times of each run, their medians and ratio, and what the
// simulated BMCs were asked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flasher-dev/flasher/bench/internal/bmcfleet"
	"github.com/flasher-dev/flasher/bench/internal/measure"
	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/sim/redfish"
)

var (
	flagN       = flag.Int("n", 1000, "simulated BMCs per fleet")
	flagC       = flag.Int("c", 100, "concurrency (servers read at once, both sides)")
	flagRuns    = flag.Int("runs", 3, "runs of each side; medians are printed")
	flagProfile = flag.String("cpuprofile", "", "write CPU profiles of each side's last run to PREFIX.bare.pprof and PREFIX.flasher.pprof")
)

const (
	vendor, model = "Dell Inc.", "PowerEdge R6515"
	user, pass    = "root", "calvin"
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "bench-collect-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var bareTimes, keepTimes, flasherTimes []time.Duration
	var bareLoad, keepLoad, flasherLoad bmcfleet.Load
	profile := func(side string, run int) string {
		if *flagProfile == "" || run != *flagRuns-1 {
			return ""
		}
		return *flagProfile + "." + side + ".pprof"
	}
	for run := range *flagRuns {
		bare := startFleet(fmt.Sprintf("bare%d", run))
		d, err := timed(profile("bare", run), func() error { return bareLoop(bare.BMCs, false) })
		bareLoad = bare.Load()
		bare.Close()
		if err != nil {
			log.Fatalf("bare loop: %v", err)
		}
		bareTimes = append(bareTimes, d)

		keep := startFleet(fmt.Sprintf("keep%d", run))
		d, err = timed("", func() error { return bareLoop(keep.BMCs, true) })
		keepLoad = keep.Load()
		keep.Close()
		if err != nil {
			log.Fatalf("bare loop with keep-alive: %v", err)
		}
		keepTimes = append(keepTimes, d)

		fl := startFleet(fmt.Sprintf("flasher%d", run))
		runDir := filepath.Join(dir, strconv.Itoa(run))
		srv, stop, err := startServer(runDir, fl.BMCs)
		if err != nil {
			log.Fatalf("flasher: %v", err)
		}
		d, err = timed(profile("flasher", run), func() error { return flasherCollect(srv) })
		flasherLoad = fl.Load()
		stop()
		fl.Close()
		if err != nil {
			log.Fatalf("flasher: %v", err)
		}
		flasherTimes = append(flasherTimes, d)
	}
	b, k, f := measure.Median(bareTimes), measure.Median(keepTimes), measure.Median(flasherTimes)
	fmt.Printf("collect: %d simulated Dell BMCs (BMC, BIOS, NIC), concurrency %d, %d run(s) per side\n\n", *flagN, *flagC, *flagRuns)
	fmt.Printf("%-44s %14s %20s\n", "side", "wall (median)", "runs (s)")
	fmt.Printf("%-44s %14s %20s\n", "baseline: bare bmclib loop (open, Inventory)", b.Round(time.Millisecond), fmtRuns(bareTimes))
	fmt.Printf("%-44s %14s %20s\n", "baseline: the same, connections reused", k.Round(time.Millisecond), fmtRuns(keepTimes))
	fmt.Printf("%-44s %14s %20s\n", "flasher CollectInventory (API+store)", f.Round(time.Millisecond), fmtRuns(flasherTimes))
	fmt.Printf("\nratio flasher/bare: %.3f; flasher/bare with connections reused: %.3f (target ≤ 1.10)\n", float64(f)/float64(b), float64(f)/float64(k))
	fmt.Printf("\nwhat the simulated BMCs saw in the last run, per BMC:\n")
	fmt.Printf("%-44s %10s %10s %12s %10s\n", "side", "requests", "logins", "connections", "CPU")
	for _, r := range []struct {
		side string
		l    bmcfleet.Load
	}{{"baseline: bare bmclib loop", bareLoad}, {"baseline: connections reused", keepLoad}, {"flasher CollectInventory", flasherLoad}} {
		n := float64(*flagN)
		fmt.Printf("%-44s %10.1f %10.1f %12.1f %10s\n", r.side, float64(r.l.Requests)/n, float64(r.l.Logins)/n,
			float64(r.l.Conns)/n, r.l.CPU.Round(100*time.Millisecond))
	}
	fmt.Println("CPU is the process's user+system time while the side's fleet ran (simulated BMCs included).")
}

func startFleet(prefix string) *bmcfleet.Fleet {
	fl, err := bmcfleet.Start(*flagN, func(i int) redfish.Config {
		return redfish.Config{
			Name: fmt.Sprintf("%s-%04d", prefix, i), Personality: redfish.Dell, Vendor: vendor, Model: model,
			Serial: fmt.Sprintf("SN%s%04d", prefix, i), Username: user, Password: pass,
			Components: []redfish.Component{
				{Slug: redfish.SlugBMC, Version: "6.10.30.00"},
				{Slug: redfish.SlugBIOS, Version: "2.11.4"},
				{Slug: redfish.SlugNIC, Vendor: "Broadcom", Model: "BCM57414", Serial: fmt.Sprintf("NIC%s%04d", prefix, i), Version: "21.80.16.95"},
			},
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	return fl
}

func timed(profile string, f func() error) (time.Duration, error) {
	stop, err := measure.StartCPUProfile(profile)
	if err != nil {
		return 0, err
	}
	defer stop()
	began := time.Now()
	err = f()
	return time.Since(began), err
}

func fmtRuns(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, strconv.FormatFloat(d.Seconds(), 'f', 2, 64))
	}
	return strings.Join(s, ",")
}

// bareLoop is what a script on bmclib alone does: per BMC, log in with the dell provider, read
// the inventory, log out; c BMCs at once. keepAlive gives the provider an HTTP client that
// reuses connections (with bmclib's own, every request opens one), as Flasher's sessions do.
func bareLoop(bmcs []*redfish.BMC, keepAlive bool) error {
	return bmcfleet.Each(bmcs, *flagC, func(b *redfish.BMC) error { return bareOne(b, keepAlive) })
}

func bareOne(b *redfish.BMC, keepAlive bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	host, port, _ := net.SplitHostPort(b.Addr())
	reg := registrar.NewRegistry()
	opts := []dell.Option{dell.WithPort(port)}
	if keepAlive {
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		defer tr.CloseIdleConnections()
		opts = append(opts, dell.WithHttpClient(&http.Client{Transport: reuse{tr}}))
	}
	drv := dell.New("http://"+host, user, pass, logr.Discard(), opts...)
	reg.Register(dell.ProviderName, dell.ProviderProtocol, dell.Features, nil, drv)
	c := bmclib.NewClient(host, user, pass, bmclib.WithRegistry(reg), bmclib.WithPerProviderTimeout(time.Minute))
	if err := c.Open(ctx); err != nil {
		return fmt.Errorf("%s: open: %w", b.Name(), err)
	}
	defer c.Close(ctx)
	dev, err := c.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("%s: inventory: %w", b.Name(), err)
	}
	if dev == nil || dev.BIOS == nil || dev.BIOS.Firmware == nil || dev.BIOS.Firmware.Installed == "" {
		return fmt.Errorf("%s: inventory without a BIOS version", b.Name())
	}
	return nil
}

// reuse undoes the Connection: close gofish (under bmclib) puts on every request of a client it
// did not build, so a script that wants its connections reused gets it.
type reuse struct{ tr *http.Transport }

func (r reuse) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Close {
		c := *req
		c.Close = false
		req = &c
	}
	return r.tr.RoundTrip(req)
}

// startServer builds the control plane as flasher-server does, over the fleet's inventory file,
// and returns a client connection to it.
func startServer(dir string, bmcs []*redfish.BMC) (*grpc.ClientConn, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	invPath := filepath.Join(dir, "inventory.yaml")
	if err := bmcfleet.WriteInventory(invPath, vendor, model, user, pass, bmcs, nil); err != nil {
		return nil, nil, err
	}
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Inventory, cfg.GRPCListen, cfg.HTTPListen = dir, invPath, "127.0.0.1:0", ""
	cfg.Insecure, cfg.ShutdownTimeout, cfg.CollectConcurrency = true, 0, *flagC
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), server.WithoutAudit())
	if err != nil {
		cancel()
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		return nil, nil, err
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-done
		return nil, nil, err
	}
	return conn, func() { conn.Close(); cancel(); <-done }, nil
}

// flasherCollect collects the whole fleet through the API and checks every server was read.
func flasherCollect(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	stream, err := flasherv1.NewInventoryServiceClient(conn).CollectInventory(ctx, &flasherv1.CollectInventoryRequest{
		Selector: &flasherv1.ServerSelector{All: true}, Concurrency: int32(*flagC)})
	if err != nil {
		return err
	}
	read, failed := 0, 0
	var first string
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch ev.State {
		case flasherv1.CollectState_COLLECT_STATE_SUCCEEDED:
			if len(ev.Components) < 3 {
				return fmt.Errorf("%s: read %d components, want 3", ev.ServerId, len(ev.Components))
			}
			read++
		case flasherv1.CollectState_COLLECT_STATE_FAILED:
			if failed++; first == "" {
				first = ev.ServerId + ": " + ev.FailureCode + ": " + ev.Message
			}
		}
	}
	if failed > 0 || read != *flagN {
		return fmt.Errorf("%d servers read, %d failed (first: %s)", read, failed, first)
	}
	return nil
}
