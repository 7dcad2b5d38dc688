// Command oob measures what the out-of-band executor costs over bmclib itself: it flashes a fleet
// of simulated Dell BMCs (BIOS and NIC, each applied at a host power cycle) through the scheduler
// and the executor, and, in the same run against a second identical fleet, with a bare bmclib
// loop at the same concurrency and poll interval. It prints the wall times, their ratio and the
// memory of the process (which also hosts the simulators and the image server).
package main

import (
	"github.com/flasher-dev/flasher/bench/internal/bmcfleet"
	"github.com/flasher-dev/flasher/bench/internal/measure"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/constants"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/jacobweinstock/registrar"

	"github.com/flasher-dev/flasher/internal/inventory/file"
	"github.com/flasher-dev/flasher/internal/outofband"
	"github.com/flasher-dev/flasher/internal/scheduler"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/image"
	"github.com/flasher-dev/flasher/sim/redfish"
)

var (
	flagN       = flag.Int("n", 200, "simulated BMCs per fleet")
	flagC       = flag.Int("c", 50, "concurrency (tasks at once)")
	flagInstall = flag.Duration("install", 2*time.Second, "simulated install time per component")
	flagPoll    = flag.Duration("poll", 500*time.Millisecond, "task status poll interval (both sides)")
	flagRuns    = flag.Int("runs", 1, "runs of each side; medians are printed")
	flagSize    = flag.Int("image-size", 256<<10, "image size in bytes")
	flagProfile = flag.String("cpuprofile", "", "write CPU profiles of each side's last run to PREFIX.bare.pprof and PREFIX.flasher.pprof")
)

// The fleet: every server is a Dell R6515 with one BIOS and one NIC to update.
const (
	vendor, model       = "Dell Inc.", "PowerEdge R6515"
	nicVendor, nicModel = "Broadcom", "BCM57414"
	biosOld, biosNew    = "2.11.4", "2.19.1"
	nicOld, nicNew      = "21.80.16.95", "22.31.6.0"
	user, pass          = "root", "calvin"
)

var images = []image.Header{
	{Component: "BIOS", Vendor: vendor, Model: model, Version: biosNew},
	{Component: "NIC", Vendor: nicVendor, Model: nicModel, Version: nicNew},
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "bench-oob-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	imgSrv := serveImages()
	defer imgSrv.Close()

	var bareTimes, flasherTimes []time.Duration
	var bareMem, flasherMem mem
	var bareLoad, flasherLoad bmcfleet.Load
	profile := func(side string, run int) string {
		if *flagProfile == "" || run != *flagRuns-1 {
			return ""
		}
		return *flagProfile + "." + side + ".pprof"
	}
	for run := 0; run < *flagRuns; run++ {
		bare := startFleet(fmt.Sprintf("bare%d", run), *flagN)
		d, m, err := timed(profile("bare", run), func() error { return bareLoop(bare.BMCs) })
		bare.Close()
		if err != nil {
			log.Fatalf("bare loop: %v", err)
		}
		bareTimes, bareMem, bareLoad = append(bareTimes, d), bareMem.max(m), bare.Load()

		fl := startFleet(fmt.Sprintf("flasher%d", run), *flagN)
		d, m, err = timed(profile("flasher", run), func() error {
			return flasherRun(filepath.Join(dir, fmt.Sprint(run)), imgSrv.URL, fl.BMCs)
		})
		fl.Close()
		if err != nil {
			log.Fatalf("flasher: %v", err)
		}
		flasherTimes, flasherMem, flasherLoad = append(flasherTimes, d), flasherMem.max(m), fl.Load()
	}
	b, f := measure.Median(bareTimes), measure.Median(flasherTimes)
	fmt.Printf("out-of-band flash: %d BMCs × 2 components (BIOS, NIC; host power cycle each), install %s, concurrency %d, poll %s, %d run(s)\n\n",
		*flagN, *flagInstall, *flagC, *flagPoll, *flagRuns)
	fmt.Printf("%-34s %12s %14s %14s %14s\n", "side", "wall (median)", "runs", "peak RSS", "peak Go heap")
	fmt.Printf("%-34s %12s %14s %14s %14s\n", "bare bmclib loop", b.Round(time.Millisecond), fmtRuns(bareTimes), mib(bareMem.rss), mib(bareMem.heap))
	fmt.Printf("%-34s %12s %14s %14s %14s\n", "flasher (scheduler+executor+SQLite)", f.Round(time.Millisecond), fmtRuns(flasherTimes), mib(flasherMem.rss), mib(flasherMem.heap))
	fmt.Printf("\nratio flasher/bare: %.3f (target ≤ 1.10)\n", float64(f)/float64(b))
	fmt.Printf("\nwhat the simulated BMCs saw in the last run, per BMC (%d BMCs per side):\n", *flagN)
	fmt.Printf("%-34s %10s %10s %10s %12s %10s\n", "side", "requests", "logins", "logouts", "connections", "CPU")
	for _, r := range []struct {
		side string
		l    bmcfleet.Load
	}{{"bare bmclib loop", bareLoad}, {"flasher (scheduler+executor+SQLite)", flasherLoad}} {
		n := float64(*flagN)
		fmt.Printf("%-34s %10.1f %10.1f %10.1f %12.1f %10s\n", r.side, float64(r.l.Requests)/n, float64(r.l.Logins)/n,
			float64(r.l.Logouts)/n, float64(r.l.Conns)/n, r.l.CPU.Round(100*time.Millisecond))
	}
	fmt.Println("CPU is the process's user+system time during the side's last run (simulators included).")
	fmt.Printf("RSS is the whole process: it also hosts the %d simulated BMCs of each side and the image server.\n", *flagN)
}

func fmtRuns(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, strconv.FormatFloat(d.Seconds(), 'f', 1, 64))
	}
	return strings.Join(s, ",")
}

func mib(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

type mem struct{ rss, heap uint64 }

func (m mem) max(o mem) mem { return mem{max(m.rss, o.rss), max(m.heap, o.heap)} }

// timed times f and samples the process memory while it runs; a non-empty profile path
// gets a CPU profile of the run.
func timed(profile string, f func() error) (time.Duration, mem, error) {
	runtime.GC()
	stopProfile, err := measure.StartCPUProfile(profile)
	if err != nil {
		return 0, mem{}, err
	}
	defer stopProfile()
	var peak mem
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = peak.max(mem{rss: residentBytes(), heap: ms.HeapInuse})
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	began := time.Now()
	err = f()
	d := time.Since(began)
	close(stop)
	wg.Wait()
	return d, peak, err
}

func serveImages() *httptest.Server {
	byName := map[string][]byte{}
	for _, h := range images {
		byName[strings.ToLower(h.Component)+".bin"] = image.Make(h, *flagSize, "")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := byName[strings.TrimPrefix(r.URL.Path, "/images/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(b)))
	}))
	s.Listener = l
	s.Start()
	return s
}

func checksum(h image.Header) string {
	sum := sha256.Sum256(image.Make(h, *flagSize, ""))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func startFleet(prefix string, n int) *bmcfleet.Fleet {
	fl, err := bmcfleet.Start(n, func(i int) redfish.Config {
		return redfish.Config{
			Name: fmt.Sprintf("%s-%04d", prefix, i), Personality: redfish.Dell, Vendor: vendor, Model: model,
			Serial: fmt.Sprintf("SN%s%04d", prefix, i), Username: user, Password: pass,
			Components: []redfish.Component{
				{Slug: redfish.SlugBMC, Version: "6.10.30.00"},
				{Slug: redfish.SlugBIOS, Version: biosOld},
				{Slug: redfish.SlugNIC, Vendor: nicVendor, Model: nicModel, Serial: fmt.Sprintf("NIC%s%04d", prefix, i), Version: nicOld},
			},
			InstallDuration: *flagInstall,
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	return fl
}

// bareLoop is what a script on bmclib alone does: per BMC, log in with the dell provider, and
// per component upload, poll, power-cycle when asked, poll to completion and read the inventory.
func bareLoop(bmcs []*redfish.BMC) error {
	files := map[string]string{}
	for _, h := range images {
		p := filepath.Join(os.TempDir(), fmt.Sprintf("bench-oob-%s-%d.bin", h.Component, os.Getpid()))
		if err := os.WriteFile(p, image.Make(h, *flagSize, ""), 0o600); err != nil {
			return err
		}
		defer os.Remove(p)
		files[h.Component] = p
	}
	if err := bmcfleet.Each(bmcs, *flagC, func(b *redfish.BMC) error { return bareOne(b, files) }); err != nil {
		return err
	}
	return verifyFleet(bmcs)
}

func bareOne(b *redfish.BMC, files map[string]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	host, port, _ := net.SplitHostPort(b.Addr())
	reg := registrar.NewRegistry()
	drv := dell.New("http://"+host, user, pass, logr.Discard(), dell.WithPort(port))
	reg.Register(dell.ProviderName, dell.ProviderProtocol, dell.Features, nil, drv)
	c := bmclib.NewClient(host, user, pass, bmclib.WithRegistry(reg), bmclib.WithPerProviderTimeout(time.Minute))
	if err := c.Open(ctx); err != nil {
		return fmt.Errorf("%s: open: %w", b.Name(), err)
	}
	defer c.Close(ctx)
	for _, h := range images {
		f, err := os.Open(files[h.Component])
		if err != nil {
			return err
		}
		id, err := c.FirmwareInstallUploadAndInitiate(ctx, h.Component, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s %s: upload: %w", b.Name(), h.Component, err)
		}
		cycled := false
		for done := false; !done; {
			time.Sleep(*flagPoll) // the bare loop is the naive script being compared against
			state, _, err := c.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepInstallStatus, h.Component, id, "")
			if err != nil {
				return fmt.Errorf("%s %s: status: %w", b.Name(), h.Component, err)
			}
			switch state {
			case constants.Complete:
				done = true
			case constants.Failed:
				return fmt.Errorf("%s %s: job failed", b.Name(), h.Component)
			case constants.PowerCycleHost:
				if !cycled {
					if _, err := c.SetPowerState(ctx, "cycle"); err != nil {
						return err
					}
					cycled = true
				}
			}
		}
		if _, err := c.Inventory(ctx); err != nil {
			return err
		}
	}
	return nil
}

func verifyFleet(bmcs []*redfish.BMC) error {
	for _, b := range bmcs {
		if v := b.InstalledVersion("BIOS"); v != biosNew {
			return fmt.Errorf("%s: BIOS %s", b.Name(), v)
		}
		if v := b.InstalledVersion("NIC"); v != nicNew {
			return fmt.Errorf("%s: NIC %s", b.Name(), v)
		}
	}
	return nil
}

// flasherRun flashes the fleet through the SQLite store, the scheduler and the executor.
func flasherRun(dir, imgURL string, bmcs []*redfish.BMC) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	invPath := filepath.Join(dir, "inventory.yaml")
	if err := writeInventory(invPath, imgURL, bmcs); err != nil {
		return err
	}
	// The control plane is built as flasher-server builds it; tasks go straight to its store
	// and scheduler, so the figures are the executor's, not the API's.
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Inventory, cfg.GRPCListen, cfg.HTTPListen = dir, invPath, "127.0.0.1:0", ""
	cfg.Insecure, cfg.MaxActive, cfg.BMCPollInterval, cfg.ShutdownTimeout = true, *flagC, *flagPoll, 0
	cfg.ArtifactDir, cfg.ArtifactMaxBytes = filepath.Join(dir, "cache"), 1<<30
	cfg.ArtifactSchemes, cfg.ArtifactHosts = []string{"http"}, []string{"127.0.0.1"}
	var done sync.WaitGroup
	done.Add(len(bmcs))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, cfg, server.WithLogger(quiet), server.WithoutAudit(),
		server.WithOutOfBandPolicy(func(p *outofband.Policy) { p.Defaults.Verify = 30 * time.Second }),
		server.WrapExecutors(func(m task.Method, x scheduler.Executor) scheduler.Executor {
			if m != task.MethodOutOfBand {
				return x
			}
			return counting{x, &done}
		}))
	if err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	<-srv.Ready()
	st, sched := srv.Store(), srv.Scheduler()
	for i, b := range bmcs {
		var fw []task.Firmware
		for _, h := range images {
			fw = append(fw, task.Firmware{Component: h.Component, Version: h.Version,
				URL: imgURL + "/images/" + strings.ToLower(h.Component) + ".bin", Checksum: checksum(h)})
		}
		t, ev := task.New(task.Task{ID: uuid.NewString(), ServerID: b.Name(), Method: task.MethodOutOfBand,
			Mode: task.ModeFirmware, Firmware: fw, Requester: "bench"}, time.Now())
		stored, _, err := st.CreateTask(ctx, t, ev)
		if err != nil {
			return fmt.Errorf("create task %d: %w", i, err)
		}
		sched.Submit(stored)
	}
	done.Wait()
	// Outcomes are recorded after Execute returns; wait for the scheduler to have recorded them
	// all, then count them from the store.
	for sched.Stats().Active > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	failed, _, err := st.ListTasks(ctx, store.Filter{States: []task.State{task.StateFailed, task.StateCancelled}}, 10, "")
	cancel()
	if serr := <-srvDone; err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d+ task(s) failed, first: %+v", len(failed), failed[0].Failure)
	}
	return verifyFleet(bmcs)
}

// counting tells the benchmark when each task's executor returned.
type counting struct {
	x    scheduler.Executor
	done *sync.WaitGroup
}

func (c counting) Execute(ctx context.Context, t *task.Task, r task.Reporter) error {
	defer c.done.Done()
	return c.x.Execute(ctx, t, r)
}

func writeInventory(path, imgURL string, bmcs []*redfish.BMC) error {
	var fw []file.FirmwareDoc
	for _, h := range images {
		fw = append(fw, file.FirmwareDoc{ID: strings.ToLower(h.Component) + "-" + h.Version, Vendor: h.Vendor,
			Models: []string{h.Model}, Component: h.Component, Version: h.Version, Scheme: "dotted",
			URL: imgURL + "/images/" + strings.ToLower(h.Component) + ".bin", Checksum: checksum(h), Method: "out-of-band"})
	}
	return bmcfleet.WriteInventory(path, vendor, model, user, pass, bmcs, fw)
}

// residentBytes is the process's resident memory, 0 when it cannot be read.
func residentBytes() uint64 {
	b, _ := measure.RSS()
	return uint64(b)
}
