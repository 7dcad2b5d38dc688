// Command api measures the task API on the embedded SQLite store: CreateTask throughput and
// latency with many concurrent clients, side by side with a no-op unary call (the health check)
// through the same server and interceptor chain — the ceiling — and WatchTasks fan-out: the
// delay from a task change to its arrival at every one of many watchers. It prints a table.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/flasher-dev/flasher/internal/server"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flasher-dev/flasher/bench/internal/measure"
	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/testenv"
)

func main() {
	clients := flag.Int("clients", 64, "concurrent clients")
	conns := flag.Int("conns", 4, "client connections shared by the clients")
	dur := flag.Duration("duration", 4*time.Second, "length of each throughput run")
	runs := flag.Int("runs", 3, "runs of each measurement; the table shows each and the median")
	watchers := flag.Int("watchers", 1000, "watch streams for the fan-out measurement")
	changes := flag.Int("changes", 40, "task changes measured in the fan-out run")
	dir := flag.String("dir", "var/bench", "directory for the databases (on a real disk: fsync must cost what it costs)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	skipFanout := flag.Bool("skip-fanout", false, "measure only CreateTask and the ceiling")
	flag.Parse()
	stopProfile, err := measure.StartCPUProfile(*cpuprofile)
	if err != nil {
		fail(err)
	}
	defer stopProfile()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fail(err)
	}

	type row struct{ name, rate, p50, p99, note string }
	var rows []row
	var createRates, noopRates []float64
	for r := 0; r < *runs; r++ {
		env := start(*dir, r)
		cc := dial(env.Addr, *conns)
		noop := mustLoad(*clients, *dur, func(ctx context.Context, i int) error {
			_, err := healthpb.NewHealthClient(cc[i%len(cc)]).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
		create := mustLoad(*clients, *dur, func(ctx context.Context, i int) error {
			_, err := flasherv1.NewTaskServiceClient(cc[i%len(cc)]).CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec(fmt.Sprintf("srv-%d", i))})
			return err
		})
		for _, c := range cc {
			c.Close()
		}
		env.Stop()
		noopRates = append(noopRates, noop.Rate)
		createRates = append(createRates, create.Rate)
		rows = append(rows,
			row{fmt.Sprintf("no-op unary (ceiling), run %d", r+1), f0(noop.Rate), measure.Ms(noop.P50), measure.Ms(noop.P99), ""},
			row{fmt.Sprintf("CreateTask durable, run %d", r+1), f0(create.Rate), measure.Ms(create.P50), measure.Ms(create.P99), fmt.Sprintf("%.0f%% of ceiling", 100*create.Rate/noop.Rate)})
	}
	mc, mn := measure.Median(createRates), measure.Median(noopRates)
	rows = append(rows, row{"**median CreateTask**", f0(mc), "", "", fmt.Sprintf("%.0f%% of median ceiling %.0f/s", 100*mc/mn, mn)})

	var fanP50, fanP99, fanMax []float64
	for r := 0; r < *runs && !*skipFanout; r++ {
		p50, p99, worst := fanout(start(*dir, 100+r), *watchers, *changes)
		fanP50, fanP99, fanMax = append(fanP50, p50), append(fanP99, p99), append(fanMax, worst)
		rows = append(rows, row{fmt.Sprintf("watch fan-out %d watchers, run %d", *watchers, r+1), "", measure.Ms(time.Duration(p50)), measure.Ms(time.Duration(p99)), "max " + measure.Ms(time.Duration(worst))})
	}
	if !*skipFanout {
		rows = append(rows, row{"**median watch fan-out**", "", measure.Ms(time.Duration(measure.Median(fanP50))), measure.Ms(time.Duration(measure.Median(fanP99))), "max " + measure.Ms(time.Duration(measure.Median(fanMax)))})
	}

	fmt.Printf("\n%d clients over %d connections, %s per run, SQLite (WAL, synchronous=FULL) in %s\n\n", *clients, *conns, *dur, *dir)
	fmt.Println("| measurement | per second | p50 | p99 | note |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s | %s |\n", r.name, r.rate, r.p50, r.p99, r.note)
	}
	fmt.Println("\nTargets: CreateTask ≥ 2,000/s and ≥ 40% of the no-op ceiling; watch fan-out p99 ≤ 50 ms.")
}

func start(dir string, n int) *testenv.Env {
	path := filepath.Join(dir, fmt.Sprintf("api-%d-%d.db", os.Getpid(), n))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	// The per-identity CreateTask rate limit is lifted: the benchmark measures the API and the
	// store, not the limiter (which answers ResourceExhausted past -create-rate).
	unlimited := func(c *server.Config) { c.CreateRate, c.CreateBurst = 1e9, 1e9 }
	env, err := testenv.Run(testenv.Config{DBPath: path, Heartbeat: time.Hour, WatchBuffer: 4096, Configure: unlimited})
	if err != nil {
		fail(err)
	}
	return env
}

func dial(addr string, n int) []*grpc.ClientConn {
	var out []*grpc.ClientConn
	for i := 0; i < n; i++ {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fail(err)
		}
		out = append(out, c)
	}
	return out
}

func spec(server string) *flasherv1.TaskSpec {
	return &flasherv1.TaskSpec{
		ServerId: server, Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: 1,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{
			{Component: "BIOS", Version: "2.19.1"}, {Component: "BMC", Version: "7.00.00.171"},
		}}},
	}
}

// fanout opens n watchers, then creates tasks one by one and measures, for every watcher, the
// time from just before CreateTask to the watcher receiving the change.
func fanout(env *testenv.Env, n, changes int) (p50, p99, worst float64) {
	defer env.Stop()
	cc := dial(env.Addr, 8)
	defer func() {
		for _, c := range cc {
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	perChange := map[string]time.Duration{}
	var ready, got sync.WaitGroup
	ready.Add(n)
	got.Add(n * changes)
	for i := 0; i < n; i++ {
		stream, err := flasherv1.NewTaskServiceClient(cc[i%len(cc)]).WatchTasks(ctx, &flasherv1.WatchTasksRequest{})
		if err != nil {
			fail(err)
		}
		go func() {
			synced := false
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				now := time.Now()
				switch m.Type {
				case flasherv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED:
					if !synced {
						synced = true
						ready.Done()
					}
				case flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE:
					mu.Lock()
					t0, ok := sent[m.Task.ServerId]
					if ok {
						d := now.Sub(t0)
						lat = append(lat, d)
						if d > perChange[m.Task.ServerId] {
							perChange[m.Task.ServerId] = d
						}
					}
					mu.Unlock()
					if ok {
						got.Done()
					}
				}
			}
		}()
	}
	ready.Wait()
	client := flasherv1.NewTaskServiceClient(cc[0])
	for i := 0; i < changes; i++ {
		server := fmt.Sprintf("fan-%d", i)
		mu.Lock()
		sent[server] = time.Now()
		mu.Unlock()
		if _, err := client.CreateTask(ctx, &flasherv1.CreateTaskRequest{Task: spec(server)}); err != nil {
			fail(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitDone := make(chan struct{})
	go func() { got.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "warning: not every watcher received every change")
	}
	mu.Lock()
	defer mu.Unlock()
	if os.Getenv("BENCH_VERBOSE") != "" {
		for i := 0; i < changes; i++ {
			fmt.Fprintf(os.Stderr, "change %d: slowest watcher %s\n", i, perChange[fmt.Sprintf("fan-%d", i)])
		}
	}
	return float64(measure.Quantile(lat, 0.5)), float64(measure.Quantile(lat, 0.99)), float64(measure.Quantile(lat, 1))
}

// mustLoad runs a closed-loop load and stops the program when a call fails.
func mustLoad(n int, d time.Duration, fn func(context.Context, int) error) measure.Load {
	l, err := measure.RunLoad(n, d, fn)
	if err != nil {
		fail(err)
	}
	return l
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/api:", err)
	os.Exit(1)
}
