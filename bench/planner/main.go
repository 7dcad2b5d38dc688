// Command planner measures the planner: plans for a server with many components against a large
// firmware catalog, paced at a target rate, printing latency percentiles and the achieved rate.
//
//	go run ./bench/planner -rate 1000 -duration 10s
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"github.com/flasher-dev/flasher/bench/internal/measure"
	"log"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/task"
)

// line is one firmware line of the benchmark server: a slug and a component model.
type line struct {
	slug, vendor, model string
	count               int
}

// serverLines add up to 64 component instances, the shape of a dense GPU/storage node.
var serverLines = []line{
	{"BMC", "Dell", "", 1}, {"BIOS", "Dell", "", 1}, {"CPLD", "Dell", "", 1},
	{"Drive", "Micron", "MTFDDAK480TDS", 12}, {"Drive", "Samsung", "MZ7LH480HAHQ", 12}, {"Drive", "Intel", "SSDPE2KX040T8", 8},
	{"Backplane", "Dell", "BP-12", 2}, {"StorageController", "Broadcom", "PERC-H755", 2},
	{"NIC", "Mellanox", "MCX4121A-ACAT", 4}, {"NIC", "Broadcom", "BCM57414", 2},
	{"PSU", "Dell", "PWR-1400", 2}, {"TPM", "Nuvoton", "NPCT75x", 1}, {"GPU", "NVIDIA", "A100-SXM4", 8},
	{"CPU", "AMD", "EPYC-7713", 2}, {"Fan", "Dell", "FAN-6", 6},
}

func main() {
	rate := flag.Int("rate", 1000, "plans per second to sustain")
	dur := flag.Duration("duration", 10*time.Second, "how long to sustain the rate")
	records := flag.Int("records", 10000, "firmware records in the catalog")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the paced run to this file")
	flag.Parse()

	srv, cat := build(*records)
	p := plan.New()
	req := plan.Request{Mode: task.ModeResolve, Method: task.MethodOutOfBand}

	// The first plan pays for indexing the catalog snapshot; later plans reuse the index.
	t0 := time.Now()
	first, err := p.Plan(srv, cat, req)
	cold := time.Since(t0)
	if err != nil {
		log.Fatalf("plan: %v", err)
	}
	lintStart := time.Now()
	lintErrs := plan.Lint(cat)
	lintTime := time.Since(lintStart)

	// Open-loop pacing: plan i is due at start + i/rate; a late plan runs at once, so a slow
	// plan shows as queueing delay (latency from the due time) instead of silently lowering the
	// rate.
	interval := time.Second / time.Duration(*rate)
	timer := time.NewTimer(0)
	<-timer.C
	lat := make([]time.Duration, 0, *rate*int(dur.Seconds()+1))
	delay := make([]time.Duration, 0, cap(lat))
	stopProfile, err := measure.StartCPUProfile(*cpuprofile)
	if err != nil {
		log.Fatal(err)
	}
	defer stopProfile()
	start := time.Now()
	next := start
	for time.Since(start) < *dur {
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			<-timer.C
		}
		s := time.Now()
		if _, err := p.Plan(srv, cat, req); err != nil {
			log.Fatalf("plan: %v", err)
		}
		end := time.Now()
		lat = append(lat, end.Sub(s))
		delay = append(delay, end.Sub(next))
		next = next.Add(interval)
	}
	elapsed := time.Since(start)

	// Unpaced, to show the headroom above the target rate.
	n, us := 0, time.Now()
	for time.Since(us) < 2*time.Second {
		if _, err := p.Plan(srv, cat, req); err != nil {
			log.Fatalf("plan: %v", err)
		}
		n++
	}
	maxRate := float64(n) / time.Since(us).Seconds()

	slices.Sort(lat)
	slices.Sort(delay)
	pct := func(xs []time.Duration, q float64) time.Duration { return xs[min(len(xs)-1, int(q*float64(len(xs))))] }
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "metric\tvalue\t\n")
	fmt.Fprintf(w, "components\t%d\t\n", len(srv.Components))
	fmt.Fprintf(w, "catalog records\t%d\t\n", len(cat.Firmware))
	fmt.Fprintf(w, "steps per plan\t%d\t\n", len(first.Steps))
	fmt.Fprintf(w, "skipped per plan\t%d\t\n", len(first.Skipped))
	fmt.Fprintf(w, "first plan (indexes catalog)\t%v\t\n", cold.Round(time.Microsecond))
	fmt.Fprintf(w, "catalog lint (%d findings)\t%v\t\n", len(lintErrs), lintTime.Round(time.Microsecond))
	fmt.Fprintf(w, "target rate\t%d/s\t\n", *rate)
	fmt.Fprintf(w, "achieved rate\t%.0f/s\t\n", float64(len(lat))/elapsed.Seconds())
	fmt.Fprintf(w, "plans\t%d in %v\t\n", len(lat), elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "plan latency p50\t%v\t\n", pct(lat, 0.50).Round(time.Microsecond))
	fmt.Fprintf(w, "plan latency p99\t%v\t\n", pct(lat, 0.99).Round(time.Microsecond))
	fmt.Fprintf(w, "plan latency max\t%v\t\n", lat[len(lat)-1].Round(time.Microsecond))
	fmt.Fprintf(w, "from due time p50\t%v\t\n", pct(delay, 0.50).Round(time.Microsecond))
	fmt.Fprintf(w, "from due time p99\t%v\t\n", pct(delay, 0.99).Round(time.Microsecond))
	fmt.Fprintf(w, "unpaced rate (1 goroutine)\t%.0f/s\t\n", maxRate)
	w.Flush()
}

func checksum(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// build returns the 64-component server and a catalog of n records: 4 versions of each of the
// server's firmware lines (the newest in a resolvable set, BIOS and NIC with requirements), the
// rest firmware of other server models that must never match.
func build(n int) (*inventory.Server, *inventory.Catalog) {
	const vendor, model = "Dell Inc.", "PowerEdge R7525"
	srv := &inventory.Server{ID: "bench-1", Vendor: vendor, Model: model}
	cat := &inventory.Catalog{}
	set := &inventory.FirmwareSet{ID: "r7525", Name: "R7525", Labels: map[string]string{"vendor": "Dell", "model": model}}
	for li, l := range serverLines {
		for i := range l.count {
			srv.Components = append(srv.Components, inventory.Component{
				Slug: l.slug, Vendor: l.vendor, Model: l.model, Serial: fmt.Sprintf("%s-%d-%d", l.slug, li, i),
				Version: "1.0.0", OutOfBand: true,
			})
		}
		for v := range 4 {
			id := fmt.Sprintf("%s-%d-v%d", l.slug, li, v)
			models := []string{model}
			if l.model != "" {
				models = []string{l.model}
			}
			f := &inventory.Firmware{ID: id, Vendor: l.vendor, Models: models, Component: l.slug,
				Version: fmt.Sprintf("%d.%d.0", 1+v/2, v%2), Scheme: "dotted", URL: "https://fw.example/" + id, Checksum: checksum(id)}
			if v == 3 {
				switch l.slug {
				case "BIOS":
					f.Requires = []inventory.Requirement{{Component: "BMC", Constraint: ">=2.1"}}
				case "NIC":
					f.Requires = []inventory.Requirement{{Component: "BIOS", Constraint: ">=2.0"}}
				}
				set.Firmware = append(set.Firmware, id)
			}
			cat.Firmware = append(cat.Firmware, f)
		}
	}
	for i := len(cat.Firmware); i < n; i++ {
		l := serverLines[i%len(serverLines)]
		id := fmt.Sprintf("other-%d", i)
		cat.Firmware = append(cat.Firmware, &inventory.Firmware{ID: id, Vendor: l.vendor, Models: []string{fmt.Sprintf("OTHER-%d", i%500)},
			Component: l.slug, Version: fmt.Sprintf("%d.%d.%d", i%7, i%13, i%101), Scheme: "dotted", URL: "https://fw.example/" + id, Checksum: checksum(id)})
	}
	cat.Sets = append(cat.Sets, set)
	for i := range 200 {
		cat.Sets = append(cat.Sets, &inventory.FirmwareSet{ID: fmt.Sprintf("other-set-%d", i), Name: fmt.Sprintf("other %d", i),
			Labels: map[string]string{"vendor": "Dell", "model": fmt.Sprintf("OTHER-%d", i)}, Firmware: []string{fmt.Sprintf("other-%d", 100+i)}})
	}
	return srv, cat
}
