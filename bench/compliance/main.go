// Command compliance measures how fast Flasher answers compliance from its store: a file
// inventory of -servers servers with 8 components each, one firmware set for them, and an
// observation of every component in SQLite (most at the wanted version, some behind). It times
// ComplianceService.SummarizeCompliance over the whole fleet and ListCompliance page by page
// through the gRPC API, next to the baseline of reading every current observation from the
// store alone (the floor any answer from the store pays), and prints p50 and p99 of each.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/flasher-dev/flasher/bench/internal/measure"
	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

var (
	flagServers = flag.Int("servers", 10000, "servers in the fleet")
	flagCalls   = flag.Int("calls", 20, "timed calls of each kind per run")
	flagRuns    = flag.Int("runs", 3, "runs, each on a fresh database; medians of the runs' figures are printed")
	flagProfile = flag.String("cpuprofile", "", "write a CPU profile of the last run to this file")
)

const vendor, model = "Dell Inc.", "PowerEdge R6515"

// part is one of the 8 components every server has, with its installed and wanted versions.
type part struct{ slug, compVendor, compModel, serialPrefix, old, wanted string }

var parts = []part{
	{"BMC", vendor, model, "", "6.10.30.00", "7.00.00.171"},
	{"BIOS", vendor, model, "", "2.11.4", "2.19.1"},
	{"NIC", "Broadcom", "BCM57414", "nic0-", "21.80.16.95", "22.31.6"},
	{"NIC", "Broadcom", "BCM57414", "nic1-", "21.80.16.95", "22.31.6"},
	{"Drive", "Micron", "MTFDDAK480TDS", "d0-", "D3MU001", "D3MU003"},
	{"Drive", "Micron", "MTFDDAK480TDS", "d1-", "D3MU001", "D3MU003"},
	{"StorageController", "Dell", "PERC H740P", "sc-", "51.13.0-3485", "51.16.0-4076"},
	{"CPLD", vendor, model, "", "1.0.4", "1.0.6"},
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	var sum50, sum99, page50, page99, store50, store99 []time.Duration
	for run := range *flagRuns {
		prof := ""
		if run == *flagRuns-1 {
			prof = *flagProfile
		}
		r, err := oneRun(prof)
		if err != nil {
			log.Fatalf("run %d: %v", run+1, err)
		}
		sum50, sum99 = append(sum50, measure.Quantile(r.summary, 0.5)), append(sum99, measure.Quantile(r.summary, 0.99))
		page50, page99 = append(page50, measure.Quantile(r.pages, 0.5)), append(page99, measure.Quantile(r.pages, 0.99))
		store50, store99 = append(store50, measure.Quantile(r.store, 0.5)), append(store99, measure.Quantile(r.store, 0.99))
	}
	fmt.Printf("compliance from the store (SQLite): %d servers × %d components, %d calls of each kind per run, %d run(s); medians of the runs\n\n",
		*flagServers, len(parts), *flagCalls, *flagRuns)
	fmt.Printf("%-62s %12s %12s\n", "answer", "p50", "p99")
	row := func(name string, p50, p99 []time.Duration) {
		fmt.Printf("%-62s %12s %12s\n", name, measure.Ms(measure.Median(p50)), measure.Ms(measure.Median(p99)))
	}
	row("baseline: the store's current observations of every server", store50, store99)
	row(fmt.Sprintf("SummarizeCompliance, all %d servers (API)", *flagServers), sum50, sum99)
	row("ListCompliance, one page of 1000 servers (API)", page50, page99)
	fmt.Printf("\ntarget: p99 ≤ 1000 ms for the whole fleet (SummarizeCompliance): %s\n",
		map[bool]string{true: "met", false: "MISSED"}[measure.Median(sum99) <= time.Second])
}

type samples struct{ summary, pages, store []time.Duration }

func oneRun(profile string) (samples, error) {
	var out samples
	dir, err := os.MkdirTemp("", "bench-compliance-")
	if err != nil {
		return out, err
	}
	defer os.RemoveAll(dir)
	invPath := filepath.Join(dir, "inventory.yaml")
	servers, err := writeInventory(invPath)
	if err != nil {
		return out, err
	}
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Inventory, cfg.GRPCListen, cfg.HTTPListen = dir, invPath, "127.0.0.1:0", ""
	cfg.Insecure, cfg.ShutdownTimeout = true, 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// No executors: nothing is flashed or read from hardware; compliance reads the store.
	srv, err := server.New(ctx, cfg, server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), server.WithoutAudit(),
		server.WithExecutors(map[task.Method]scheduler.Executor{}))
	if err != nil {
		return out, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-srv.Ready():
	case err := <-done:
		return out, err
	}
	if err := observeAll(ctx, srv.Store(), servers); err != nil {
		return out, err
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return out, err
	}
	defer conn.Close()
	cc := flasherv1.NewComplianceServiceClient(conn)
	all := &flasherv1.ServerSelector{All: true}

	// One untimed pass warms the caches a long-running server has warm (catalog index, pages).
	if _, err := cc.SummarizeCompliance(ctx, &flasherv1.SummarizeComplianceRequest{Selector: all}); err != nil {
		return out, err
	}
	stop, err := measure.StartCPUProfile(profile)
	if err != nil {
		return out, err
	}
	defer stop()
	for range *flagCalls {
		began := time.Now()
		obs, err := srv.Store().CurrentObservations(ctx, nil)
		if err != nil {
			return out, err
		}
		out.store = append(out.store, time.Since(began))
		if len(obs) != *flagServers*len(parts) {
			return out, fmt.Errorf("the store holds %d current observations, want %d", len(obs), *flagServers*len(parts))
		}

		began = time.Now()
		sum, err := cc.SummarizeCompliance(ctx, &flasherv1.SummarizeComplianceRequest{Selector: all})
		if err != nil {
			return out, err
		}
		out.summary = append(out.summary, time.Since(began))
		if int(sum.Servers) != *flagServers || len(sum.Counts) != 2 {
			return out, fmt.Errorf("summary of %d servers in %d counts (%v), want %d in 2 (compliant, outdated)", sum.Servers, len(sum.Counts), sum.Counts, *flagServers)
		}
	}
	token, pages := "", 0
	for pages < *flagCalls {
		began := time.Now()
		resp, err := cc.ListCompliance(ctx, &flasherv1.ListComplianceRequest{Selector: all, PageSize: 1000, PageToken: token})
		if err != nil {
			return out, err
		}
		out.pages = append(out.pages, time.Since(began))
		if len(resp.Servers) == 0 || len(resp.Servers[0].Components) != len(parts) {
			return out, fmt.Errorf("page of %d servers, first with %d components: %v", len(resp.Servers), len(resp.Servers[0].GetComponents()), resp.Servers[0])
		}
		pages++
		token = resp.NextPageToken // back to the first page after the last

	}
	return out, nil
}

// writeInventory writes the fleet, the catalog and its firmware set, and returns the servers.
func writeInventory(path string) ([]*inventory.Server, error) {
	doc := file.Document{Credentials: map[string]file.CredentialDoc{"fleet": {Username: "root", Password: "calvin"}}}
	var servers []*inventory.Server
	for i := range *flagServers {
		id := fmt.Sprintf("srv-%05d", i)
		sd := file.ServerDoc{ID: id, Vendor: vendor, Model: model, Serial: "SN" + id,
			BMC: file.BMCDoc{Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Credentials: "fleet"}}
		srv := &inventory.Server{ID: id}
		for _, p := range parts {
			serial := ""
			if p.serialPrefix != "" {
				serial = p.serialPrefix + id
			}
			sd.Components = append(sd.Components, file.ComponentDoc{Slug: p.slug, Vendor: p.compVendor, Model: p.compModel, Serial: serial, Version: p.old, OutOfBand: true})
			srv.Components = append(srv.Components, inventory.Component{Slug: p.slug, Vendor: p.compVendor, Model: p.compModel, Serial: serial})
		}
		doc.Servers = append(doc.Servers, sd)
		servers = append(servers, srv)
	}
	set := file.FirmwareSetDoc{ID: "r6515", Name: "r6515", Labels: map[string]string{"vendor": vendor, "model": model}}
	seen := map[string]bool{}
	for _, p := range parts {
		fid := p.slug + "-" + p.wanted
		if seen[fid] {
			continue
		}
		seen[fid] = true
		sum := sha256.Sum256([]byte(fid))
		doc.Firmware = append(doc.Firmware, file.FirmwareDoc{ID: fid, Vendor: p.compVendor, Models: []string{p.compModel}, Component: p.slug,
			Version: p.wanted, Scheme: "opaque", URL: "https://images.example/" + fid + ".bin", Checksum: "sha256:" + hex.EncodeToString(sum[:]), Method: "out-of-band"})
		set.Firmware = append(set.Firmware, fid)
	}
	doc.FirmwareSets = append(doc.FirmwareSets, set)
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return servers, os.WriteFile(path, b, 0o600)
}

// observeAll records a BMC reading of every component: the wanted version, except on every
// tenth server, whose BIOS is still at the old one.
func observeAll(ctx context.Context, st store.Store, servers []*inventory.Server) error {
	at := time.Now().Add(-time.Minute)
	var batch []store.Observation
	for i, srv := range servers {
		keys := fleet.Instances(srv.Components)
		for j, c := range srv.Components {
			v := parts[j].wanted
			if i%10 == 0 && c.Slug == "BIOS" {
				v = parts[j].old
			}
			batch = append(batch, store.Observation{ServerID: srv.ID, Instance: keys[j], Component: c.Slug, Vendor: c.Vendor, Model: c.Model,
				Serial: c.Serial, Version: v, Source: store.SourceBMC, ObservedAt: at, CollectID: "bench"})
		}
		if len(batch) >= 8000 || i == len(servers)-1 {
			if err := st.RecordObservations(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}
