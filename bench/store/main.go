// Command store measures the SQLite store's durable CreateTask throughput and latency with many
// concurrent callers directly on the store (no gRPC), and prints a table. Each run uses a fresh
// database file in -dir, which must be on the disk the server would use: a tmpfs makes fsync free
// and the figures meaningless.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flasher-dev/flasher/internal/store/sqlite"
	"github.com/flasher-dev/flasher/internal/task"
)

func main() {
	var (
		dir     = flag.String("dir", "", "directory for the database files (default: a new temporary directory)")
		clients = flag.Int("clients", 64, "concurrent callers")
		tasks   = flag.Int("tasks", 20000, "tasks created per run")
		runs    = flag.Int("runs", 3, "runs, each on a fresh database")
		cpuProf = flag.String("cpuprofile", "", "write a CPU profile of all runs to this file")
	)
	flag.Parse()
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "flasher-store-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "run\tclients\ttasks\tseconds\ttasks/s\tp50 ms\tp99 ms\tmax ms\tcommits\tmean batch\tfallbacks\tCPU µs/task\t\n")
	for r := 1; r <= *runs; r++ {
		res, err := run(filepath.Join(*dir, fmt.Sprintf("run-%d.db", r)), *clients, *tasks)
		if err != nil {
			log.Fatalf("run %d: %v", r, err)
		}
		fmt.Fprintf(w, "%d\t%d\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.1f\t%d\t%.0f\t\n", r, *clients, *tasks,
			res.elapsed.Seconds(), float64(*tasks)/res.elapsed.Seconds(),
			ms(res.p50), ms(res.p99), ms(res.max),
			res.stats.Commits, float64(res.stats.Operations)/float64(max(res.stats.Commits, 1)),
			res.stats.Fallbacks, float64(res.cpu)/float64(time.Microsecond)/float64(*tasks))
	}
	w.Flush()
	fmt.Println("CreateTask on the SQLite store (WAL, synchronous=FULL, group commit), callers in-process.")
	fmt.Println("CPU µs/task is the whole process's user+system time per task (callers included): unlike")
	fmt.Println("tasks/s it hardly moves when other work shares the machine.")
}

type result struct {
	elapsed       time.Duration
	p50, p99, max time.Duration
	stats         sqlite.Stats
	cpu           time.Duration // process user+system time during the run
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func run(path string, clients, total int) (result, error) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		return result{}, err
	}
	defer s.Close()

	now := time.Now()
	latencies := make([]time.Duration, total)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				tk, ev := task.New(task.Task{
					ID:        fmt.Sprintf("bench-%08d", i),
					RequestID: fmt.Sprintf("req-%08d", i),
					ServerID:  fmt.Sprintf("srv-%05d", i%5000),
					Method:    task.MethodOutOfBand,
					Priority:  i % 4,
					Requester: "bench",
					Mode:      task.ModeFirmware,
					Firmware: []task.Firmware{{
						Component: "BMC", Vendor: "dell", Model: "r750", Version: "7.10.30.00",
						URL:      "https://firmware.example/dell/bmc-7.10.30.00.exe",
						Checksum: "sha256:4f2a7c0d8e1b3a5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
					}},
				}, now)
				t0 := time.Now()
				_, _, err := s.CreateTask(ctx, tk, ev)
				latencies[i] = time.Since(t0)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	if firstErr != nil {
		return result{}, firstErr
	}
	slices.Sort(latencies)
	return result{
		elapsed: elapsed,
		p50:     latencies[len(latencies)/2],
		p99:     latencies[len(latencies)*99/100],
		max:     latencies[len(latencies)-1],
		stats:   s.Stats(),
		cpu:     cpu,
	}, nil
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
