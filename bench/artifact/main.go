// Command artifact benchmarks the firmware artifact cache: a large image served from a local
// HTTP server on loopback is fetched by many concurrent tasks at once. It reports how many
// downloads happened (must be 1), wall time, throughput and the process's RSS growth, which must
// stay independent of the image size.
package main

import (
	"github.com/flasher-dev/flasher/bench/internal/measure"

	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flasher-dev/flasher/internal/artifact"
)

func main() {
	size := flag.Int64("size", 1<<30, "image size in bytes")
	tasks := flag.Int("tasks", 100, "concurrent Fetch calls")
	runs := flag.Int("runs", 3, "runs; the last row is the median")
	flag.Parse()
	if err := run(*size, *tasks, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench/artifact:", err)
		os.Exit(1)
	}
}

// image is a deterministic pseudo-random image generated on the fly: block i is a fixed random
// block with i written into its first 8 bytes, so no two blocks are equal and nothing but one
// block is ever held in memory.
type image struct {
	size int64
	base []byte
}

const blockSize = 1 << 20

func newImage(size int64) *image {
	r := rand.New(rand.NewPCG(1, 2))
	base := make([]byte, blockSize)
	for i := 0; i < blockSize; i += 8 {
		binary.LittleEndian.PutUint64(base[i:], r.Uint64())
	}
	return &image{size: size, base: base}
}

// ReadAt fills p with the image bytes at off.
func (im *image) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) && off < im.size {
		block, in := off/blockSize, off%blockSize
		var hdr [8]byte
		binary.LittleEndian.PutUint64(hdr[:], uint64(block))
		chunk := min(int64(len(p)-n), blockSize-in, im.size-off)
		c := copy(p[n:n+int(chunk)], im.base[in:in+chunk])
		if in < 8 {
			copy(p[n:n+min(c, int(8-in))], hdr[in:])
		}
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (im *image) reader() io.ReadSeeker { return io.NewSectionReader(im, 0, im.size) }

// sum hashes the image by streaming it once.
func (im *image) sum() (string, error) {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, im.reader(), make([]byte, blockSize)); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

type result struct {
	downloads, requests      int64
	wall                     time.Duration
	mbps                     float64
	rssBefore, rssPeakGrowth int64
}

func run(size int64, tasks, runs int) error {
	im := newImage(size)
	t0 := time.Now()
	sum, err := im.sum()
	if err != nil {
		return err
	}
	fmt.Printf("image: %d bytes, %s (hashed in %s)\n\n", size, sum, time.Since(t0).Round(time.Millisecond))

	var requests atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.ServeContent(w, r, "", time.Time{}, im.reader())
	})}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/firmware.bin"

	var results []result
	for i := range runs {
		requests.Store(0)
		res, err := once(url, sum, size, tasks, &requests)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, res)
	}

	fmt.Printf("| run | tasks | downloads | HTTP requests | wall (s) | throughput (MB/s) | RSS before (MiB) | RSS growth, peak (MiB) |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|\n")
	row := func(name string, r result) {
		fmt.Printf("| %s | %d | %d | %d | %.2f | %.0f | %.1f | %.1f |\n", name, tasks, r.downloads, r.requests,
			r.wall.Seconds(), r.mbps, measure.MiB(r.rssBefore), measure.MiB(r.rssPeakGrowth))
	}
	for i, r := range results {
		row(strconv.Itoa(i+1), r)
	}
	row("median", median(results))
	return nil
}

// once runs one measurement in a fresh cache directory, removed afterwards.
func once(url, sum string, size int64, tasks int, requests *atomic.Int64) (result, error) {
	dir, err := os.MkdirTemp("", "flasher-bench-artifact-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	c, err := artifact.New(artifact.Config{
		Dir:      dir,
		MaxBytes: size + size/2,
		Allow:    artifact.AllowList{Schemes: []string{"http"}, Hosts: []string{"127.0.0.1"}},
	})
	if err != nil {
		return result{}, err
	}
	defer c.Close()

	runtime.GC()
	before, err := measure.RSS()
	if err != nil {
		return result{}, err
	}
	// Sample RSS while the tasks run; the peak is what matters.
	var peak atomic.Int64
	peak.Store(before)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v, err := measure.RSS(); err == nil && v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, tasks)
	for range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := c.Fetch(context.Background(), url, sum)
			if err != nil {
				errs <- err
				return
			}
			defer a.Release()
			if a.Size() != size || a.Checksum() != sum {
				errs <- fmt.Errorf("got %d bytes %s", a.Size(), a.Checksum())
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(stop)
	<-sampled
	if v, err := measure.RSS(); err == nil && v > peak.Load() {
		peak.Store(v)
	}
	close(errs)
	if err := errors.Join(slices.Collect(chanSeq(errs))...); err != nil {
		return result{}, err
	}
	st := c.Stats()
	return result{
		downloads:     st.Downloads,
		requests:      requests.Load(),
		wall:          wall,
		mbps:          float64(size) / 1e6 / wall.Seconds(),
		rssBefore:     before,
		rssPeakGrowth: peak.Load() - before,
	}, nil
}

func chanSeq(ch <-chan error) func(func(error) bool) {
	return func(yield func(error) bool) {
		for e := range ch {
			if !yield(e) {
				return
			}
		}
	}
}

// median takes each column's median independently.
func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		downloads:     int64(pick(func(r result) float64 { return float64(r.downloads) })),
		requests:      int64(pick(func(r result) float64 { return float64(r.requests) })),
		wall:          time.Duration(pick(func(r result) float64 { return float64(r.wall) })),
		mbps:          pick(func(r result) float64 { return r.mbps }),
		rssBefore:     int64(pick(func(r result) float64 { return float64(r.rssBefore) })),
		rssPeakGrowth: int64(pick(func(r result) float64 { return float64(r.rssPeakGrowth) })),
	}
}
