// Command sim benchmarks the Redfish BMC simulator: how much memory an idle simulated BMC
// costs when 2,000 run in one process, and how many status-poll requests per second the
// process serves with 500 concurrent sessions (the path bmclib's FirmwareTaskStatus takes:
// GET TaskService, the Tasks collection, then every task). It prints a markdown table.
package main

import (
	"github.com/flasher-dev/flasher/bench/internal/measure"

	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flasher-dev/flasher/sim/fleet"
	"github.com/flasher-dev/flasher/sim/redfish"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/sim:", err)
		os.Exit(1)
	}
}

type result struct {
	name  string
	value string
}

func run() error {
	n := flag.Int("bmcs", 2000, "BMCs to start")
	sessions := flag.Int("sessions", 500, "concurrent sessions (one per BMC)")
	dur := flag.Duration("duration", 5*time.Second, "how long each polling phase runs")
	plain := flag.Bool("plain-http", false, "serve plain HTTP instead of HTTPS")
	flag.Parse()
	if *sessions > *n {
		return fmt.Errorf("-sessions %d > -bmcs %d", *sessions, *n)
	}
	var res []result
	add := func(name, format string, args ...any) { res = append(res, result{name, fmt.Sprintf(format, args...)}) }

	rssBefore := settledRSS()
	grBefore := runtime.NumGoroutine()
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := fleet.Start(ctx, fleet.Config{N: *n, PlainHTTP: *plain, InstallDuration: time.Hour})
	if err != nil {
		return err
	}
	defer f.Close()
	startTime := time.Since(began)
	rssAfter := settledRSS()
	scheme := "https"
	if *plain {
		scheme = "http"
	}
	add("BMCs started (scheme)", "%d (%s)", *n, scheme)
	add("start time", "%s", startTime.Round(time.Millisecond))
	add("RSS before / after start", "%.1f MiB / %.1f MiB", measure.MiB(rssBefore), measure.MiB(rssAfter))
	add("RSS per idle BMC", "%.1f KiB", float64(rssAfter-rssBefore)/1024/float64(*n))
	add("goroutines per idle BMC", "%.2f", float64(runtime.NumGoroutine()-grBefore)/float64(*n))

	// Every polled BMC has one job in its queue, so a poll is 3 requests.
	bmcs := f.BMCs()[:*sessions]
	for _, b := range bmcs {
		if err := b.SetFault(redfish.OpQueue, redfish.Fault{Kind: redfish.KindLeftover}); err != nil {
			return err
		}
	}

	for _, mode := range []struct {
		name      string
		keepAlive bool
	}{{"keep-alive", true}, {"new connection per request (as gofish)", false}} {
		tr := &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives:   !mode.keepAlive,
			MaxIdleConnsPerHost: 2,
			MaxIdleConns:        2 * *sessions,
		}
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		tokens := make([]string, len(bmcs))
		locs := make([]string, len(bmcs))
		loginStart := time.Now()
		var wg sync.WaitGroup
		var loginErr atomic.Value
		for i, b := range bmcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, loc, err := login(client, scheme+"://"+b.Addr())
				if err != nil {
					loginErr.Store(err)
					return
				}
				tokens[i], locs[i] = tok, loc
			}()
		}
		wg.Wait()
		if err, ok := loginErr.Load().(error); ok {
			return fmt.Errorf("login: %w", err)
		}
		loginTime := time.Since(loginStart)

		var reqs, polls, errs atomic.Int64
		lat := make([][]time.Duration, len(bmcs))
		peak := atomic.Int64{}
		stop := make(chan struct{})
		timer := time.AfterFunc(*dur, func() { close(stop) })
		pollStart := time.Now()
		for i, b := range bmcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := scheme + "://" + b.Addr()
				for {
					select {
					case <-stop:
						return
					default:
					}
					t0 := time.Now()
					n, err := poll(client, base, tokens[i])
					reqs.Add(int64(n))
					if err != nil {
						errs.Add(1)
						continue
					}
					polls.Add(1)
					lat[i] = append(lat[i], time.Since(t0))
				}
			}()
		}
		// Sample RSS while the sessions run.
		sampler := time.NewTicker(500 * time.Millisecond)
	sample:
		for {
			select {
			case <-sampler.C:
				if r := residentBytes(); r > peak.Load() {
					peak.Store(r)
				}
			case <-stop:
				break sample
			}
		}
		sampler.Stop()
		wg.Wait()
		timer.Stop()
		elapsed := time.Since(pollStart)
		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		slices.Sort(all)
		for i, b := range bmcs {
			logout(client, scheme+"://"+b.Addr(), tokens[i], locs[i])
		}
		tr.CloseIdleConnections()
		add(mode.name+": logins", "%d in %s (%.0f/s)", len(bmcs), loginTime.Round(time.Millisecond), float64(len(bmcs))/loginTime.Seconds())
		add(mode.name+": status-poll requests/s", "%.0f", float64(reqs.Load())/elapsed.Seconds())
		add(mode.name+": polls/s (3 requests each)", "%.0f", float64(polls.Load())/elapsed.Seconds())
		add(mode.name+": poll latency p50 / p99", "%s / %s", measure.Quantile(all, 0.5), measure.Quantile(all, 0.99))
		add(mode.name+": failed polls", "%d", errs.Load())
		add(mode.name+": peak RSS with sessions", "%.1f MiB", measure.MiB(peak.Load()))
	}

	fmt.Printf("| measure | value |\n|---|---|\n")
	for _, r := range res {
		fmt.Printf("| %s | %s |\n", r.name, r.value)
	}
	fmt.Printf("\nGOMAXPROCS=%d; client and simulator share the process and its CPUs.\n", runtime.GOMAXPROCS(0))
	return nil
}

func login(c *http.Client, base string) (token, location string, err error) {
	body := bytes.NewBufferString(`{"UserName":"root","Password":"calvin"}`)
	resp, err := c.Post(base+"/redfish/v1/SessionService/Sessions", "application/json", body)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("%s: status %d", base, resp.StatusCode)
	}
	return resp.Header.Get("X-Auth-Token"), resp.Header.Get("Location"), nil
}

func logout(c *http.Client, base, token, location string) {
	req, _ := http.NewRequest(http.MethodDelete, base+location, nil)
	req.Header.Set("X-Auth-Token", token)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
	}
}

// poll does what bmclib's FirmwareTaskStatus does: TaskService, the collection, each member.
func poll(c *http.Client, base, token string) (int, error) {
	get := func(path string, v any) error {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("X-Auth-Token", token)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, resp.Body)
			return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var ts struct {
		Tasks struct {
			ODataID string `json:"@odata.id"`
		}
	}
	if err := get("/redfish/v1/TaskService", &ts); err != nil {
		return 1, err
	}
	var coll struct {
		Members []struct {
			ODataID string `json:"@odata.id"`
		}
	}
	if err := get(ts.Tasks.ODataID, &coll); err != nil {
		return 2, err
	}
	n := 2
	for _, m := range coll.Members {
		var task map[string]any
		n++
		if err := get(m.ODataID, &task); err != nil {
			return n, err
		}
	}
	return n, nil
}

// settledRSS returns VmRSS after the garbage collector returned what it can to the OS.
func settledRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	t := time.NewTimer(200 * time.Millisecond)
	<-t.C
	return residentBytes()
}

// residentBytes is the process's resident memory, 0 when it cannot be read.
func residentBytes() int64 {
	b, _ := measure.RSS()
	return b
}
