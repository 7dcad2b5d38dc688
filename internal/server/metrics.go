package server

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flasher-dev/flasher/internal/artifact"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/store"
)

// metrics are the series an operator alerts on, registered here and nowhere else. Domain
// packages stay free of Prometheus: tasks and steps are read from the watch hub (taskMetrics),
// the artifact cache and the in-band service are read at scrape time, and the out-of-band
// executor and the fleetdb write-back report through small hooks their packages own.
type metrics struct {
	tasks     *taskMetrics
	bmcErrors *prometheus.CounterVec
	writeBack prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tasks: newTaskMetrics(),
		bmcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flasher_bmc_call_errors_total",
			Help: "BMC calls that failed, by the server's vendor and the kind of failure (unreachable, timeout, auth, http_status, tls, other).",
		}, []string{"vendor", "kind"}),
		writeBack: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flasher_fleetdb_writeback_failures_total",
			Help: "Verified versions that could not be recorded in fleetdb (the hardware is flashed; the inventory is behind).",
		}),
	}
	reg.MustRegister(m.bmcErrors, m.writeBack)
	m.tasks.register(reg)
	return m
}

// BMCCallFailed implements outofband.CallObserver.
func (m *metrics) BMCCallFailed(vendor, _ string, kind string) {
	m.bmcErrors.WithLabelValues(vendorLabel(vendor), kind).Inc()
}

// recorder counts the write-backs to the inventory source that failed.
func (m *metrics) recorder(r inventory.Recorder) inventory.Recorder {
	if r == nil {
		return nil
	}
	return countingRecorder{Recorder: r, failed: m.writeBack}
}

type countingRecorder struct {
	inventory.Recorder
	failed prometheus.Counter
}

func (c countingRecorder) SetInstalledVersion(ctx context.Context, serverID, slug, serial, version string) error {
	err := c.Recorder.SetInstalledVersion(ctx, serverID, slug, serial, version)
	if err != nil && ctx.Err() == nil {
		c.failed.Inc()
	}
	return err
}

// registerCache exports the artifact cache's own counters, read at scrape time.
func registerCache(reg prometheus.Registerer, c *artifact.Cache) {
	for _, m := range []struct {
		name, help string
		gauge      bool
		value      func(artifact.Stats) int64
	}{
		{"flasher_artifact_cache_hits_total", "Image fetches served from the artifact cache without a download.", false, func(s artifact.Stats) int64 { return s.Hits }},
		{"flasher_artifact_cache_misses_total", "Image fetches that had to wait for a download.", false, func(s artifact.Stats) int64 { return s.Misses }},
		{"flasher_artifact_downloads_total", "Image downloads started by the artifact cache.", false, func(s artifact.Stats) int64 { return s.Downloads }},
		{"flasher_artifact_download_bytes_total", "Bytes of images downloaded.", false, func(s artifact.Stats) int64 { return s.BytesDownloaded }},
		{"flasher_artifact_checksum_mismatches_total", "Downloaded or cached images whose checksum did not match (deleted, never uploaded).", false, func(s artifact.Stats) int64 { return s.Mismatches }},
		{"flasher_artifact_cache_bytes", "Bytes held by the artifact cache, counted against -artifact-max-bytes.", true, func(s artifact.Stats) int64 { return s.Bytes }},
	} {
		read := func() float64 { return float64(m.value(c.Stats())) }
		if m.gauge {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: m.name, Help: m.help}, read))
		} else {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, read))
		}
	}
}

// registerAgents exports how many host agents hold a stream to this server.
func registerAgents(reg prometheus.Registerer, count func() int) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flasher_agents_connected",
		Help: "Host agents connected to this server."}, func() float64 { return float64(count()) }))
}

// observationAges exports how long ago Flasher last read each server's firmware from its BMC or
// agent. Reading every current observation is not free at fleet scale, so a scrape reuses the
// previous read when it is younger than refresh.
type observationAges struct {
	obs      store.Observations
	declared inventory.Source
	refresh  time.Duration
	now      func() time.Time

	ages       *prometheus.Desc
	unobserved *prometheus.Desc

	mu       sync.Mutex
	readAt   time.Time
	last     []time.Time // newest observation of each observed server
	declares int
}

var ageBuckets = []float64{60, 300, 900, 3600, 6 * 3600, 24 * 3600, 7 * 24 * 3600, 30 * 24 * 3600}

func newObservationAges(obs store.Observations, declared inventory.Source) *observationAges {
	return &observationAges{
		obs: obs, declared: declared, refresh: 15 * time.Second, now: time.Now,
		ages: prometheus.NewDesc("flasher_observation_age_seconds",
			"Per server, how long ago Flasher last read its firmware versions (BMC or agent).", nil, nil),
		unobserved: prometheus.NewDesc("flasher_servers_unobserved",
			"Declared servers whose firmware Flasher has never read: only the inventory's versions are known.", nil, nil),
	}
}

func (o *observationAges) Describe(ch chan<- *prometheus.Desc) {
	ch <- o.ages
	ch <- o.unobserved
}

func (o *observationAges) Collect(ch chan<- prometheus.Metric) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	if now.Sub(o.readAt) >= o.refresh {
		if err := o.read(now); err != nil {
			ch <- prometheus.NewInvalidMetric(o.ages, err)
			return
		}
	}
	buckets := make(map[float64]uint64, len(ageBuckets))
	var sum float64
	for _, at := range o.last {
		age := now.Sub(at).Seconds()
		sum += age
		for _, b := range ageBuckets {
			if age <= b {
				buckets[b]++
			}
		}
	}
	ch <- prometheus.MustNewConstHistogram(o.ages, uint64(len(o.last)), sum, buckets)
	ch <- prometheus.MustNewConstMetric(o.unobserved, prometheus.GaugeValue, float64(max(o.declares-len(o.last), 0)))
}

func (o *observationAges) read(now time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := o.obs.CurrentObservations(ctx, nil)
	if err != nil {
		return err
	}
	servers, err := o.declared.Servers(ctx)
	if err != nil {
		return err
	}
	newest := map[string]time.Time{}
	for _, ob := range obs {
		if ob.ObservedAt.After(newest[ob.ServerID]) {
			newest[ob.ServerID] = ob.ObservedAt
		}
	}
	o.last = o.last[:0]
	for _, at := range newest {
		o.last = append(o.last, at)
	}
	o.declares, o.readAt = len(servers), now
	return nil
}

// vendorLabel keeps the label readable when the inventory names no vendor.
func vendorLabel(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}
