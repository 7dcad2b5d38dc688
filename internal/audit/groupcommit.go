package audit

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// maxBatch bounds one group commit.
const maxBatch = 256

// groupCommit is the write path the database stores share: one goroutine writes every event
// waiting at that moment with one call to write, and each Append returns once its event is
// committed, so the trail stays synchronous with the calls it records while concurrent calls
// share a commit.
type groupCommit struct {
	name  string // for errors
	write func(batch []Event) ([]int64, error)

	mu     sync.RWMutex // held for reading while sending to reqs; close takes it to stop sends
	closed bool
	reqs   chan appendReq
	done   chan struct{}
}

type appendReq struct {
	e     Event
	reply chan appendRes
}

type appendRes struct {
	id  int64
	err error
}

func newGroupCommit(name string, write func([]Event) ([]int64, error)) *groupCommit {
	g := &groupCommit{name: name, write: write, reqs: make(chan appendReq, maxBatch), done: make(chan struct{})}
	go g.run()
	return g
}

// append waits for e's commit and returns its id.
func (g *groupCommit) append(e Event) (int64, error) {
	r := appendReq{e: e, reply: make(chan appendRes, 1)}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return 0, fmt.Errorf("%s: closed", g.name)
	}
	g.reqs <- r
	g.mu.RUnlock()
	res := <-r.reply
	return res.id, res.err
}

// run commits waiting events in batches until reqs is closed and drained.
func (g *groupCommit) run() {
	defer close(g.done)
	for r := range g.reqs {
		batch := []appendReq{r}
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-g.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		events := make([]Event, len(batch))
		for i, r := range batch {
			events[i] = r.e
		}
		ids, err := g.write(events)
		if err == nil && len(ids) != len(batch) {
			err = fmt.Errorf("%s: append: %d ids for %d events", g.name, len(ids), len(batch))
		}
		for i, r := range batch {
			if err != nil {
				r.reply <- appendRes{err: err}
			} else {
				r.reply <- appendRes{id: ids[i]}
			}
		}
	}
}

// close stops accepting events and waits until those already waiting are committed.
func (g *groupCommit) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.reqs)
	}
	g.mu.Unlock()
	<-g.done
}

// eventColumns are the columns of audit_events an Append writes, in insert order.
const eventColumns = "time_ns, identity, action, server_id, task_id, code, message, peer"

// eventArgs returns e's values in eventColumns order.
func eventArgs(e Event) []any {
	return []any{e.Time.UnixNano(), e.Identity, e.Action, e.ServerID, e.TaskID, e.Code, e.Message, e.Peer}
}

// insertEvents returns a multi-row INSERT of n events returning their ids, with parameters
// written by param (1-based).
func insertEvents(n int, param func(i int) string) string {
	var q strings.Builder
	q.WriteString("INSERT INTO audit_events(" + eventColumns + ") VALUES ")
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteByte('(')
		for c := range 8 {
			if c > 0 {
				q.WriteByte(',')
			}
			q.WriteString(param(i*8 + c + 1))
		}
		q.WriteByte(')')
	}
	q.WriteString(" RETURNING id")
	return q.String()
}

// selectEvents returns the Query statement for f and its arguments, with parameters written by
// param (1-based).
func selectEvents(f Filter, param func(i int) string) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" "+param(len(args)))
	}
	if f.Identity != "" {
		add("identity =", f.Identity)
	}
	if f.Action != "" {
		add("action =", f.Action)
	}
	if f.ServerID != "" {
		add("server_id =", f.ServerID)
	}
	if f.TaskID != "" {
		add("task_id =", f.TaskID)
	}
	if !f.Since.IsZero() {
		add("time_ns >=", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("time_ns <", f.Until.UnixNano())
	}
	if f.BeforeID > 0 {
		add("id <", f.BeforeID)
	}
	q := `SELECT id, time_ns, identity, action, server_id, task_id, code, message, peer FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, f.limit())
	q += " ORDER BY id DESC LIMIT " + param(len(args))
	return q, args
}

// rows is what scanEvents reads: database/sql's and pgx's result sets both fit.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanEvents reads the rows of a selectEvents statement.
func scanEvents(rs rows) ([]Event, error) {
	var out []Event
	for rs.Next() {
		var e Event
		var ns int64
		if err := rs.Scan(&e.ID, &ns, &e.Identity, &e.Action, &e.ServerID, &e.TaskID, &e.Code, &e.Message, &e.Peer); err != nil {
			return nil, err
		}
		e.Time = time.Unix(0, ns)
		out = append(out, e)
	}
	return out, rs.Err()
}
