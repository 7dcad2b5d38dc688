// Command store measures the SQLite store's durable CreateTask (and, with -updates, UpdateTask)
// throughput and latency with many concurrent callers directly on the store (no gRPC), and prints
// a table. Each run uses a fresh
// database file in -dir, which must be on the disk the server would use: a tmpfs makes fsync free
// and the figures meaningless.
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
		updates = flag.Bool("updates", false, "after creating, also measure UpdateTask: every task started once")
		cpuProf = flag.String("cpuprofile", "", "write a CPU profile of all runs to this file")
	)
	flag.Parse()
	stopProfile, err := measure.StartCPUProfile(*cpuProf)
	if err != nil {
		log.Fatal(err)
	}
	defer stopProfile()
	if *dir == "" {
		d, err := os.MkdirTemp("", "flasher-store-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "run\top\tclients\tcalls\tseconds\tcalls/s\tp50 ms\tp99 ms\tmax ms\tcommits\tmean batch\tfallbacks\tCPU µs/call\t\n")
	for r := 1; r <= *runs; r++ {
		res, err := run(filepath.Join(*dir, fmt.Sprintf("run-%d.db", r)), *clients, *tasks, *updates)
		if err != nil {
			log.Fatalf("run %d: %v", r, err)
		}
		for _, p := range res {
			fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.1f\t%d\t%.0f\t\n", r, p.op, *clients, *tasks,
				p.elapsed.Seconds(), float64(*tasks)/p.elapsed.Seconds(),
				ms(p.p50), ms(p.p99), ms(p.max),
				p.stats.Commits, float64(p.stats.Operations)/float64(max(p.stats.Commits, 1)),
				p.stats.Fallbacks, float64(p.cpu)/float64(time.Microsecond)/float64(*tasks))
		}
	}
	w.Flush()
	fmt.Println("Durable calls on the SQLite store (WAL, synchronous=FULL, group commit), callers in-process:")
	fmt.Println("CreateTask of new tasks, then (-updates) UpdateTask starting each of them once.")
	fmt.Println("CPU µs/call is the whole process's user+system time per call (callers included): unlike")
	fmt.Println("calls/s it hardly moves when other work shares the machine.")
}

// phase is the measurement of one kind of call in one run.
type phase struct {
	op            string
	elapsed       time.Duration
	p50, p99, max time.Duration
	stats         sqlite.Stats  // the writer's work during the phase
	cpu           time.Duration // process user+system time during the phase
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timeCalls calls call(i) for i in [0, total) from clients goroutines and times each call.
func timeCalls(op string, s *sqlite.Store, clients, total int, call func(i int) error) (phase, error) {
	latencies := make([]time.Duration, total)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	stats0, cpu0 := s.Stats(), cpuTime()
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
				t0 := time.Now()
				err := call(i)
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
		return phase{}, fmt.Errorf("%s: %w", op, firstErr)
	}
	stats := s.Stats()
	slices.Sort(latencies)
	return phase{
		op:      op,
		elapsed: elapsed,
		p50:     latencies[len(latencies)/2],
		p99:     latencies[len(latencies)*99/100],
		max:     latencies[len(latencies)-1],
		stats: sqlite.Stats{
			Commits:    stats.Commits - stats0.Commits,
			Operations: stats.Operations - stats0.Operations,
			Fallbacks:  stats.Fallbacks - stats0.Fallbacks,
		},
		cpu: cpu,
	}, nil
}

func run(path string, clients, total int, updates bool) ([]phase, error) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		return nil, err
	}
	defer s.Close()

	now := time.Now()
	stored := make([]*task.Task, total)
	create, err := timeCalls("CreateTask", s, clients, total, func(i int) error {
		// Built inside the call (microseconds, next to milliseconds of commit) so that the
		// callers do the work a server handler would before calling the store.
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
		var err error
		stored[i], _, err = s.CreateTask(ctx, tk, ev)
		return err
	})
	if err != nil || !updates {
		return []phase{create}, err
	}
	update, err := timeCalls("UpdateTask", s, clients, total, func(i int) error {
		tk := stored[i]
		ev, err := tk.Start(fmt.Sprintf("worker-%d", i%clients), now)
		if err != nil {
			return err
		}
		_, err = s.UpdateTask(ctx, tk, tk.Revision, ev)
		return err
	})
	return []phase{create, update}, err
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
