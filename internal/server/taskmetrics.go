package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/internal/watch"
)

// taskMetrics follows the store's change log through the watch hub and keeps the task series:
// how many tasks are in each state, the queue and the running flashes, failures by code, and
// how long each install step took. It sees every replica's tasks (the change log is shared), so
// with PostgreSQL every replica exports the same task counts; step durations are observed by
// every replica too. Alert on max() across replicas, not sum().
type taskMetrics struct {
	tasks    *prometheus.GaugeVec
	queued   prometheus.Gauge
	active   *prometheus.GaugeVec
	failures *prometheus.CounterVec
	steps    *prometheus.HistogramVec

	mu      sync.Mutex
	nQueued int
	nActive map[string]int       // by method
	open    map[string]*openTask // tasks not yet final, by id
	settled map[string]int64     // final tasks listed at start with a revision the log still replays
	vendors map[string]string    // server id → vendor
	// vendorOf looks a server's vendor up; nil when the server has no inventory.
	vendorOf func(ctx context.Context, serverID string) (string, error)
}

type openTask struct {
	rev    int64
	labels [4]string // state, method, vendor, code
	steps  map[string]stepAt
}

// stepAt is where one component instance's install is, and since when.
type stepAt struct {
	step  string
	state task.StepState
	since time.Time
}

func newTaskMetrics() *taskMetrics {
	return &taskMetrics{
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flasher_tasks",
			Help: "Tasks in the store by state, method, server vendor and failure code (code only for FAILED)."},
			[]string{"state", "method", "vendor", "code"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flasher_queue_depth",
			Help: "Tasks QUEUED, waiting for their turn."}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flasher_active_tasks",
			Help: "Tasks ACTIVE (flashing), by method."}, []string{"method"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flasher_task_failures_total",
			Help: "Tasks that ended FAILED since this server started, by method, server vendor and failure code."},
			[]string{"method", "vendor", "code"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flasher_step_duration_seconds",
			Help:    "How long each install step of a component took (download, upload, install-status, verify, ...), by server vendor.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}},
			[]string{"vendor", "component", "step"}),
		open: map[string]*openTask{}, settled: map[string]int64{}, vendors: map[string]string{}, nActive: map[string]int{},
	}
}

func (m *taskMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.tasks, m.queued, m.active, m.failures, m.steps)
	for _, method := range []task.Method{task.MethodOutOfBand, task.MethodInBand} {
		m.active.WithLabelValues(string(method))
	}
}

// useInventory names servers' vendors from src, reading the whole list once so that a start
// with many tasks does not look servers up one by one.
func (m *taskMetrics) useInventory(ctx context.Context, src inventory.Source) {
	if servers, err := src.Servers(ctx); err == nil {
		for _, s := range servers {
			m.vendors[s.ID] = s.Vendor
		}
	}
	m.vendorOf = func(ctx context.Context, id string) (string, error) {
		s, err := src.Server(ctx, id)
		if err != nil {
			return "", err
		}
		return s.Vendor, nil
	}
}

// Run counts the stored tasks, then follows every change until ctx ends. A watcher dropped as
// too slow resumes where it stopped; a change log compacted past it starts the count again.
func (m *taskMetrics) Run(ctx context.Context, st store.Store, hub *watch.Hub) error {
	select {
	case <-hub.Ready():
	case <-ctx.Done():
		return nil
	}
	for ctx.Err() == nil {
		rev, err := m.load(ctx, st)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = m.follow(ctx, hub, rev)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, store.ErrCompacted) {
			return err
		}
	}
	return nil
}

// load resets the counts to the stored tasks and returns the revision to follow from. The
// revision is read before the list, so every change the list may miss is replayed; changes the
// list already holds are skipped by revision.
func (m *taskMetrics) load(ctx context.Context, st store.Store) (int64, error) {
	rev, err := st.Revision(ctx)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tasks.Reset()
	m.open, m.settled = map[string]*openTask{}, map[string]int64{}
	m.nQueued, m.nActive = 0, map[string]int{}
	token := ""
	for {
		page, next, err := st.ListTasks(ctx, store.Filter{}, 1000, token)
		if err != nil {
			return 0, err
		}
		for _, t := range page {
			m.applyLocked(ctx, t, false)
		}
		if token = next; token == "" {
			break
		}
	}
	m.publishLocked()
	return rev, nil
}

func (m *taskMetrics) follow(ctx context.Context, hub *watch.Hub, after int64) error {
	for {
		sub, err := hub.Subscribe(ctx, after)
		if err != nil {
			return err
		}
		for done := false; !done; {
			select {
			case <-ctx.Done():
				sub.Close()
				return nil
			case c := <-sub.C():
				m.Apply(ctx, c.Task)
				after = c.Revision
			case <-sub.Done():
				// Take what was delivered before the end, then resume or give up.
				for len(sub.C()) > 0 {
					c := <-sub.C()
					m.Apply(ctx, c.Task)
					after = c.Revision
				}
				if err := sub.Err(); err != nil && !errors.Is(err, watch.ErrSlowWatcher) {
					return err
				}
				done = true
			}
		}
	}
}

// Apply counts one task as it is after a change.
func (m *taskMetrics) Apply(ctx context.Context, t *task.Task) {
	if t == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applyLocked(ctx, t, true)
	m.publishLocked()
}

func (m *taskMetrics) applyLocked(ctx context.Context, t *task.Task, live bool) {
	if rev, ok := m.settled[t.ID]; ok {
		if t.Revision <= rev {
			return // the start's list already counted it as final
		}
		delete(m.settled, t.ID)
	}
	prev := m.open[t.ID]
	if prev != nil && t.Revision <= prev.rev {
		return
	}
	vendor := m.vendorLocked(ctx, t.ServerID)
	code := ""
	if t.State == task.StateFailed && t.Failure != nil {
		code = string(t.Failure.Code)
	}
	labels := [4]string{string(t.State), string(t.Method), vendor, code}
	if prev != nil {
		m.count(prev.labels, -1)
	}
	m.count(labels, 1)
	if live {
		m.observeSteps(prev, t, vendor)
		if code != "" && (prev == nil || prev.labels[0] != string(task.StateFailed)) {
			m.failures.WithLabelValues(string(t.Method), vendor, code).Inc()
		}
	}
	if t.State.Terminal() {
		delete(m.open, t.ID)
		if !live {
			m.settled[t.ID] = t.Revision
		}
		return
	}
	o := prev
	if o == nil {
		o = &openTask{steps: map[string]stepAt{}}
		m.open[t.ID] = o
	}
	o.rev, o.labels = t.Revision, labels
	for _, p := range t.Progress {
		k := p.Component + "\x00" + p.Serial
		if cur, ok := o.steps[k]; !ok || cur.step != p.Step || cur.state != p.State {
			since := p.UpdatedAt
			if ok && cur.step == p.Step {
				since = cur.since // the same step moved on (a retry, a percentage): it began earlier
			}
			o.steps[k] = stepAt{step: p.Step, state: p.State, since: since}
		}
	}
}

// observeSteps records the steps that ended with this change: a component's row that was
// RUNNING a step and now runs another one or is finished.
func (m *taskMetrics) observeSteps(prev *openTask, t *task.Task, vendor string) {
	if prev == nil {
		return
	}
	for _, p := range t.Progress {
		cur, ok := prev.steps[p.Component+"\x00"+p.Serial]
		if !ok || cur.state != task.StepRunning || cur.step == "" {
			continue
		}
		if p.Step == cur.step && p.State == task.StepRunning {
			continue
		}
		end := p.UpdatedAt
		if end.IsZero() || end.Before(cur.since) {
			continue
		}
		m.steps.WithLabelValues(vendor, p.Component, cur.step).Observe(end.Sub(cur.since).Seconds())
	}
}

func (m *taskMetrics) vendorLocked(ctx context.Context, serverID string) string {
	if v, ok := m.vendors[serverID]; ok {
		return vendorLabel(v)
	}
	v := ""
	if m.vendorOf != nil {
		// A server the inventory no longer knows keeps "unknown"; remember either answer, so a
		// busy change log does not ask the inventory again for each change.
		v, _ = m.vendorOf(ctx, serverID)
	}
	m.vendors[serverID] = strings.TrimSpace(v)
	return vendorLabel(v)
}

// count adds delta tasks with labels to the series.
func (m *taskMetrics) count(labels [4]string, delta int) {
	m.tasks.WithLabelValues(labels[:]...).Add(float64(delta))
	switch task.State(labels[0]) {
	case task.StateQueued:
		m.nQueued += delta
	case task.StateActive:
		m.nActive[labels[1]] += delta
	}
}

// publishLocked sets the queue and active gauges.
func (m *taskMetrics) publishLocked() {
	m.queued.Set(float64(m.nQueued))
	for _, method := range []task.Method{task.MethodOutOfBand, task.MethodInBand} {
		m.active.WithLabelValues(string(method)).Set(float64(m.nActive[string(method)]))
	}
}
