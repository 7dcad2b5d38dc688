package redfish

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

const (
	root        = "/redfish/v1"
	sessionsURI = root + "/SessionService/Sessions"
)

// ServeHTTP serves the Redfish API of the BMC. All BMCs share this code; per-request state is
// looked up under the BMC's lock, so an idle BMC holds no goroutines besides its accept loop.
func (b *BMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := b.classify(r)
	b.mu.Lock()
	b.counters.Requests++
	f, ok := b.takeFaultLocked(OpAny)
	faultOp := OpAny
	if !ok && op != "" {
		f, ok = b.takeFaultLocked(op)
		faultOp = op
	}
	gen := b.faultGen
	b.mu.Unlock()

	var uploadFault FaultKind
	if ok {
		switch f.Kind {
		case KindStatus:
			status := f.Status
			if status == 0 {
				status = http.StatusInternalServerError
			}
			msg := f.Message
			if msg == "" {
				msg = fmt.Sprintf("simulated %s failure", faultOp)
			}
			if op == OpLogin {
				b.mu.Lock()
				b.counters.LoginFailures++
				b.mu.Unlock()
			}
			if op == OpUpload {
				b.mu.Lock()
				b.counters.Uploads++
				b.counters.UploadsRejected++
				b.mu.Unlock()
			}
			// Read the request first, as a BMC does before it answers: answering a large
			// upload early makes the client see a reset instead of the status.
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<30))
			if status == http.StatusServiceUnavailable && f.Delay > 0 {
				// A busy BMC says when to come back.
				w.Header().Set("Retry-After", fmt.Sprint(int(time.Duration(f.Delay).Round(time.Second)/time.Second)))
			}
			writeError(w, status, "Base.1.8.GeneralError", msg)
			return
		case KindHang:
			select {
			case <-gen: // any fault change releases hung requests
			case <-r.Context().Done():
				return
			case <-b.closeCh:
				return
			}
		case KindDelay:
			t := time.NewTimer(time.Duration(f.Delay))
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-b.closeCh:
				t.Stop()
				return
			}
		case KindDrop:
			if op == OpUpload {
				uploadFault = f.Kind
			} else {
				dropConn(w)
				return
			}
		case KindLostReply, KindHangAfterAccept, KindLicense:
			uploadFault = f.Kind
		}
	}

	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "" && r.Method == http.MethodGet {
		b.serveWebUI(w)
		return
	}
	if strings.HasPrefix(path, "/cgi/") && b.cfg.Personality.supermicro() {
		b.serveCGI(w, r, uploadFault)
		return
	}
	if !strings.HasPrefix(path, root) && r.Method == http.MethodPost && b.cfg.Personality.standard() && path == b.stdUpdate().pushURI {
		// XCC's push URI lies outside the Redfish tree.
		if !b.authorized(r) {
			writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "There is no valid session established with the implementation.")
			return
		}
		b.stdPush(w, r, uploadFault, gen)
		return
	}
	if !strings.HasPrefix(path, root) {
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceNotFound", "no such resource: "+r.URL.Path)
		return
	}
	rest := strings.TrimPrefix(path, root)
	public := (r.Method == http.MethodGet && (rest == "" || rest == "/odata" || rest == "/$metadata")) ||
		(r.Method == http.MethodPost && path == sessionsURI)
	if !public && !b.authorized(r) {
		writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "There is no valid session established with the implementation.")
		return
	}
	var seg []string
	if rest != "" {
		seg = strings.Split(strings.TrimPrefix(rest, "/"), "/")
	}
	b.route(w, r, seg, uploadFault, gen)
}

func (b *BMC) classify(r *http.Request) Op {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch r.Method {
	case http.MethodPost:
		switch {
		case p == sessionsURI:
			return OpLogin
		case p == b.ids.uploadURI || (b.cfg.Personality == Dell && p == root+"/UpdateService/FirmwareInventory"):
			return OpUpload
		case p == "/cgi/bios_upload.cgi" || p == "/cgi/oem_firmware_upload.cgi":
			return OpUpload
		case p == "/cgi/upgrade_process.cgi":
			return OpPoll
		case strings.HasSuffix(p, "/Actions/UpdateService.SimpleUpdate"):
			return OpUpload
		case strings.HasSuffix(p, "/Actions/ComputerSystem.Reset"):
			return OpPower
		case strings.HasSuffix(p, "/Actions/Manager.Reset"):
			return OpBMCReset
		}
	case http.MethodGet:
		if strings.HasPrefix(p, root+"/TaskService") || strings.Contains(p, "/Oem/Dell/Jobs") || strings.Contains(p, "/Managers/iDRAC.Embedded.1/Jobs") {
			return OpPoll
		}
	}
	return ""
}

func (b *BMC) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		b.mu.Lock()
		defer b.mu.Unlock()
		now := b.clock.Now()
		for _, s := range b.sessions {
			if subtle.ConstantTimeCompare([]byte(s.token), []byte(tok)) == 1 {
				if now.Sub(s.lastUsed) > b.cfg.SessionTimeout {
					delete(b.sessions, s.id)
					return false
				}
				s.lastUsed = now
				return true
			}
		}
		return false
	}
	if u, p, ok := r.BasicAuth(); ok {
		return b.credentialsOK(u, p)
	}
	return false
}

func (b *BMC) credentialsOK(u, p string) bool {
	return subtle.ConstantTimeCompare([]byte(u), []byte(b.cfg.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(b.cfg.Password)) == 1
}

func (b *BMC) route(w http.ResponseWriter, r *http.Request, seg []string, uploadFault FaultKind, gen chan struct{}) {
	get := r.Method == http.MethodGet
	n := len(seg)
	first := ""
	if n > 0 {
		first = seg[0]
	}
	switch {
	case n == 0 && get:
		b.writeJSON(w, http.StatusOK, b.serviceRoot())
	case n == 1 && first == "odata" && get:
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "/redfish/v1/$metadata", "value": []any{}})
	case first == "SessionService":
		b.routeSessions(w, r, seg)
	case first == "Systems":
		b.routeSystems(w, r, seg)
	case first == "Chassis":
		b.routeChassis(w, r, seg)
	case first == "Managers":
		b.routeManagers(w, r, seg)
	case first == "UpdateService" && b.cfg.Personality.standard():
		b.routeStdUpdateService(w, r, seg, uploadFault, gen)
	case first == "UpdateService":
		b.routeUpdateService(w, r, seg, uploadFault, gen)
	case first == "TaskService":
		b.routeTasks(w, r, seg)
	default:
		notFound(w, r)
	}
}

func notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "Base.1.8.OperationNotAllowed", r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	writeError(w, http.StatusNotFound, "Base.1.8.ResourceNotFound", "no such resource: "+r.URL.Path)
}

func (b *BMC) serveWebUI(w http.ResponseWriter) {
	if b.cfg.Personality.standard() {
		b.stdWebUI(w)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	switch {
	case b.cfg.Personality == OpenBMC:
		_, _ = io.WriteString(w, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>OpenBMC Web UI</title></head><body><noscript>OpenBMC Web UI requires JavaScript.</noscript><div id=\"app\"></div></body></html>\n")
		return
	case b.cfg.Personality.supermicro():
		_, _ = io.WriteString(w, "<!DOCTYPE html><html><head><title>Supermicro BMC</title></head><body><form action=\"/cgi/login.cgi\" method=\"post\"></form></body></html>\n")
		return
	}
	_, _ = io.WriteString(w, "<!DOCTYPE html><html><head><title>iDRAC9</title></head><body>Integrated Dell Remote Access Controller 9</body></html>\n")
}

func link(uri string) map[string]any { return map[string]any{"@odata.id": uri} }

func collection(uri, typ, name string, members []string) map[string]any {
	ms := make([]map[string]any, len(members))
	for i, m := range members {
		ms[i] = link(m)
	}
	return map[string]any{
		"@odata.id": uri, "@odata.type": "#" + typ + "." + typ, "Name": name,
		"Members": ms, "Members@odata.count": len(ms),
	}
}

var okStatus = map[string]any{"Health": "OK", "State": "Enabled"}

func (b *BMC) serviceRoot() map[string]any {
	m := map[string]any{
		"@odata.id": root, "@odata.type": "#ServiceRoot.v1_6_0.ServiceRoot",
		"Id": "RootService", "Name": "Root Service",
		"UUID":           b.uuid(),
		"Systems":        link(root + "/Systems"),
		"Managers":       link(root + "/Managers"),
		"Chassis":        link(root + "/Chassis"),
		"UpdateService":  link(root + "/UpdateService"),
		"Tasks":          link(root + "/TaskService"),
		"SessionService": link(root + "/SessionService"),
		"Links":          map[string]any{"Sessions": link(sessionsURI)},
	}
	if b.cfg.Personality == Dell {
		m["RedfishVersion"] = "1.11.0"
		m["Product"] = "Integrated Dell Remote Access Controller"
		m["Vendor"] = "Dell"
	} else {
		m["RedfishVersion"] = "1.11.0"
		m["Product"] = b.cfg.Model
		m["Vendor"] = b.cfg.Vendor
	}
	return m
}

func (b *BMC) uuid() string {
	h := fnv.New128a()
	h.Write([]byte(b.cfg.Name))
	s := hex.EncodeToString(h.Sum(nil))
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// --- sessions ---

func (b *BMC) routeSessions(w http.ResponseWriter, r *http.Request, seg []string) {
	switch {
	case len(seg) == 1 && r.Method == http.MethodGet:
		b.writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": root + "/SessionService", "@odata.type": "#SessionService.v1_1_8.SessionService",
			"Id": "SessionService", "Name": "Session Service", "ServiceEnabled": true,
			"SessionTimeout": int(b.cfg.SessionTimeout / time.Second), "Sessions": link(sessionsURI),
		})
	case len(seg) == 2 && seg[1] == "Sessions" && r.Method == http.MethodPost:
		b.login(w, r)
	case len(seg) == 2 && seg[1] == "Sessions" && r.Method == http.MethodGet:
		b.mu.Lock()
		var ids []string
		for id := range b.sessions {
			ids = append(ids, sessionsURI+"/"+id)
		}
		b.mu.Unlock()
		slices.Sort(ids)
		b.writeJSON(w, http.StatusOK, collection(sessionsURI, "SessionCollection", "Session Collection", ids))
	case len(seg) == 3 && seg[1] == "Sessions":
		b.mu.Lock()
		s, ok := b.sessions[seg[2]]
		if ok && r.Method == http.MethodDelete {
			delete(b.sessions, seg[2])
			b.counters.Logouts++
		}
		b.mu.Unlock()
		switch {
		case !ok:
			writeError(w, http.StatusNotFound, "Base.1.8.ResourceNotFound", "no such session")
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet:
			b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": sessionsURI + "/" + s.id, "@odata.type": "#Session.v1_3_0.Session",
				"Id": s.id, "Name": "User Session", "UserName": b.cfg.Username})
		default:
			notFound(w, r)
		}
	default:
		notFound(w, r)
	}
}

func (b *BMC) login(w http.ResponseWriter, r *http.Request) {
	var body struct{ UserName, Password string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	b.mu.Lock()
	if !b.credentialsOK(body.UserName, body.Password) {
		b.counters.LoginFailures++
		b.mu.Unlock()
		writeError(w, http.StatusUnauthorized, "Base.1.8.ResourceAtUriUnauthorized", "Unable to authenticate: invalid username or password.")
		return
	}
	now := b.clock.Now()
	for id, s := range b.sessions {
		if now.Sub(s.lastUsed) > b.cfg.SessionTimeout {
			delete(b.sessions, id)
		}
	}
	if b.cfg.MaxSessions > 0 && len(b.sessions) >= b.cfg.MaxSessions {
		b.counters.LoginFailures++
		b.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "Base.1.8.SessionLimitExceeded", "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.")
		return
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	b.sessionSeq++
	s := &session{id: fmt.Sprint(b.sessionSeq), token: hex.EncodeToString(raw[:]), lastUsed: now}
	if b.sessions == nil {
		b.sessions = make(map[string]*session, 1)
	}
	b.sessions[s.id] = s
	b.counters.Logins++
	b.mu.Unlock()
	w.Header().Set("X-Auth-Token", s.token)
	w.Header().Set("Location", sessionsURI+"/"+s.id)
	b.writeJSON(w, http.StatusCreated, map[string]any{"@odata.id": sessionsURI + "/" + s.id, "@odata.type": "#Session.v1_3_0.Session",
		"Id": s.id, "Name": "User Session", "UserName": body.UserName})
}

// --- systems ---

func (b *BMC) systemURI() string  { return root + "/Systems/" + b.ids.system }
func (b *BMC) managerURI() string { return root + "/Managers/" + b.ids.manager }
func (b *BMC) chassisURI() string { return root + "/Chassis/" + b.ids.chassis }

func (b *BMC) etagLocked() string { return fmt.Sprintf("W/\"%d\"", b.powerGen) }

func (b *BMC) routeSystems(w http.ResponseWriter, r *http.Request, seg []string) {
	get := r.Method == http.MethodGet
	if len(seg) == 1 && get {
		b.writeJSON(w, http.StatusOK, collection(root+"/Systems", "ComputerSystemCollection", "Computer System Collection", []string{b.systemURI()}))
		return
	}
	if len(seg) < 2 || seg[1] != b.ids.system {
		notFound(w, r)
		return
	}
	sys := b.systemURI()
	b.mu.Lock()
	b.advanceLocked(b.clock.Now())
	comps := slices.Clone(b.comps)
	power, etag := b.power, b.etagLocked()
	b.mu.Unlock()
	switch {
	case len(seg) == 2 && get:
		w.Header().Set("ETag", etag)
		b.writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": sys, "@odata.type": "#ComputerSystem.v1_12_0.ComputerSystem",
			"Id": b.ids.system, "Name": "System", "SystemType": "Physical",
			"Manufacturer": b.cfg.Vendor, "Model": b.cfg.Model, "SerialNumber": b.cfg.Serial, "SKU": b.cfg.Serial,
			"UUID": b.uuid(), "PowerState": power, "BiosVersion": versionOf(comps, SlugBIOS),
			"Status": okStatus,
			"Bios":   link(sys + "/Bios"), "Processors": link(sys + "/Processors"), "Memory": link(sys + "/Memory"),
			"Storage": link(sys + "/Storage"), "NetworkInterfaces": link(sys + "/NetworkInterfaces"),
			"EthernetInterfaces": link(sys + "/EthernetInterfaces"),
			"Links":              map[string]any{"ManagedBy": []any{link(b.managerURI())}, "Chassis": []any{link(b.chassisURI())}},
			"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
				"target": sys + "/Actions/ComputerSystem.Reset", "ResetType@Redfish.AllowableValues": systemResetTypes}},
		})
	case len(seg) == 4 && seg[2] == "Actions" && seg[3] == "ComputerSystem.Reset" && r.Method == http.MethodPost:
		b.systemReset(w, r)
	case len(seg) == 3 && seg[2] == "Bios" && get:
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": sys + "/Bios", "@odata.type": "#Bios.v1_1_0.Bios",
			"Id": "Bios", "Name": "BIOS Configuration Current Settings", "Description": "BIOS Configuration Current Settings",
			"AttributeRegistry": "BiosAttributeRegistry.v1_0_0", "Attributes": map[string]any{}})
	case len(seg) == 3 && (seg[2] == "Processors" || seg[2] == "Memory") && get:
		b.writeJSON(w, http.StatusOK, collection(sys+"/"+seg[2], seg[2]+"Collection", seg[2]+" Collection", nil))
	case seg[2] == "Storage" && get:
		b.storage(w, r, seg, comps)
	case seg[2] == "NetworkInterfaces" && get:
		b.networkInterfaces(w, r, seg, comps)
	case seg[2] == "EthernetInterfaces" && get:
		b.ethernetInterfaces(w, r, seg, comps)
	default:
		notFound(w, r)
	}
}

func versionOf(comps []Component, slug string) string {
	for _, c := range comps {
		if c.Slug == slug {
			return c.Version
		}
	}
	return ""
}

func (b *BMC) systemReset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if !slices.Contains(systemResetTypes, body.ResetType) {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterValueNotInList",
			fmt.Sprintf("The value %q for the parameter ResetType is not in the list of acceptable values.", body.ResetType))
		return
	}
	b.mu.Lock()
	if im := r.Header.Get("If-Match"); im != "" && im != b.etagLocked() && im != "*" {
		b.mu.Unlock()
		writeError(w, http.StatusPreconditionFailed, "Base.1.8.PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.")
		return
	}
	now := b.clock.Now()
	on := b.power == "On"
	conflict := func(msg string) {
		b.mu.Unlock()
		writeError(w, http.StatusConflict, "Base.1.8.ActionNotSupported", msg)
	}
	switch body.ResetType {
	case "On", "ForceOn":
		if on {
			if b.cfg.Personality == Dell {
				conflict("Server is already powered ON.")
				return
			}
		} else {
			b.power = "On"
			b.hostBootLocked(now)
		}
	case "ForceOff", "GracefulShutdown":
		if !on && b.cfg.Personality == Dell {
			conflict("Server is already powered OFF.")
			return
		}
		b.power = "Off"
	case "ForceRestart", "GracefulRestart":
		if !on {
			conflict("Unable to perform the operation because the server is powered off.")
			return
		}
		b.hostBootLocked(now)
	case "PowerCycle":
		b.power = "On"
		b.hostBootLocked(now)
	case "Nmi":
	}
	b.counters.PowerActions++
	b.powerGen++
	b.persistLocked()
	b.logf("power %s -> %s", body.ResetType, b.power)
	b.mu.Unlock()
	b.writeSuccess(w)
}

func (b *BMC) writeSuccess(w http.ResponseWriter) {
	if b.cfg.Personality == Dell {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b.writeJSON(w, http.StatusOK, map[string]any{"@Message.ExtendedInfo": []any{map[string]any{
		"@odata.type": "#Message.v1_1_1.Message", "Message": "The request completed successfully.",
		"MessageArgs": []string{}, "MessageId": "Base.1.13.0.Success", "MessageSeverity": "OK", "Resolution": "None"}}})
}

func (b *BMC) storage(w http.ResponseWriter, r *http.Request, seg []string, comps []Component) {
	base := b.systemURI() + "/Storage"
	var drives []string
	for _, c := range comps {
		if c.Slug == SlugDrive {
			drives = append(drives, base+"/"+b.ids.storage+"/Drives/"+c.ID)
		}
	}
	switch {
	case len(seg) == 3:
		var members []string
		if len(drives) > 0 {
			members = []string{base + "/" + b.ids.storage}
		}
		b.writeJSON(w, http.StatusOK, collection(base, "StorageCollection", "Storage Collection", members))
	case len(seg) == 4 && seg[3] == b.ids.storage:
		ls := make([]any, len(drives))
		for i, d := range drives {
			ls[i] = link(d)
		}
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": base + "/" + b.ids.storage, "@odata.type": "#Storage.v1_8_0.Storage",
			"Id": b.ids.storage, "Name": "Storage Controller", "Status": okStatus,
			"Drives": ls, "Drives@odata.count": len(ls), "StorageControllers": []any{}})
	case len(seg) == 6 && seg[3] == b.ids.storage && seg[4] == "Drives":
		for _, c := range comps {
			if c.Slug == SlugDrive && c.ID == seg[5] {
				b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": base + "/" + b.ids.storage + "/Drives/" + c.ID,
					"@odata.type": "#Drive.v1_9_0.Drive", "Id": c.ID, "Name": "Solid State Disk " + c.ID,
					"Manufacturer": c.Vendor, "Model": c.Model, "SerialNumber": c.Serial, "Revision": c.Version,
					"MediaType": "SSD", "Protocol": "SATA", "CapacityBytes": int64(480103981056), "BlockSizeBytes": 512,
					"CapableSpeedGbs": 6, "NegotiatedSpeedGbs": 6, "Status": okStatus})
				return
			}
		}
		notFound(w, r)
	default:
		notFound(w, r)
	}
}

func (b *BMC) mac(id string) string {
	h := fnv.New64a()
	h.Write([]byte(b.cfg.Name + "/" + id))
	s := h.Sum64()
	return fmt.Sprintf("b0:26:28:%02x:%02x:%02x", byte(s>>16), byte(s>>8), byte(s))
}

func (b *BMC) networkInterfaces(w http.ResponseWriter, r *http.Request, seg []string, comps []Component) {
	base := b.systemURI() + "/NetworkInterfaces"
	if len(seg) == 3 {
		var ms []string
		for _, c := range comps {
			if c.Slug == SlugNIC {
				ms = append(ms, base+"/"+c.ID)
			}
		}
		b.writeJSON(w, http.StatusOK, collection(base, "NetworkInterfaceCollection", "Network Interface Collection", ms))
		return
	}
	if len(seg) == 4 {
		for _, c := range comps {
			if c.Slug == SlugNIC && c.ID == seg[3] {
				b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": base + "/" + c.ID, "@odata.type": "#NetworkInterface.v1_2_0.NetworkInterface",
					"Id": c.ID, "Name": "Network Interface", "Status": okStatus,
					"Links": map[string]any{"NetworkAdapter": link(b.chassisURI() + "/NetworkAdapters/" + c.ID)}})
				return
			}
		}
	}
	notFound(w, r)
}

func (b *BMC) ethernetInterfaces(w http.ResponseWriter, r *http.Request, seg []string, comps []Component) {
	base := b.systemURI() + "/EthernetInterfaces"
	if len(seg) == 3 {
		var ms []string
		for _, c := range comps {
			if c.Slug == SlugNIC {
				ms = append(ms, base+"/"+c.ID+"-1-1")
			}
		}
		b.writeJSON(w, http.StatusOK, collection(base, "EthernetInterfaceCollection", "Ethernet Interface Collection", ms))
		return
	}
	if len(seg) == 4 {
		for _, c := range comps {
			if c.Slug == SlugNIC && c.ID+"-1-1" == seg[3] {
				b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": base + "/" + seg[3], "@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface",
					"Id": seg[3], "Name": "System Ethernet Interface", "Description": "Embedded NIC " + c.ID, "Status": okStatus,
					"MACAddress": b.mac(c.ID), "SpeedMbps": 25000, "AutoNeg": true, "MTUSize": 1500})
				return
			}
		}
	}
	notFound(w, r)
}

// --- chassis ---

func (b *BMC) routeChassis(w http.ResponseWriter, r *http.Request, seg []string) {
	if r.Method != http.MethodGet {
		notFound(w, r)
		return
	}
	ch := b.chassisURI()
	if len(seg) == 1 {
		b.writeJSON(w, http.StatusOK, collection(root+"/Chassis", "ChassisCollection", "Chassis Collection", []string{ch}))
		return
	}
	if seg[1] != b.ids.chassis {
		notFound(w, r)
		return
	}
	b.mu.Lock()
	b.advanceLocked(b.clock.Now())
	comps := slices.Clone(b.comps)
	b.mu.Unlock()
	na := ch + "/NetworkAdapters"
	nic := func(id string) (Component, bool) {
		for _, c := range comps {
			if c.Slug == SlugNIC && c.ID == id {
				return c, true
			}
		}
		return Component{}, false
	}
	switch {
	case len(seg) == 2:
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": ch, "@odata.type": "#Chassis.v1_11_0.Chassis",
			"Id": b.ids.chassis, "Name": "Computer System Chassis", "ChassisType": "RackMount",
			"Manufacturer": b.cfg.Vendor, "Model": b.cfg.Model, "SerialNumber": b.cfg.Serial, "PartNumber": b.cfg.Model,
			"Status": okStatus, "NetworkAdapters": link(na),
			"Links": map[string]any{"ComputerSystems": []any{link(b.systemURI())}, "ManagedBy": []any{link(b.managerURI())}}})
	case len(seg) == 3 && seg[2] == "NetworkAdapters":
		var ms []string
		for _, c := range comps {
			if c.Slug == SlugNIC {
				ms = append(ms, na+"/"+c.ID)
			}
		}
		b.writeJSON(w, http.StatusOK, collection(na, "NetworkAdapterCollection", "Network Adapter Collection", ms))
	case len(seg) == 4 && seg[2] == "NetworkAdapters":
		c, ok := nic(seg[3])
		if !ok {
			notFound(w, r)
			return
		}
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": na + "/" + c.ID, "@odata.type": "#NetworkAdapter.v1_5_0.NetworkAdapter",
			"Id": c.ID, "Name": "Network Adapter", "Manufacturer": c.Vendor, "Model": c.Model, "SerialNumber": c.Serial,
			"PartNumber": c.Model, "Status": okStatus,
			"Controllers": []any{map[string]any{"FirmwarePackageVersion": c.Version,
				"ControllerCapabilities": map[string]any{"NetworkPortCount": 1}}},
			"NetworkPorts": link(na + "/" + c.ID + "/NetworkPorts")})
	case len(seg) == 5 && seg[2] == "NetworkAdapters" && seg[4] == "NetworkPorts":
		c, ok := nic(seg[3])
		if !ok {
			notFound(w, r)
			return
		}
		b.writeJSON(w, http.StatusOK, collection(na+"/"+c.ID+"/NetworkPorts", "NetworkPortCollection", "Network Port Collection",
			[]string{na + "/" + c.ID + "/NetworkPorts/" + c.ID + "-1"}))
	case len(seg) == 6 && seg[2] == "NetworkAdapters" && seg[4] == "NetworkPorts" && seg[5] == seg[3]+"-1":
		c, ok := nic(seg[3])
		if !ok {
			notFound(w, r)
			return
		}
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": na + "/" + c.ID + "/NetworkPorts/" + seg[5],
			"@odata.type": "#NetworkPort.v1_2_0.NetworkPort", "Id": seg[5], "Name": "Network Port", "PhysicalPortNumber": "1",
			"LinkStatus": "Up", "ActiveLinkTechnology": "Ethernet", "CurrentLinkSpeedMbps": 25000,
			"AssociatedNetworkAddresses": []string{b.mac(c.ID)}, "Status": okStatus})
	default:
		notFound(w, r)
	}
}

// --- managers ---

func (b *BMC) routeManagers(w http.ResponseWriter, r *http.Request, seg []string) {
	get := r.Method == http.MethodGet
	if len(seg) == 1 && get {
		b.writeJSON(w, http.StatusOK, collection(root+"/Managers", "ManagerCollection", "Manager Collection", []string{b.managerURI()}))
		return
	}
	if len(seg) < 2 || seg[1] != b.ids.manager {
		notFound(w, r)
		return
	}
	m := b.managerURI()
	switch {
	case len(seg) == 2 && get:
		b.mu.Lock()
		b.advanceLocked(b.clock.Now())
		fw := versionOf(b.comps, SlugBMC)
		b.mu.Unlock()
		model := b.ids.managerModel
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": m, "@odata.type": "#Manager.v1_9_0.Manager",
			"Id": b.ids.manager, "Name": "Manager", "Description": "Baseboard Management Controller", "ManagerType": "BMC",
			"FirmwareVersion": fw, "Model": model, "UUID": b.uuid(), "Status": okStatus, "PowerState": "On",
			"Links": map[string]any{"ManagerForServers": []any{link(b.systemURI())}, "ManagerForChassis": []any{link(b.chassisURI())}},
			"Actions": map[string]any{"#Manager.Reset": map[string]any{
				"target": m + "/Actions/Manager.Reset", "ResetType@Redfish.AllowableValues": b.ids.managerResetTypes}}})
	case len(seg) == 4 && seg[2] == "Actions" && seg[3] == "Manager.Reset" && r.Method == http.MethodPost:
		b.managerReset(w, r)
	case b.cfg.Personality == Dell && r.Method == http.MethodDelete && (len(seg) == 6 && seg[2] == "Oem" && seg[3] == "Dell" && seg[4] == "Jobs" || len(seg) == 4 && seg[2] == "Jobs"):
		b.deleteDellJob(w, r, seg[len(seg)-1])
	case b.cfg.Personality == Dell && get && (len(seg) >= 5 && seg[2] == "Oem" && seg[3] == "Dell" && seg[4] == "Jobs" || len(seg) >= 3 && seg[2] == "Jobs"):
		id := ""
		if last := seg[len(seg)-1]; last != "Jobs" {
			id = last
		}
		b.dellJobs(w, r, id)
	default:
		notFound(w, r)
	}
}

func (b *BMC) managerReset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
			return
		}
	}
	if body.ResetType == "" {
		body.ResetType = b.ids.managerResetTypes[0]
	}
	if !slices.Contains(b.ids.managerResetTypes, body.ResetType) {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterValueNotInList",
			fmt.Sprintf("The value %q for the parameter ResetType is not in the list of acceptable values.", body.ResetType))
		return
	}
	b.mu.Lock()
	b.counters.BMCResets++
	b.afterLocked(b.cfg.BMCRebootDelay, func() { b.Reboot(0) })
	b.logf("Manager.Reset %s", body.ResetType)
	b.mu.Unlock()
	b.writeSuccess(w)
}

func (b *BMC) dellJobs(w http.ResponseWriter, r *http.Request, id string) {
	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	// iDRAC serves the queue at Managers/iDRAC.Embedded.1/Jobs and Oem/Dell/Jobs alike.
	base := strings.TrimSuffix(r.URL.Path, "/")
	if id == "" {
		ms := make([]string, len(b.jobs))
		for i, j := range b.jobs {
			ms[i] = base + "/" + j.id
		}
		b.mu.Unlock()
		b.writeJSON(w, http.StatusOK, collection(base, "DellJobCollection", "JobQueue", ms))
		return
	}
	j := b.findJobLocked(id)
	if j == nil {
		b.mu.Unlock()
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	body := b.dellJobJSON(j, b.viewAt(j, now))
	b.mu.Unlock()
	b.writeJSON(w, http.StatusOK, body)
}

// --- tasks ---

func (b *BMC) routeTasks(w http.ResponseWriter, r *http.Request, seg []string) {
	if r.Method != http.MethodGet {
		notFound(w, r)
		return
	}
	ts := root + "/TaskService"
	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	switch {
	case len(seg) == 1:
		b.mu.Unlock()
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": ts, "@odata.type": "#TaskService.v1_1_4.TaskService",
			"Id": "TaskService", "Name": "Task Service", "ServiceEnabled": true, "CompletedTaskOverWritePolicy": "Oldest",
			"DateTime": now.Format(timeFormat), "Status": okStatus, "Tasks": link(ts + "/Tasks")})
	case len(seg) == 2 && seg[1] == "Tasks":
		ms := make([]string, len(b.tasks))
		for i, t := range b.tasks {
			ms[i] = ts + "/Tasks/" + t.id
		}
		b.mu.Unlock()
		b.writeJSON(w, http.StatusOK, collection(ts+"/Tasks", "TaskCollection", "Task Collection", ms))
	case (len(seg) == 3 || len(seg) == 4 && seg[3] == "Monitor") && seg[1] == "Tasks":
		t := b.findTaskLocked(seg[2])
		if t == nil {
			b.mu.Unlock()
			writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
			return
		}
		body := b.taskJSON(t, now)
		b.mu.Unlock()
		if len(seg) == 4 && body["TaskState"] == "Running" {
			w.Header().Set("Location", r.URL.Path)
			b.writeJSON(w, http.StatusAccepted, body)
			return
		}
		b.writeJSON(w, http.StatusOK, body)
	default:
		b.mu.Unlock()
		notFound(w, r)
	}
}

// --- update service ---

func (b *BMC) firmwareInventoryLocked() []map[string]any {
	var out []map[string]any
	if b.cfg.Personality != Dell {
		for _, c := range b.comps {
			if c.Slug != SlugBMC && c.Slug != SlugBIOS {
				continue
			}
			id := strings.ToLower(c.Slug) + "_active"
			out = append(out, map[string]any{"Id": id, "Name": id, "Version": c.Version, "SoftwareId": c.Model, "Updateable": true,
				"Description": c.Slug + " image", "Status": okStatus})
		}
		return out
	}
	// iDRAC names inventory entries Installed-<component id>-<version>__<FQDD>; bmclib matches
	// entries whose id starts with "Installed" and contains the component's FQDD.
	codes := map[string]string{SlugBMC: "25227", SlugBIOS: "159", SlugNIC: "101654", SlugDrive: "104308"}
	names := map[string]string{SlugBMC: "Integrated Dell Remote Access Controller", SlugBIOS: "BIOS"}
	for _, c := range b.comps {
		fqdd := c.ID
		if c.Slug == SlugBMC {
			fqdd = c.ID + "-1"
		} else if c.Slug == SlugNIC {
			fqdd = c.ID + "-1-1"
		}
		name := names[c.Slug]
		if name == "" {
			name = c.Vendor + " " + c.Model + " - " + c.ID
		}
		add := func(prefix, version string) {
			out = append(out, map[string]any{"Id": prefix + "-" + codes[c.Slug] + "-" + version + "__" + fqdd,
				"Name": name, "Version": version, "SoftwareId": codes[c.Slug], "Updateable": true, "Status": okStatus})
		}
		add("Installed", c.Version)
		if c.Previous != "" {
			add("Previous", c.Previous)
		}
	}
	return out
}

func (b *BMC) routeUpdateService(w http.ResponseWriter, r *http.Request, seg []string, uploadFault FaultKind, gen chan struct{}) {
	us := root + "/UpdateService"
	fi := us + "/FirmwareInventory"
	path := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method == http.MethodPost && b.cfg.Personality == SupermicroX12 && (path == b.ids.uploadURI || path == smcStartUpdateURI) {
		if path == smcStartUpdateURI {
			b.smcStartUpdate(w)
		} else {
			b.smcUpload(w, r, uploadFault)
		}
		return
	}
	if r.Method == http.MethodPost && (path == b.ids.uploadURI || (b.cfg.Personality == Dell && path == fi)) {
		b.upload(w, r, uploadFault, gen)
		return
	}
	if r.Method != http.MethodGet {
		notFound(w, r)
		return
	}
	switch {
	case len(seg) == 1:
		push := b.ids.uploadURI
		if b.cfg.Personality == Dell {
			push = fi
		}
		b.writeJSON(w, http.StatusOK, map[string]any{"@odata.id": us, "@odata.type": "#UpdateService.v1_8_0.UpdateService",
			"Id": "UpdateService", "Name": "Update Service", "ServiceEnabled": true, "Status": okStatus,
			"FirmwareInventory": link(fi), "HttpPushUri": push, "MultipartHttpPushUri": b.ids.uploadURI,
			"Actions": map[string]any{"#UpdateService.SimpleUpdate": map[string]any{
				"target": us + "/Actions/UpdateService.SimpleUpdate",
				"@Redfish.OperationApplyTimeSupport": map[string]any{"@odata.type": "#Settings.v1_3_0.OperationApplyTimeSupport",
					"SupportedValues": []string{"Immediate", "OnReset"}}}}})
	case len(seg) == 2 && seg[1] == "FirmwareInventory":
		b.mu.Lock()
		b.advanceLocked(b.clock.Now())
		inv := b.firmwareInventoryLocked()
		b.mu.Unlock()
		ms := make([]string, len(inv))
		for i, e := range inv {
			ms[i] = fi + "/" + e["Id"].(string)
		}
		b.writeJSON(w, http.StatusOK, collection(fi, "SoftwareInventoryCollection", "Firmware Inventory Collection", ms))
	case len(seg) == 3 && seg[1] == "FirmwareInventory":
		b.mu.Lock()
		b.advanceLocked(b.clock.Now())
		inv := b.firmwareInventoryLocked()
		b.mu.Unlock()
		for _, e := range inv {
			if e["Id"] == seg[2] {
				e["@odata.id"] = fi + "/" + seg[2]
				e["@odata.type"] = "#SoftwareInventory.v1_4_0.SoftwareInventory"
				b.writeJSON(w, http.StatusOK, e)
				return
			}
		}
		notFound(w, r)
	default:
		notFound(w, r)
	}
}

// --- output ---

func (b *BMC) writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;odata.metadata=minimal;charset=utf-8")
	h.Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"@Message.ExtendedInfo": []any{map[string]any{"MessageId": code, "Message": msg, "Severity": "Critical", "Resolution": "None"}},
	}})
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// dropConn closes the client connection without an HTTP answer.
func dropConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
