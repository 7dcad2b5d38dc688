package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flasher-dev/flasher/sim/redfish"
)

// BMCStatus is one BMC as the control API shows it.
type BMCStatus struct {
	ID          string                       `json:"id"`
	Name        string                       `json:"name"`
	Profile     string                       `json:"profile"`
	Personality redfish.Personality          `json:"personality"`
	Vendor      string                       `json:"vendor"`
	Model       string                       `json:"model"`
	Address     string                       `json:"address"`
	Down        bool                         `json:"down"`
	Power       string                       `json:"power"`
	Components  []redfish.Component          `json:"components,omitempty"`
	Counters    *redfish.Counters            `json:"counters,omitempty"`
	Faults      map[redfish.Op]redfish.Fault `json:"faults,omitempty"`
}

func (f *Fleet) status(s *Server, full bool) BMCStatus {
	cfg := s.BMC.Config()
	st := BMCStatus{ID: s.ID, Name: s.Name, Profile: s.Profile, Personality: cfg.Personality, Vendor: cfg.Vendor,
		Model: cfg.Model, Address: f.Address(s), Down: s.BMC.Down(), Power: s.BMC.PowerState()}
	if full {
		c := s.BMC.Counters()
		st.Components, st.Counters, st.Faults = s.BMC.Components(), &c, s.BMC.Faults()
	}
	return st
}

// ControlHandler returns the control API (JSON over HTTP):
//
//	GET    /v1/bmcs                       list BMCs
//	GET    /v1/bmcs/{id}                  one BMC with components, counters and faults
//	GET    /v1/bmcs/{id}/counters         its counters
//	GET    /v1/counters                   counters of every BMC, by id
//	GET    /v1/bmcs/{id}/faults           its faults
//	PUT    /v1/bmcs/{id}/faults/{op}      set a fault (body: redfish.Fault JSON)
//	DELETE /v1/bmcs/{id}/faults/{op}      clear one fault
//	DELETE /v1/bmcs/{id}/faults           clear all faults
//	POST   /v1/bmcs/{id}/reboot           reboot the BMC (?duration=5s)
//	POST   /v1/bmcs/{id}/power            set host power without counters ({"on":true})
//	PUT    /v1/bmcs/{id}/components/{component}/version
//	                                      change an installed version behind Flasher's back
//	                                      (body: {"version": "x", "serial": ""})
//	GET    /v1/inventory                  the inventory YAML with current versions
//
// {id} "all" applies fault changes to every BMC.
func (f *Fleet) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bmcs", func(w http.ResponseWriter, r *http.Request) {
		out := make([]BMCStatus, len(f.servers))
		for i, s := range f.servers {
			out[i] = f.status(s, false)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/counters", func(w http.ResponseWriter, r *http.Request) {
		out := make(map[string]redfish.Counters, len(f.servers))
		for _, s := range f.servers {
			out[s.ID] = s.BMC.Counters()
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/inventory", func(w http.ResponseWriter, r *http.Request) {
		doc := f.Inventory()
		data, err := yaml.Marshal(&doc)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(data)
	})
	mux.HandleFunc("GET /v1/bmcs/{id}", f.withServer(func(w http.ResponseWriter, r *http.Request, s *Server) {
		writeJSON(w, http.StatusOK, f.status(s, true))
	}))
	mux.HandleFunc("GET /v1/bmcs/{id}/counters", f.withServer(func(w http.ResponseWriter, r *http.Request, s *Server) {
		writeJSON(w, http.StatusOK, s.BMC.Counters())
	}))
	mux.HandleFunc("GET /v1/bmcs/{id}/faults", f.withServer(func(w http.ResponseWriter, r *http.Request, s *Server) {
		writeJSON(w, http.StatusOK, s.BMC.Faults())
	}))
	mux.HandleFunc("PUT /v1/bmcs/{id}/faults/{op}", func(w http.ResponseWriter, r *http.Request) {
		var fault redfish.Fault
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fault); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("fault body: %w", err))
			return
		}
		op := redfish.Op(r.PathValue("op"))
		if err := fault.Validate(op); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		f.forEach(w, r, func(s *Server) error { return s.BMC.SetFault(op, fault) })
	})
	mux.HandleFunc("DELETE /v1/bmcs/{id}/faults/{op}", func(w http.ResponseWriter, r *http.Request) {
		f.forEach(w, r, func(s *Server) error { s.BMC.ClearFault(redfish.Op(r.PathValue("op"))); return nil })
	})
	mux.HandleFunc("DELETE /v1/bmcs/{id}/faults", func(w http.ResponseWriter, r *http.Request) {
		f.forEach(w, r, func(s *Server) error { s.BMC.ClearFaults(); return nil })
	})
	mux.HandleFunc("POST /v1/bmcs/{id}/reboot", func(w http.ResponseWriter, r *http.Request) {
		var d time.Duration
		if v := r.URL.Query().Get("duration"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				writeErr(w, http.StatusBadRequest, fmt.Errorf("duration: %w", err))
				return
			}
		}
		f.forEach(w, r, func(s *Server) error { s.BMC.Reboot(d); return nil })
	})
	mux.HandleFunc("POST /v1/bmcs/{id}/power", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			On *bool `json:"on"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil || body.On == nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf(`power body must be {"on": true|false}`))
			return
		}
		f.forEach(w, r, func(s *Server) error { s.BMC.SetPowerState(*body.On); return nil })
	})
	mux.HandleFunc("PUT /v1/bmcs/{id}/components/{component}/version", f.withServer(func(w http.ResponseWriter, r *http.Request, s *Server) {
		var body struct {
			Version string `json:"version"`
			Serial  string `json:"serial"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil || body.Version == "" {
			writeErr(w, http.StatusBadRequest, fmt.Errorf(`version body must be {"version": "x", "serial": ""}`))
			return
		}
		if !s.BMC.SetVersion(r.PathValue("component"), body.Serial, body.Version) {
			writeErr(w, http.StatusNotFound, fmt.Errorf("server %s has no component %q", s.ID, r.PathValue("component")))
			return
		}
		writeJSON(w, http.StatusOK, f.status(s, true))
	}))
	return mux
}

func (f *Fleet) withServer(h func(http.ResponseWriter, *http.Request, *Server)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := f.byID[r.PathValue("id")]
		if s == nil {
			writeErr(w, http.StatusNotFound, fmt.Errorf("no BMC %q", r.PathValue("id")))
			return
		}
		h(w, r, s)
	}
}

func (f *Fleet) forEach(w http.ResponseWriter, r *http.Request, do func(*Server) error) {
	id := r.PathValue("id")
	targets := f.servers
	if id != "all" {
		s := f.byID[id]
		if s == nil {
			writeErr(w, http.StatusNotFound, fmt.Errorf("no BMC %q", id))
			return
		}
		targets = []*Server{s}
	}
	for _, s := range targets {
		if err := do(s); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
