package redfish

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/bmc-toolbox/common"

	"github.com/flasher-dev/flasher/sim/image"
)

// Supermicro personalities. Both log in through the web (CGI) interface first, as bmclib's
// supermicro provider does, and serve Redfish for power, inventory and BMC reset.
const (
	// SupermicroX11 flashes through the web interface: cgi/ipmi.cgi XML operations put the BMC
	// in update mode, cgi/bios_upload.cgi or cgi/oem_firmware_upload.cgi take the image,
	// cgi/op.cgi starts the flash and cgi/upgrade_process.cgi reports it.
	SupermicroX11 Personality = "supermicro-x11"
	// SupermicroX12 flashes through Redfish: an upload with apply time OnStartUpdateRequest
	// stages the image behind a "Verify" task, UpdateService.StartUpdate runs an "Update" task.
	// It has no ipmi.cgi (404), which is how bmclib tells it from an X11.
	SupermicroX12 Personality = "supermicro-x12"
)

func (p Personality) supermicro() bool { return p == SupermicroX11 || p == SupermicroX12 }

var smcIDs = ids{
	system: "1", manager: "1", chassis: "1", storage: "1",
	uploadURI:         root + "/UpdateService/upload",
	managerResetTypes: []string{"GracefulRestart"},
	managerModel:      "ASPEED",
}

// smcStartUpdateURI is the action X12 BMCs take to install a staged image.
const smcStartUpdateURI = root + "/UpdateService/Actions/UpdateService.StartUpdate"

// smcState is what a Supermicro BMC keeps for its web interface; a BMC reboot clears it.
type smcState struct {
	web      map[string]string // SID cookie → CSRF token
	lockSID  string            // the web session holding the firmware update lock
	lockSlug string            // BMC or BIOS
	biosMode bool              // BIOS update mode entered (BIOS_UPLOAD.XML) and not left
	img      *image.Header     // the uploaded image
	imgErr   error
	flash    *task // X11: the flash started by op.cgi
	staged   *task // X12: the verify task of the staged image
}

// board is the baseboard part number the BMC reports in its FRU.
func (b *BMC) board() string {
	if b.cfg.Board != "" {
		return b.cfg.Board
	}
	return strings.ToUpper(common.FormatProductName(b.cfg.Model))
}

// smcLicenseBody is what an X12 without the DCMS licence answers to a firmware update.
func smcLicenseError(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, `{"error":{"code":"Base.v1_10_3.GeneralError","Message":"A general error has occurred. See ExtendedInfo for more information.","@Message.ExtendedInfo":[{"MessageId":"SMC.1.0.OemLicenseNotPassed","Severity":"Warning","Resolution":"Please activate at least one license in above message.","Message":"Not licensed to perform this request. The following licenses DCMS  were needed","MessageArgs":["DCMS "],"RelatedProperties":[""]}]}}`)
}

// serveCGI is the Supermicro web interface bmclib drives.
func (b *BMC) serveCGI(w http.ResponseWriter, r *http.Request, uploadFault FaultKind) {
	name := strings.TrimPrefix(r.URL.Path, "/cgi/")
	if name == "login.cgi" && r.Method == http.MethodPost {
		b.smcLogin(w, r)
		return
	}
	sid := ""
	if c, err := r.Cookie("SID"); err == nil {
		sid = c.Value
	}
	b.mu.Lock()
	csrf, ok := b.smc.web[sid]
	b.mu.Unlock()
	if !ok || sid == "" {
		// No session: the BMC answers with its login page, as real ones do.
		smcHTML(w, "<html><head><title>Login</title></head><body>Please log in.</body></html>")
		return
	}
	switch name {
	case "logout.cgi":
		b.mu.Lock()
		delete(b.smc.web, sid)
		b.counters.Logouts++
		b.mu.Unlock()
		smcHTML(w, "<html><body>logged out</body></html>")
		return
	case "url_redirect.cgi":
		smcHTML(w, "<html><head><script>\nSmcCsrfInsert (\"CSRF_TOKEN\", \""+csrf+"\");\n</script></head><body>topmenu</body></html>")
		return
	}
	if got := r.Header.Get("CSRF_TOKEN"); subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) != 1 {
		writeError(w, http.StatusForbidden, "SMC.CSRF", "invalid CSRF token")
		return
	}
	switch {
	case name == "ipmi.cgi" && b.cfg.Personality == SupermicroX11:
		b.smcIPMI(w, r, sid)
	case (name == "bios_upload.cgi" || name == "oem_firmware_upload.cgi") && b.cfg.Personality == SupermicroX11:
		b.smcWebUpload(w, r, sid, name, uploadFault)
	case name == "op.cgi" && b.cfg.Personality == SupermicroX11:
		b.smcOp(w, r, sid)
	case name == "upgrade_process.cgi" && b.cfg.Personality == SupermicroX11:
		b.smcProgress(w, r)
	default:
		writeError(w, http.StatusNotFound, "SMC.NotFound", "no such page: "+r.URL.Path)
	}
}

func smcHTML(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, body)
}

func smcXML(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `<?xml version="1.0"?>`+"\n<IPMI>\n"+body+"\n</IPMI>\n")
}

// smcLogin takes name and pwd, base64-encoded as current firmware wants them, or plain as
// older firmware did. A failed login answers 200 without the redirect to the main page.
func (b *BMC) smcLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "SMC.BadRequest", "malformed form")
		return
	}
	user, pass := r.PostForm.Get("name"), r.PostForm.Get("pwd")
	ok := b.credentialsOK(user, pass)
	if u, err1 := base64.StdEncoding.DecodeString(user); err1 == nil && !ok {
		if p, err2 := base64.StdEncoding.DecodeString(pass); err2 == nil {
			ok = b.credentialsOK(string(u), string(p))
		}
	}
	b.mu.Lock()
	if !ok {
		b.counters.LoginFailures++
		b.mu.Unlock()
		smcHTML(w, "<html><body>Invalid username or password.</body></html>")
		return
	}
	sid, csrf := randomHex(8), randomHex(16)
	if b.smc.web == nil {
		b.smc.web = map[string]string{}
	}
	b.smc.web[sid] = csrf
	b.counters.Logins++
	b.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "SID", Value: sid, Path: "/", Secure: true, HttpOnly: true})
	smcHTML(w, "<html><head><script>\nwindow.location.href = \"../cgi/url_redirect.cgi?url_name=topmenu\";\n</script></head></html>")
}

func randomHex(n int) string {
	raw := make([]byte, n)
	_, _ = rand.Read(raw)
	return hex.EncodeToString(raw)
}

// smcIPMI answers the XML operations of cgi/ipmi.cgi.
func (b *BMC) smcIPMI(w http.ResponseWriter, r *http.Request, sid string) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "SMC.BadRequest", "malformed form")
		return
	}
	op, arg := r.PostForm.Get("op"), r.PostForm.Get("r")
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	b.advanceLocked(now)
	s := &b.smc
	lock := func(slug string) {
		if s.lockSID != "" && s.lockSID != sid {
			smcXML(w, http.StatusOK, `<LOCK_FW_UPLOAD RES="0"/>`)
			return
		}
		s.lockSID, s.lockSlug, s.img, s.imgErr = sid, slug, nil, nil
		s.biosMode = slug == SlugBIOS
		smcXML(w, http.StatusOK, `<LOCK_FW_UPLOAD RES="1"/>`)
	}
	switch op {
	case "FRU_INFO.XML":
		smcXML(w, http.StatusOK, fmt.Sprintf(`<FRU_INFO RES="1"><DEVICE ID="0"/><CHASSIS TYPE="17" PART_NUM="CSE-813MF2TQC-505CB" SERIAL_NUM="C813M%s"/>`+
			`<BOARD LAN="0" MFG_DATE="2019/10/25 00:00:00" PROD_NAME="%s" SERIAL_NUM="WM19AS%s" PART_NUM="%s" MFC_NAME="Supermicro"/>`+
			`<PRODUCT LAN="0" MFC_NAME="Supermicro" PROD_NAME="%s" PART_NUM="%s" VERSION="0123456789" SERIAL_NUM="%s" ASSET_TAG=""/></FRU_INFO>`,
			b.cfg.Serial, b.board(), b.cfg.Serial, b.board(), b.cfg.Model, b.cfg.Model, b.cfg.Serial))
	case "COMPONENT_UPDATE_MISC.XML":
		switch {
		case s.flash != nil && s.flash.slug == SlugBIOS && s.flash.final == "" && b.viewAt(s.flash, now).jobState == "Scheduled":
			smcXML(w, http.StatusOK, `<MISC_INFO RES="0" SYSOFF="1"/>`) // written; the host must be power cycled
		case s.biosMode:
			if arg == "(1,0)" {
				s.biosMode = false
			}
			smcXML(w, http.StatusOK, `<MISC_INFO RES="0" SYSOFF="0"/>`)
		default:
			smcXML(w, http.StatusOK, `<MISC_INFO RES="-1" SYSOFF="0"/>`)
		}
	case "BIOS_UPLOAD.XML":
		lock(SlugBIOS)
	case "LOCK_UPLOAD_FW.XML":
		lock(SlugBMC)
	case "BIOS_UPDATE_START.XML", "BIOS_UPDATE_DONE.XML":
		if op == "BIOS_UPDATE_DONE.XML" && s.lockSID == sid {
			s.lockSID, s.lockSlug, s.img = "", "", nil
		}
		// The real endpoints answer 500 when they succeed.
		smcXML(w, http.StatusInternalServerError, "")
	case "BIOS_UPDATE_CHECK.XML":
		if why := b.smcImageProblemLocked(sid, SlugBIOS); why != "" {
			smcXML(w, http.StatusOK, `<BIOS_UPDATE_CHECK RES="01" MSG="`+why+`"/>`)
			return
		}
		smcXML(w, http.StatusOK, `<BIOS_UPDATE_CHECK RES="00"/>`)
	case "BIOS_REV.XML":
		newRev := ""
		if s.img != nil {
			newRev = s.img.Version
		}
		smcXML(w, http.StatusOK, fmt.Sprintf(`<BIOS_Rev OldRev="%s" NewRev="%s"/>`, versionOf(b.comps, SlugBIOS), newRev))
	case "BIOS_OPTION.XML":
		smcXML(w, http.StatusOK, `<BIOS_OP Res="0"/>`)
	case "UPLOAD_FW_VERSION.XML":
		if why := b.smcImageProblemLocked(sid, SlugBMC); why != "" {
			smcXML(w, http.StatusOK, `<FW_VERSION RES="-1" MSG="`+why+`"/>`)
			return
		}
		smcXML(w, http.StatusOK, fmt.Sprintf(`<FW_VERSION NEW="%s" OLD="%s"/>`, s.img.Version, versionOf(b.comps, SlugBMC)))
	default:
		smcXML(w, http.StatusOK, `<UNKNOWN_OP RES="-1"/>`)
	}
}

// smcImageProblemLocked says why the uploaded image cannot be flashed for slug, or "".
func (b *BMC) smcImageProblemLocked(sid, slug string) string {
	s := &b.smc
	switch {
	case s.lockSID != sid || s.lockSlug != slug:
		return "not in " + slug + " update mode"
	case s.imgErr != nil:
		return "invalid image: " + s.imgErr.Error()
	case s.img == nil:
		return "no image uploaded"
	case canonicalSlug(s.img.Component) != slug:
		return "image is for " + s.img.Component + ", not " + slug
	}
	if _, why := b.matchLocked(*s.img); why != "" {
		return why
	}
	return ""
}

// smcWebUpload takes the image of an X11 web upload (bios_rom or fw_image).
func (b *BMC) smcWebUpload(w http.ResponseWriter, r *http.Request, sid, page string, fault FaultKind) {
	b.mu.Lock()
	b.counters.Uploads++
	b.mu.Unlock()
	if fault == KindDrop {
		_, _ = io.CopyN(io.Discard, r.Body, max(r.ContentLength/2, 64<<10))
		dropConn(w)
		return
	}
	field := "fw_image"
	slug := SlugBMC
	if page == "bios_upload.cgi" {
		field, slug = "bios_rom", SlugBIOS
	}
	var hdr image.Header
	perr := errors.New("no " + field + " part")
	if !eachPart(w, r, "SMC.BadRequest", func(part *multipart.Part) {
		if part.FormName() == field {
			hdr, perr = image.Parse(part)
		}
	}) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.smc
	if s.lockSID != sid || s.lockSlug != slug {
		b.counters.UploadsRejected++
		smcHTML(w, "<html><body>Not in firmware update mode.</body></html>")
		return
	}
	if perr == nil {
		b.counters.component(canonicalSlug(hdr.Component), func(c *ComponentCounters) { c.Uploads++ })
		s.img, s.imgErr = &hdr, nil
	} else {
		s.img, s.imgErr = nil, perr
	}
	smcHTML(w, "<html><body>Upload OK</body></html>")
}

// smcOp starts the flash of the uploaded image. A BIOS flash powers the host off; the new
// BIOS runs once the host is powered on again.
func (b *BMC) smcOp(w http.ResponseWriter, r *http.Request, sid string) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "SMC.BadRequest", "malformed form")
		return
	}
	slug := map[string]string{"main_biosupdate": SlugBIOS, "main_fwupdate": SlugBMC}[r.PostForm.Get("op")]
	if slug == "" {
		smcXML(w, http.StatusOK, `<IPMI RES="0"/>`)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	b.advanceLocked(now)
	if why := b.smcImageProblemLocked(sid, slug); why != "" {
		writeError(w, http.StatusBadRequest, "SMC.UpdateRefused", why)
		return
	}
	s := &b.smc
	t := &task{created: now, dur: b.cfg.InstallDuration, version: s.img.Version, slug: slug, label: slug + " Update"}
	t.targets, _ = b.matchLocked(*s.img)
	if f, ok := b.faults[OpInstall]; ok && (f.Component == "" || strings.EqualFold(f.Component, slug)) {
		f, _ = b.takeFaultLocked(OpInstall)
		t.fault, t.faultMsg = f.Kind, f.Message
	}
	if slug == SlugBIOS {
		t.onReset = true
		if b.power == "On" {
			b.power = "Off"
			b.powerGen++
			b.persistLocked()
		}
	} else {
		// The BMC flashes itself and leaves update mode when it reboots.
		s.lockSID, s.lockSlug = "", ""
	}
	b.counters.component(slug, func(c *ComponentCounters) { c.InstallsStarted++ })
	b.newTaskLocked(t)
	s.flash = t
	b.afterLocked(t.dur, func() {
		b.mu.Lock()
		b.advanceLocked(b.clock.Now())
		b.mu.Unlock()
	})
	b.logf("web flash of %s %s started", slug, t.version)
	smcHTML(w, "ok")
}

// smcProgress answers cgi/upgrade_process.cgi (fwtype 0: BMC, 1: BIOS) as X11 firmware does:
// status 8 while flashing; status 0 percent 100 once a BIOS is written (it waits for the host
// power cycle); status 0 percent 0 when nothing is running; status 0 percent 1 when a flash
// failed and the BMC needs a reset to leave update mode.
func (b *BMC) smcProgress(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	slug := SlugBMC
	if bytes.Contains(data, []byte("fwtype=1")) {
		slug = SlugBIOS
	}
	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	t := b.smc.flash
	status, percent := 0, 0
	if t != nil && t.slug == slug {
		v := b.viewAt(t, now)
		switch {
		case t.final == "Exception" || t.final == "Killed":
			percent = 1
		case v.jobState == "Scheduled" || (t.final == "Completed" && slug == SlugBMC):
			percent = 100
		case t.final == "":
			status, percent = 8, max(v.percent, 3)
		}
	}
	b.mu.Unlock()
	smcXML(w, http.StatusOK, fmt.Sprintf("<status>%d</status><percent>%d</percent>", status, percent))
}

// smcUpload stages an X12 image behind a "<slug> Verify" task (Redfish multipart upload).
func (b *BMC) smcUpload(w http.ResponseWriter, r *http.Request, fault FaultKind) {
	b.mu.Lock()
	b.counters.Uploads++
	b.mu.Unlock()
	if fault == KindLicense {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<30))
		b.mu.Lock()
		b.counters.UploadsRejected++
		b.mu.Unlock()
		smcLicenseError(w)
		return
	}
	var hdr image.Header
	perr := errors.New("no UpdateFile part")
	applyTime := ""
	if !eachPart(w, r, "Base.v1_10_3.GeneralError", func(part *multipart.Part) {
		switch part.FormName() {
		case "UpdateParameters":
			raw, _ := io.ReadAll(io.LimitReader(part, 1<<16))
			if i := bytes.Index(raw, []byte(`"@Redfish.OperationApplyTime":"`)); i >= 0 {
				rest := raw[i+len(`"@Redfish.OperationApplyTime":"`):]
				applyTime = string(rest[:max(bytes.IndexByte(rest, '"'), 0)])
			}
		case "UpdateFile":
			hdr, perr = image.Parse(part)
		}
	}) {
		return
	}
	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	if applyTime != "OnStartUpdateRequest" {
		b.counters.UploadsRejected++
		b.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Base.v1_10_3.PropertyValueNotInList",
			fmt.Sprintf("The value %q for the property @Redfish.OperationApplyTime is not in the list of acceptable values.", applyTime))
		return
	}
	for _, t := range b.tasks {
		if t.final == "" || t == b.smc.staged {
			b.counters.UploadsRejected++
			b.mu.Unlock()
			writeError(w, http.StatusBadRequest, "SMC.1.0.OemFirmwareAlreadyInUpdateMode",
				"The firmware is already in update mode: "+t.name(b.cfg.Personality)+" (task "+t.id+").")
			return
		}
	}
	t := &task{created: now, dur: max(b.cfg.InstallDuration/4, 1), version: hdr.Version, slug: canonicalSlug(hdr.Component), stageOnly: true}
	if perr == nil {
		t.targets, t.failMsg = b.matchLocked(hdr)
		b.counters.component(t.slug, func(c *ComponentCounters) { c.Uploads++ })
	} else {
		t.slug, t.failMsg = "unknown", "Invalid image format: "+perr.Error()
	}
	t.label = t.slug + " Verify"
	b.newTaskLocked(t)
	b.smc.staged = t
	b.afterLocked(t.dur, func() {
		b.mu.Lock()
		b.advanceLocked(b.clock.Now())
		b.mu.Unlock()
	})
	body := b.taskJSON(t, now)
	b.mu.Unlock()
	w.Header().Set("Location", root+"/TaskService/Tasks/"+t.id)
	b.writeJSON(w, http.StatusAccepted, body)
}

// smcStartUpdate installs the staged image: an "<slug> Update" task. A BIOS update powers the
// host off first and leaves it off.
func (b *BMC) smcStartUpdate(w http.ResponseWriter) {
	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	st := b.smc.staged
	if st == nil || st.final != "Completed" {
		b.mu.Unlock()
		writeError(w, http.StatusBadRequest, "SMC.1.0.OemNoFirmwareStaged", "There is no verified firmware image to update.")
		return
	}
	b.smc.staged = nil
	t := &task{created: now, dur: b.cfg.InstallDuration, version: st.version, slug: st.slug, targets: st.targets, label: st.slug + " Update"}
	if f, ok := b.faults[OpInstall]; ok && (f.Component == "" || strings.EqualFold(f.Component, t.slug)) {
		f, _ = b.takeFaultLocked(OpInstall)
		t.fault, t.faultMsg = f.Kind, f.Message
	}
	if t.slug == SlugBIOS && b.power == "On" {
		b.power = "Off"
		b.powerGen++
		b.persistLocked()
	}
	b.counters.component(t.slug, func(c *ComponentCounters) { c.InstallsStarted++ })
	b.newTaskLocked(t)
	b.afterLocked(t.dur, func() {
		b.mu.Lock()
		b.advanceLocked(b.clock.Now())
		b.mu.Unlock()
	})
	body := b.taskJSON(t, now)
	b.mu.Unlock()
	w.Header().Set("Location", root+"/TaskService/Tasks/"+t.id)
	b.writeJSON(w, http.StatusAccepted, body)
}

// eachPart hands every part of a multipart request to f, then drains it. It answers 400 with
// code and returns false when the body is not multipart or is malformed, and returns false
// when the client went away.
func eachPart(w http.ResponseWriter, r *http.Request, code string, f func(*multipart.Part)) bool {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		writeError(w, http.StatusBadRequest, code, "multipart/form-data expected")
		return false
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, code, "malformed multipart body: "+err.Error())
			return false
		}
		f(part)
		if _, err := io.Copy(io.Discard, part); err != nil {
			return false // the client went away mid-upload
		}
	}
}
