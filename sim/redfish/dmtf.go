package redfish

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/sim/image"
)

// DMTF is a BMC that implements the standard Redfish UpdateService and nothing vendor
// specific, as DSP0266 and the UpdateService/TaskService schemas describe it: firmware is
// pushed to MultipartHttpPushUri (parts UpdateParameters, with Targets and
// @Redfish.OperationApplyTime, and UpdateFile) or pulled with UpdateService.SimpleUpdate from an
// ImageURI; the reply is 202 with a Task Monitor in Location and the Task in the body. A BMC
// image sent with apply time OnReset is only staged: the running version changes at the next
// BMC reset. Images over MaxImageSizeBytes are refused 413. One update at a time: another upload
// while one runs is refused 503 with Retry-After.
const DMTF Personality = "dmtf"

// standard reports whether the personality updates firmware only through the standard Redfish
// UpdateService (no bmclib provider flashes it).
func (p Personality) standard() bool { return p == DMTF || p == HPE || p == XCC }

var dmtfIDs = ids{
	system: "Self", manager: "Self", chassis: "Self", storage: "1",
	uploadURI:         "/redfish/v1/UpdateService/upload",
	managerResetTypes: []string{"GracefulRestart", "ForceRestart"},
	managerModel:      "Redfish BMC",
}

// stdUpdate describes how one standard personality's UpdateService looks and answers.
type stdUpdate struct {
	// pushURI is the DMTF MultipartHttpPushUri ("" when not offered).
	pushURI string
	// httpPushURI is the older HttpPushUri (raw body; HPE's is its own multipart form).
	httpPushURI string
	// applyTimes are the apply times the push accepts ("Immediate", "OnReset").
	applyTimes []string
	// protocols are SimpleUpdate's TransferProtocol values ("" when SimpleUpdate is not offered).
	protocols []string
	// taskOnPull says SimpleUpdate answers with a Task (DMTF, XCC); iLO 5 answers 200 and
	// reports progress only in UpdateService Oem.Hpe.
	taskOnPull bool
	// defaultMax is MaxImageSizeBytes when Config.MaxImageSizeBytes is 0.
	defaultMax int64
}

func (b *BMC) stdUpdate() stdUpdate {
	switch b.cfg.Personality {
	case HPE:
		return hpeUpdate
	case XCC:
		return xccUpdate
	}
	return stdUpdate{pushURI: dmtfIDs.uploadURI, applyTimes: []string{"Immediate", "OnReset"},
		protocols: []string{"HTTPS", "HTTP"}, taskOnPull: true, defaultMax: 256 << 20}
}

func (b *BMC) maxImageSize() int64 {
	if b.cfg.MaxImageSizeBytes > 0 {
		return b.cfg.MaxImageSizeBytes
	}
	return b.stdUpdate().defaultMax
}

// routeStdUpdateService serves the UpdateService of a standard personality.
func (b *BMC) routeStdUpdateService(w http.ResponseWriter, r *http.Request, seg []string, fault FaultKind, gen chan struct{}) {
	us := root + "/UpdateService"
	su := b.stdUpdate()
	switch {
	case len(seg) == 1 && r.Method == http.MethodGet:
		body := map[string]any{"@odata.id": us, "@odata.type": "#UpdateService.v1_11_0.UpdateService",
			"Id": "UpdateService", "Name": "Update Service", "ServiceEnabled": true, "Status": okStatus,
			"FirmwareInventory": link(us + "/FirmwareInventory")}
		if n := b.maxImageSize(); n > 0 {
			body["MaxImageSizeBytes"] = n
		}
		if su.pushURI != "" {
			body["MultipartHttpPushUri"] = su.pushURI
		}
		if su.httpPushURI != "" {
			body["HttpPushUri"] = su.httpPushURI
		}
		if len(su.applyTimes) > 0 {
			body["HttpPushUriOptions"] = map[string]any{"HttpPushUriApplyTime": map[string]any{
				"ApplyTime": su.applyTimes[0], "ApplyTime@Redfish.AllowableValues": su.applyTimes}}
		}
		if len(su.protocols) > 0 {
			body["Actions"] = map[string]any{"#UpdateService.SimpleUpdate": map[string]any{
				"target": us + "/Actions/UpdateService.SimpleUpdate", "TransferProtocol@Redfish.AllowableValues": su.protocols}}
		}
		if b.cfg.Personality == HPE {
			b.mu.Lock()
			b.advanceLocked(b.clock.Now())
			body["Oem"] = map[string]any{"Hpe": b.hpeStateLocked(b.clock.Now())}
			b.mu.Unlock()
		}
		b.writeJSON(w, http.StatusOK, body)
	case len(seg) == 3 && seg[1] == "Actions" && seg[2] == "UpdateService.SimpleUpdate" && r.Method == http.MethodPost && len(su.protocols) > 0:
		b.simpleUpdate(w, r, su)
	case len(seg) >= 2 && seg[1] == "FirmwareInventory" && r.Method == http.MethodGet:
		b.stdFirmwareInventory(w, r, seg)
	case r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == su.pushURI:
		b.stdPush(w, r, fault, gen)
	default:
		notFound(w, r)
	}
}

// stdFirmwareInventory lists one SoftwareInventory per component, named as the personality
// names them.
func (b *BMC) stdFirmwareInventory(w http.ResponseWriter, r *http.Request, seg []string) {
	fi := root + "/UpdateService/FirmwareInventory"
	b.mu.Lock()
	b.advanceLocked(b.clock.Now())
	comps := slices.Clone(b.comps)
	b.mu.Unlock()
	entry := func(c Component) map[string]any {
		id := c.ID
		switch {
		case c.Slug == SlugBMC && b.cfg.Personality == XCC:
			id = "BMC-Primary"
		case c.Slug == SlugBIOS && b.cfg.Personality == XCC:
			id = "UEFI"
		case c.Slug == SlugBMC:
			id = "BMC"
		case c.Slug == SlugBIOS:
			id = "BIOS"
		}
		return map[string]any{"@odata.id": fi + "/" + id, "@odata.type": "#SoftwareInventory.v1_4_0.SoftwareInventory",
			"Id": id, "Name": c.Slug + " firmware", "Version": c.Version, "Updateable": true, "Status": okStatus,
			"Manufacturer": c.Vendor, "SoftwareId": c.Model}
	}
	if len(seg) == 2 {
		ms := make([]string, len(comps))
		for i, c := range comps {
			ms[i] = entry(c)["@odata.id"].(string)
		}
		b.writeJSON(w, http.StatusOK, collection(fi, "SoftwareInventoryCollection", "Firmware Inventory Collection", ms))
		return
	}
	for _, c := range comps {
		if e := entry(c); len(seg) == 3 && e["Id"] == seg[2] {
			b.writeJSON(w, http.StatusOK, e)
			return
		}
	}
	notFound(w, r)
}

// stdPush receives a DMTF multipart push: UpdateParameters (JSON) and UpdateFile.
func (b *BMC) stdPush(w http.ResponseWriter, r *http.Request, fault FaultKind, gen chan struct{}) {
	b.mu.Lock()
	b.counters.Uploads++
	b.mu.Unlock()
	if !b.checkSize(w, r.ContentLength) {
		return
	}
	if fault == KindDrop {
		_, _ = io.CopyN(io.Discard, r.Body, max(r.ContentLength/2, 64<<10))
		dropConn(w)
		return
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		b.rejectUpload(w, http.StatusUnsupportedMediaType, "Base.1.8.UnsupportedMediaType",
			"The request specified a media type of "+mt+" which is not supported by the MultipartHttpPushUri.")
		return
	}
	su := b.stdUpdate()
	pu, bad := readPush(r.Body, params["boundary"], su.applyTimes, su.applyTimes[0])
	if bad != nil {
		if bad.status != 0 {
			b.rejectUpload(w, bad.status, bad.code, bad.msg)
		}
		return
	}
	applyTime, hdr, perr, gotFile, targets := pu.applyTime, pu.hdr, pu.perr, pu.gotFile, pu.targets
	if !gotFile {
		b.rejectUpload(w, http.StatusBadRequest, "Base.1.8.PropertyMissing", "The property UpdateFile is a required property and must be included in the request.")
		return
	}
	for _, t := range targets {
		if !strings.HasPrefix(t, root+"/") {
			b.rejectUpload(w, http.StatusBadRequest, "Base.1.8.PropertyValueFormatError",
				fmt.Sprintf("The value %q for the property Targets is not a resource URI.", t))
			return
		}
	}
	t, ok := b.stdStartTask(w, hdr, perr, applyTime)
	if ok && b.replyAfterAccept(w, r, fault, gen) {
		b.writeTaskAccepted(w, t)
	}
}

// checkSize refuses an upload larger than MaxImageSizeBytes with 413, before reading it.
func (b *BMC) checkSize(w http.ResponseWriter, n int64) bool {
	if limit := b.maxImageSize(); limit > 0 && n > limit {
		b.rejectUpload(w, http.StatusRequestEntityTooLarge, "Base.1.8.PayloadTooLarge",
			fmt.Sprintf("The image of %d bytes exceeds MaxImageSizeBytes (%d).", n, limit))
		return false
	}
	return true
}

func (b *BMC) rejectUpload(w http.ResponseWriter, status int, code, msg string) {
	b.mu.Lock()
	b.counters.UploadsRejected++
	b.mu.Unlock()
	writeError(w, status, code, msg)
}

// stdStartTask creates the install task of an accepted image, or answers the refusal (503 with
// Retry-After while another update runs).
func (b *BMC) stdStartTask(w http.ResponseWriter, hdr image.Header, perr error, applyTime string) (*task, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	b.advanceLocked(now)
	for _, other := range b.tasks {
		if other.final == "" {
			b.counters.UploadsRejected++
			w.Header().Set("Retry-After", "30")
			writeError(w, http.StatusServiceUnavailable, "Base.1.8.ServiceTemporarilyUnavailable",
				"The service is temporarily unavailable: an update is in progress (task "+other.id+").")
			return nil, false
		}
	}
	t := &task{created: now, dur: b.cfg.InstallDuration, version: hdr.Version, slug: canonicalSlug(hdr.Component)}
	if perr == nil {
		t.targets, t.failMsg = b.matchLocked(hdr)
		b.counters.component(t.slug, func(c *ComponentCounters) { c.Uploads++ })
	} else {
		t.slug = "unknown"
		t.failMsg = "The image is not a valid firmware package: " + perr.Error()
	}
	if t.failMsg == "" {
		if f, ok := b.faults[OpInstall]; ok && (f.Component == "" || strings.EqualFold(f.Component, t.slug)) {
			f, _ = b.takeFaultLocked(OpInstall)
			t.fault, t.faultMsg = f.Kind, f.Message
		}
		// A BMC image applied OnReset is staged: it runs after the next BMC reset.
		t.staged = t.slug == SlugBMC && (applyTime == "OnReset" || t.fault == KindStaged)
		b.counters.component(t.slug, func(c *ComponentCounters) { c.InstallsStarted++ })
	}
	b.scheduleTaskLocked(t)
	b.logf("update of %s %s accepted as task %s (apply %s) %s", t.slug, t.version, t.id, applyTime, t.failMsg)
	return t, true
}

// writeTaskAccepted answers 202 with the Task Monitor in Location and the Task in the body.
func (b *BMC) writeTaskAccepted(w http.ResponseWriter, t *task) {
	b.mu.Lock()
	body := b.taskJSON(t, b.clock.Now())
	b.mu.Unlock()
	w.Header().Set("Location", root+"/TaskService/Tasks/"+t.id+"/Monitor")
	b.writeJSON(w, http.StatusAccepted, body)
}

// simpleUpdate pulls the image from ImageURI, as the BMC's own HTTP client would, then installs
// it. The pull runs before the answer (a BMC answers once it has validated the request; the
// download is short here).
func (b *BMC) simpleUpdate(w http.ResponseWriter, r *http.Request, su stdUpdate) {
	var p struct {
		ImageURI         string
		TransferProtocol string
		Targets          []string
		ApplyTime        string `json:"@Redfish.OperationApplyTime"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err := json.Unmarshal(data, &p); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if p.ImageURI == "" {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterMissing", "The action UpdateService.SimpleUpdate requires the parameter ImageURI to be present in the request body.")
		return
	}
	proto := strings.ToUpper(p.TransferProtocol)
	if proto == "" {
		if i := strings.Index(p.ImageURI, "://"); i > 0 {
			proto = strings.ToUpper(p.ImageURI[:i])
		}
	}
	if !slices.Contains(su.protocols, proto) {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterNotSupported",
			fmt.Sprintf("The parameter TransferProtocol %q for the action UpdateService.SimpleUpdate is not supported on the target resource.", proto))
		return
	}
	b.mu.Lock()
	b.counters.Uploads++
	b.counters.Pulls++
	b.mu.Unlock()
	hdr, perr, err := b.pull(p.ImageURI)
	if err != nil {
		b.rejectUpload(w, http.StatusBadRequest, "Base.1.8.ResourceAtUriUnauthorized", "Unable to download the image from "+redactURI(p.ImageURI)+": "+err.Error())
		return
	}
	applyTime := "Immediate"
	if p.ApplyTime != "" {
		applyTime = p.ApplyTime
	}
	t, ok := b.stdStartTask(w, hdr, perr, applyTime)
	if !ok {
		return
	}
	if !su.taskOnPull {
		b.mu.Lock()
		b.hpeTask = t
		b.mu.Unlock()
		b.writeJSON(w, http.StatusOK, map[string]any{"error": map[string]any{"code": "iLO.0.10.ExtendedInfo",
			"message":               "See @Message.ExtendedInfo for more information.",
			"@Message.ExtendedInfo": []any{map[string]any{"MessageId": "iLO.2.14.UpdateTaskQueued"}}}})
		return
	}
	b.writeTaskAccepted(w, t)
}

// pull downloads an image with the BMC's own client. Like iLO and XCC with
// VerifyRemoteServerCertificate false (their default), it does not verify the server's
// certificate; the image's contents are what the BMC checks.
func (b *BMC) pull(uri string) (image.Header, error, error) {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the BMCs do by default
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(uri)
	if err != nil {
		return image.Header{}, nil, errors.New("connection failed")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return image.Header{}, nil, fmt.Errorf("the server answered %s", resp.Status)
	}
	if limit := b.maxImageSize(); limit > 0 && resp.ContentLength > limit {
		return image.Header{}, nil, fmt.Errorf("the image of %d bytes exceeds MaxImageSizeBytes", resp.ContentLength)
	}
	hdr, perr := image.Parse(resp.Body)
	_, _ = io.Copy(io.Discard, resp.Body)
	return hdr, perr, nil
}

// redactURI drops the query of an image URI (where a token would be) from messages.
func redactURI(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// stdWebUI is the page a standard personality serves at /.
func (b *BMC) stdWebUI(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	title := map[Personality]string{HPE: "iLO 5", XCC: "Lenovo XClarity Controller"}[b.cfg.Personality]
	if title == "" {
		title = "Redfish Service"
	}
	_, _ = io.WriteString(w, "<!DOCTYPE html><html><head><title>"+title+"</title></head><body></body></html>\n")
}
