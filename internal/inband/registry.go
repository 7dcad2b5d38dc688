package inband

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// AgentInfo describes one connected agent, for listings (flasherctl agents).
type AgentInfo struct {
	ServerID     string
	AgentVersion string
	Hostname     string
	Vendor       string
	Model        string
	Serial       string
	Components   int
	ConnectedAt  time.Time
	LastSeen     time.Time
	// Tasks are the task ids assigned on this stream.
	Tasks []string
}

// session is one agent stream.
type session struct {
	serverID  string
	version   string
	host      HostFacts
	comps     []inventory.Component
	connected time.Time
	lastSeen  atomic.Int64 // unix nanos
	done      chan struct{}

	sendMu sync.Mutex
	stream Stream

	mu       sync.Mutex
	assigned map[string]bool
}

func (ss *session) assignTask(a Assignment) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	return ss.stream.Assign(a)
}

func (ss *session) cancelTask(taskID string) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	return ss.stream.Cancel(taskID)
}

func (ss *session) assign(taskID string) {
	ss.mu.Lock()
	ss.assigned[taskID] = true
	ss.mu.Unlock()
}

func (ss *session) unassign(taskID string) {
	ss.mu.Lock()
	delete(ss.assigned, taskID)
	ss.mu.Unlock()
}

// owns reports whether taskID was assigned on this stream: the only tasks its agent may report on.
func (ss *session) owns(taskID string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.assigned[taskID]
}

func (ss *session) ended() bool {
	select {
	case <-ss.done:
		return true
	default:
		return false
	}
}

// slot is one server's place in the registry: its live session, if any, and a channel closed
// at the next change, for executors waiting for the agent.
type slot struct {
	sess    *session
	changed chan struct{}
}

// Registry holds at most one live agent stream per server.
type Registry struct {
	mu    sync.Mutex
	slots map[string]*slot
}

func newRegistry() *Registry { return &Registry{slots: map[string]*slot{}} }

func (r *Registry) slotLocked(serverID string) *slot {
	sl := r.slots[serverID]
	if sl == nil {
		sl = &slot{changed: make(chan struct{})}
		r.slots[serverID] = sl
	}
	return sl
}

// add installs ss as its server's stream. A server whose stream is alive keeps it: the second
// agent is refused (false), so two agents never work on one server's task at once.
func (r *Registry) add(ss *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	sl := r.slotLocked(ss.serverID)
	if sl.sess != nil && !sl.sess.ended() {
		return false
	}
	sl.sess = ss
	close(sl.changed)
	sl.changed = make(chan struct{})
	return true
}

// remove drops ss if it is still its server's stream.
func (r *Registry) remove(ss *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sl := r.slots[ss.serverID]
	if sl == nil || sl.sess != ss {
		return
	}
	sl.sess = nil
	close(sl.changed)
	// Keep the slot only while someone may wait on it: an executor re-reads it after the change.
	delete(r.slots, ss.serverID)
}

// current returns the server's live stream (nil when none) and a channel closed at the next
// change of the server's slot.
func (r *Registry) current(serverID string) (*session, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sl := r.slotLocked(serverID)
	if sl.sess != nil && sl.sess.ended() {
		return nil, sl.changed
	}
	return sl.sess, sl.changed
}

// connected reports whether the server has a live stream, without creating its slot.
func (r *Registry) connected(serverID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	sl := r.slots[serverID]
	return sl != nil && sl.sess != nil && !sl.sess.ended()
}

// wait returns the server's live stream, waiting up to timeout for one to connect. It returns
// nil when none came in time, and ctx's error when ctx ended.
func (r *Registry) wait(ctx context.Context, serverID string, timeout time.Duration) (*session, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		ss, changed := r.current(serverID)
		if ss != nil {
			return ss, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, nil
		case <-changed:
		}
	}
}

func (r *Registry) list() []AgentInfo {
	r.mu.Lock()
	var sessions []*session
	for _, sl := range r.slots {
		if sl.sess != nil && !sl.sess.ended() {
			sessions = append(sessions, sl.sess)
		}
	}
	r.mu.Unlock()
	out := make([]AgentInfo, 0, len(sessions))
	for _, ss := range sessions {
		info := AgentInfo{
			ServerID: ss.serverID, AgentVersion: ss.version, Components: len(ss.comps),
			ConnectedAt: ss.connected, LastSeen: time.Unix(0, ss.lastSeen.Load()),
		}
		info.Hostname, info.Vendor, info.Model, info.Serial = ss.host.Hostname, ss.host.Vendor, ss.host.Model, ss.host.Serial
		ss.mu.Lock()
		for id := range ss.assigned {
			info.Tasks = append(info.Tasks, id)
		}
		ss.mu.Unlock()
		sort.Strings(info.Tasks)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServerID < out[j].ServerID })
	return out
}
