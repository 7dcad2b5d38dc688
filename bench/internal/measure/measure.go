// Package measure holds what the benchmark programs in bench/ share: the process's resident
// memory and CPU time, quantiles and medians of samples, a closed-loop load generator and CPU
// profiles. It is for benchmarks only.
package measure

import (
	"cmp"
	"context"
	"errors"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RSS returns the resident memory of this process in bytes (VmRSS of /proc/self/status).
func RSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// MiB converts bytes to mebibytes.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of samples by the nearest-rank method, sorting a
// copy; 0 for no samples.
func Quantile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

// Median returns the median of xs (the upper one for an even count); the zero value for none.
func Median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// Ms formats a duration in milliseconds with two decimals.
func Ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

// StartCPUProfile writes a CPU profile to path until the returned function is called; an
// empty path profiles nothing.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// Load is the outcome of a closed-loop load run.
type Load struct {
	Calls    int
	Rate     float64 // completed calls per second
	P50, P99 time.Duration
	// CPU is the process's CPU time per completed call (client and server when both run in
	// the process): steadier than throughput on a machine shared with other work.
	CPU time.Duration
}

// RunLoad calls fn from n goroutines, each in a loop, for d. A call that fails before the run's
// end stops the run and is returned: a refused call would flatter the figures. fn sees the run's
// context; calls cut short by its end are not counted.
func RunLoad(n int, d time.Duration, fn func(ctx context.Context, worker int) error) (Load, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	lat := make([][]time.Duration, n)
	begin, cpu0 := time.Now(), CPUTime()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ctx.Err() == nil {
				t := time.Now()
				if err := fn(ctx, i); err != nil {
					// gRPC may report the run's deadline a moment before ctx does.
					if ctx.Err() == nil && status.Code(err) != codes.DeadlineExceeded {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		}(i)
	}
	wg.Wait()
	elapsed, cpu := time.Since(begin), CPUTime()-cpu0
	if firstErr != nil {
		return Load{}, firstErr
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return Load{}, errors.New("no call completed")
	}
	return Load{Calls: len(all), Rate: float64(len(all)) / elapsed.Seconds(), P50: Quantile(all, 0.5), P99: Quantile(all, 0.99),
		CPU: cpu / time.Duration(len(all))}, nil
}

// CPUTime is the CPU time (user + system) this process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
