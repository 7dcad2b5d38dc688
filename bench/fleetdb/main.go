// Command fleetdb measures how long the fleetdb inventory source takes to list and poll a large
// fleet served by the simulated fleetdb on loopback, and how many HTTP requests it makes, and
// prints a table. The simulator answers from memory, so the figures are the client's and the
// wire's share (JSON encoding and decoding, pagination); a real fleetdb adds its database time
// per request, which is why the request count matters as much as the wall time.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/flasher-dev/flasher/bench/internal/measure"
	"log"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"

	"github.com/flasher-dev/flasher/internal/fleetflag"
	"github.com/flasher-dev/flasher/internal/testenv"

	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	simfleetdb "github.com/flasher-dev/flasher/sim/fleetdb"
)

const token = "bench-token"

func main() {
	var (
		servers = flag.Int("servers", 10000, "servers in the simulated fleetdb")
		flagged = flag.Int("flagged", 100, "servers carrying a sh.hollow.flasher.task attribute")
		single  = flag.Int("single", 500, "servers read one by one with Server(id)")
		runs    = flag.Int("runs", 3, "runs of each measurement; the median is shown")
		cpuProf = flag.String("cpuprofile", "", "write a CPU profile to this file")
	)
	flag.Parse()
	stopProfile, err := measure.StartCPUProfile(*cpuProf)
	if err != nil {
		log.Fatal(err)
	}
	defer stopProfile()

	sim, err := simfleetdb.New(simfleetdb.Config{Token: token})
	if err != nil {
		log.Fatal(err)
	}
	if err := sim.Start(""); err != nil {
		log.Fatal(err)
	}
	defer sim.Close()

	seedStart := time.Now()
	ids := seed(sim, *servers, *flagged)
	fmt.Printf("seeded %d servers (%d components each, %d flagged) in %v\n\n", *servers, 6, *flagged, time.Since(seedStart).Round(time.Millisecond))

	newSource := func(pageSize int) *fleetdb.Source {
		src, err := fleetdb.New(fleetdb.Config{URL: sim.URL(), Token: token, PageSize: pageSize})
		if err != nil {
			log.Fatal(err)
		}
		return src
	}
	ctx := context.Background()

	type row struct {
		op       string
		records  int
		requests int64
		wall     time.Duration
	}
	var rows []row
	measure := func(op string, f func() (int, int64)) {
		var walls []time.Duration
		var n int
		var reqs int64
		for range *runs {
			start := time.Now()
			n, reqs = f()
			walls = append(walls, time.Since(start))
		}
		slices.Sort(walls)
		rows = append(rows, row{op, n, reqs, walls[len(walls)/2]})
	}

	for _, ps := range []int{1000, 500, 100} {
		measure(fmt.Sprintf("Servers(), cold cache, page size %d", ps), func() (int, int64) {
			src := newSource(ps)
			all, err := src.Servers(ctx)
			if err != nil {
				log.Fatal(err)
			}
			return len(all), src.Stats().Requests
		})
	}
	warm := newSource(1000)
	if _, err := warm.Servers(ctx); err != nil {
		log.Fatal(err)
	}
	measure("Servers(), warm cache", func() (int, int64) {
		before := warm.Stats().Requests
		all, err := warm.Servers(ctx)
		if err != nil {
			log.Fatal(err)
		}
		return len(all), warm.Stats().Requests - before
	})
	measure(fmt.Sprintf("Server(id) one by one, cold cache (%d servers)", *single), func() (int, int64) {
		src := newSource(1000)
		for _, id := range ids[:min(*single, len(ids))] {
			if _, err := src.Server(ctx, id); err != nil {
				log.Fatal(err)
			}
		}
		return min(*single, len(ids)), src.Stats().Requests
	})
	measure("Catalog(), cold cache", func() (int, int64) {
		src := newSource(1000)
		cat, err := src.Catalog(ctx)
		if err != nil {
			log.Fatal(err)
		}
		return len(cat.Firmware), src.Stats().Requests
	})
	measure("attribute poll: servers with sh.hollow.flasher.task", func() (int, int64) {
		c, err := fleetdbapi.NewClientWithToken(token, sim.URL(), nil)
		if err != nil {
			log.Fatal(err)
		}
		before := sim.Stats().Total
		n := 0
		for page := 1; ; page++ {
			recs, resp, err := c.List(ctx, &fleetdbapi.ServerListParams{
				AttributeListParams: []fleetdbapi.AttributeListParams{{Namespace: taskNS}},
				PaginationParams:    &fleetdbapi.PaginationParams{Limit: 1000, Page: page, Preload: true},
			})
			if err != nil {
				log.Fatal(err)
			}
			n += len(recs)
			if !resp.HasNextPage() {
				break
			}
		}
		return n, int64(sim.Stats().Total - before)
	})

	// The attribute workflow's poll cycle against a real control plane (SQLite store, gRPC on
	// loopback, planning on the fleetdb source); no executors, so tasks stay queued.
	dir, err := os.MkdirTemp("", "bench-fleetdb")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := newSource(1000)
	env, err := testenv.Run(testenv.Config{DBPath: filepath.Join(dir, "flasher.db"), Inventory: src})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Stop()
	flagger, err := fleetflag.New(fleetflag.Config{Fleetdb: src.Client(), Tasks: env.Tasks, Worker: "bench"})
	if err != nil {
		log.Fatal(err)
	}
	for _, op := range []string{fmt.Sprintf("fleetflag poll: %d new requests → tasks", *flagged), "fleetflag poll: steady state, nothing changed"} {
		before := sim.Stats().Total
		start := time.Now()
		res, err := flagger.Poll(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if len(res.Errors) > 0 {
			log.Fatalf("%s: %v", op, res.Errors[0])
		}
		rows = append(rows, row{fmt.Sprintf("%s (created %d, written %d)", op, res.Created, res.Updated), res.Flagged, int64(sim.Stats().Total - before), time.Since(start)})
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\trecords\tfleetdb HTTP requests\twall (median of runs; fleetflag: one run)\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t\n", r.op, r.records, r.requests, r.wall.Round(time.Millisecond))
	}
	_ = tw.Flush()
}

const taskNS = "sh.hollow.flasher.task"

// seed adds n servers shaped like the simulated fleet's (six components with firmware), a small
// catalog, and a task attribute on the first flagged servers.
func seed(sim *simfleetdb.Server, n, flagged int) []string {
	ids := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("sim-%05d", i+1)
		id := sim.AddServer(simfleetdb.ServerSeed{
			Name: name, Facility: "bench", Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "R6515" + name,
			BMCAddress: "127.0.0.1:1", Username: "root", Password: "calvin",
			Components: []simfleetdb.ComponentSeed{
				{Slug: "bmc", Vendor: "Dell Inc.", Model: "iDRAC9", Serial: "bmc-" + name, Installed: "6.10.30.00"},
				{Slug: "bios", Vendor: "Dell Inc.", Model: "R6515", Serial: "bios-" + name, Installed: "2.11.4"},
				{Slug: "nic", Vendor: "Broadcom", Model: "BCM57414", Serial: "nic0-" + name, Installed: "21.80.16.95"},
				{Slug: "nic", Vendor: "Broadcom", Model: "BCM57414", Serial: "nic1-" + name, Installed: "21.80.16.95"},
				{Slug: "drive", Vendor: "Micron", Model: "MTFDDAK480TDS", Serial: "d0-" + name, Installed: "D3MU001"},
				{Slug: "storagecontroller", Vendor: "Dell", Model: "PERC H740P", Serial: "sc-" + name, Installed: "51.13.0-3485"},
			},
		})
		if i < flagged {
			// resolve mode: Flasher picks the set by vendor and model
			sim.SetAttribute(id, taskNS, map[string]any{"method": "out-of-band", "status": "", "priority": 1, "requester": "bench"})
		}
		ids = append(ids, id.String())
	}
	f := false
	var latest uuid.UUID
	for i := range 200 {
		latest = sim.AddFirmware(fleetdbapi.ComponentFirmwareVersion{
			Vendor: "dell", Model: []string{"poweredge r6515"}, Component: "bios", Version: fmt.Sprintf("2.%d.0", i),
			Filename: "bios.bin", Checksum: fmt.Sprintf("%064x", i), RepositoryURL: "http://127.0.0.1:1/bios.bin",
			InstallInband: &f, OEM: &f,
		})
	}
	sim.AddFirmwareSet(uuid.Nil, "dell-r6515", map[string]string{"vendor": "dell", "model": "poweredge r6515", "default": "true"}, latest)
	return ids
}
