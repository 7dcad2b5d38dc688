package fleetdb

import (
	"net/http"
	"strings"
	"time"

	fleetdbapi "github.com/metal-toolbox/fleetdb/pkg/api/v1"
)

// Fault changes how matching requests are answered.
type Fault struct {
	// Path matches requests whose path, after "/api/v1", starts with it ("/servers",
	// "/server-component-firmwares"); empty matches every request.
	Path string
	// Method matches one HTTP method; empty matches all.
	Method string
	// Status, when set, answers with this status and a fleetdb error body instead of the data.
	Status int
	// Delay holds the response back this long (a slow fleetdb).
	Delay time.Duration
	// Hang holds the response until the client gives up or the simulator closes.
	Hang bool
	// Times limits the fault to the next n matching requests; 0 means until removed.
	Times int
}

type faultEntry struct {
	Fault
	left int
}

// InjectFault adds a fault and returns a function that removes it.
func (s *Server) InjectFault(f Fault) (remove func()) {
	e := &faultEntry{Fault: f, left: f.Times}
	s.mu.Lock()
	s.faults = append(s.faults, e)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.faults {
			if x == e {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
				return
			}
		}
	}
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// matchFault returns the first fault matching r and uses up one of its times; the caller holds s.mu.
func (s *Server) matchFault(r *http.Request) *Fault {
	p := strings.TrimPrefix(r.URL.Path, "/api/v1")
	for i, e := range s.faults {
		if e.Method != "" && !strings.EqualFold(e.Method, r.Method) {
			continue
		}
		if !strings.HasPrefix(p, e.Path) {
			continue
		}
		f := e.Fault
		if e.Times > 0 {
			e.left--
			if e.left <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return &f
	}
	return nil
}

// applyFault delays, hangs or fails a request; it reports whether the response was written.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return true
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-s.stop:
			return true
		}
	}
	if f.Status != 0 {
		writeJSON(w, f.Status, fleetdbapi.ServerResponse{Message: "datastore error", Error: "injected fault"})
		return true
	}
	return false
}

// Stats counts requests by route.
type Stats struct {
	// Total is every request received, including refused and faulted ones.
	Total int
	// Unauthorized is the requests refused for a missing or wrong token.
	Unauthorized int
	// Faulted is the requests a fault answered, delayed or hung.
	Faulted int
	// ByRoute counts requests by "METHOD /api/v1/pattern".
	ByRoute map[string]int
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Total: s.total, Unauthorized: s.unauth, Faulted: s.injected, ByRoute: map[string]int{}}
	for k, v := range s.counts {
		st.ByRoute[k] = v
	}
	return st
}

// ResetStats zeroes the request counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total, s.unauth, s.injected = 0, 0, 0
	s.counts = map[string]int{}
}
