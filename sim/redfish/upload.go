package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"

	"github.com/flasher-dev/flasher/sim/image"
)

// upload receives a firmware image (multipart with UpdateParameters + UpdateFile, or a raw
// HTTP push) and creates the install task.
//
// What is rejected how, chosen after the real firmware:
//   - not an image at all: Dell answers 400 (iDRAC checks the package header synchronously);
//     OpenBMC accepts it and the task ends in Exception (bmcweb hands any file to the software
//     manager, which fails to verify it).
//   - a valid image for another component, vendor or model: 202, then the task ends in
//     Exception (Dell JobState Failed, message SUP0518 "not applicable").
//   - OpenBMC only updates BMC and BIOS, and BIOS only while the host is off: the task ends in
//     Exception with the reason.
//   - a job for the same component still pending: Dell 400; OpenBMC 503 while any update runs.
func (b *BMC) upload(w http.ResponseWriter, r *http.Request, fault FaultKind, gen chan struct{}) {
	b.mu.Lock()
	b.counters.Uploads++
	b.mu.Unlock()
	reject := func(status int, code, msg string) {
		b.mu.Lock()
		b.counters.UploadsRejected++
		b.mu.Unlock()
		writeError(w, status, code, msg)
	}
	if b.cfg.Personality == Dell && r.ContentLength < 0 {
		// iDRAC does not take chunked uploads (hence bmclib's explicit Content-Length).
		reject(http.StatusLengthRequired, "Base.1.8.GeneralError", "Content-Length is required.")
		return
	}
	if fault == KindDrop {
		n := r.ContentLength / 2
		if n <= 0 {
			n = 64 << 10
		}
		_, _ = io.CopyN(io.Discard, r.Body, n)
		dropConn(w)
		return
	}

	var (
		pu  push
		bad *badPush
	)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		if pu, bad = readPush(r.Body, params["boundary"], []string{"Immediate", "OnReset", "OnStartUpdateRequest"}, "Immediate"); bad != nil {
			if bad.status != 0 {
				reject(bad.status, bad.code, bad.msg)
			}
			return
		}
	} else {
		pu = push{applyTime: "Immediate", gotFile: true}
		pu.hdr, pu.perr = image.Parse(r.Body)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
	}
	applyTime, hdr, perr, gotFile := pu.applyTime, pu.hdr, pu.perr, pu.gotFile
	if !gotFile {
		reject(http.StatusBadRequest, "Base.1.8.PropertyMissing", "The property UpdateFile is a required property and must be included in the request.")
		return
	}
	if perr != nil && b.cfg.Personality == Dell {
		reject(http.StatusBadRequest, "IDRAC.2.8.SUP0505", "Unable to parse the update package: "+perr.Error())
		return
	}

	b.mu.Lock()
	now := b.clock.Now()
	b.advanceLocked(now)
	t := &task{created: now, dur: b.cfg.InstallDuration, version: hdr.Version, slug: canonicalSlug(hdr.Component)}
	if perr == nil {
		t.targets, t.failMsg = b.matchLocked(hdr)
		b.counters.component(t.slug, func(c *ComponentCounters) { c.Uploads++ })
	} else {
		t.slug = "unknown"
		t.failMsg = "Invalid image format: " + perr.Error()
	}
	if t.failMsg == "" {
		if b.cfg.Personality == OpenBMC {
			for _, other := range b.tasks {
				if other.final == "" {
					b.counters.UploadsRejected++
					b.mu.Unlock()
					w.Header().Set("Retry-After", "60")
					writeError(w, http.StatusServiceUnavailable, "Base.1.8.ServiceTemporarilyUnavailable",
						"The service is temporarily unavailable: another update is in progress (task "+other.id+").")
					return
				}
			}
		} else if p := b.pendingForLocked(t.slug); p != nil {
			b.counters.UploadsRejected++
			b.mu.Unlock()
			writeError(w, http.StatusBadRequest, "IDRAC.2.8.RED065",
				fmt.Sprintf("Unable to create the job: job %s for the same component is already scheduled or running.", p.id))
			return
		}
		if f, ok := b.faults[OpInstall]; ok && (f.Component == "" || strings.EqualFold(f.Component, t.slug)) {
			f, _ = b.takeFaultLocked(OpInstall)
			t.fault, t.faultMsg = f.Kind, f.Message
		}
		// iDRAC applies everything but its own firmware at the next host boot; bmclib always
		// asks for OnReset. The iDRAC itself and OpenBMC components install right away.
		t.onReset = b.cfg.Personality == Dell && t.slug != SlugBMC && applyTime != "Immediate"
		// bmcweb stages a BMC image sent OnReset instead of rebooting into it (KindStaged).
		t.staged = t.slug == SlugBMC && t.fault == KindStaged && applyTime == "OnReset"
		b.counters.component(t.slug, func(c *ComponentCounters) { c.InstallsStarted++ })
	}
	b.scheduleTaskLocked(t)
	b.logf("upload of %s %s accepted as task %s (apply %s) %s", t.slug, t.version, t.id, applyTime, t.failMsg)
	body := b.taskJSON(t, now)
	b.mu.Unlock()

	if !b.replyAfterAccept(w, r, fault, gen) {
		return
	}

	loc := root + "/TaskService/Tasks/" + t.id
	if b.cfg.Personality == OpenBMC {
		w.Header().Set("Location", loc+"/Monitor")
		b.writeJSON(w, http.StatusAccepted, body)
		return
	}
	w.Header().Set("Location", loc)
	b.writeJSON(w, http.StatusAccepted, map[string]any{"@Message.ExtendedInfo": []any{map[string]any{
		"Message": "Successfully Completed Request", "MessageArgs": []string{}, "MessageId": "Base.1.8.Success", "Severity": "OK"}}})
}

// push is what a multipart upload carried.
type push struct {
	applyTime string
	targets   []string
	hdr       image.Header
	perr      error // the UpdateFile is not an image
	gotFile   bool
}

// badPush is a refused multipart upload; status 0 means the client went away (no answer).
type badPush struct {
	status    int
	code, msg string
}

// readPush reads a DMTF multipart push: UpdateParameters (Targets, @Redfish.OperationApplyTime,
// which must be one of applyTimes; def when absent) and UpdateFile (parsed as an image).
func readPush(body io.Reader, boundary string, applyTimes []string, def string) (push, *badPush) {
	pu := push{applyTime: def}
	mr := multipart.NewReader(body, boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return pu, nil
		}
		if err != nil {
			return pu, &badPush{http.StatusBadRequest, "Base.1.8.MalformedJSON", "malformed multipart body: " + err.Error()}
		}
		switch part.FormName() {
		case "UpdateParameters":
			var up struct {
				Targets   []string
				ApplyTime string `json:"@Redfish.OperationApplyTime"`
			}
			if err := json.NewDecoder(io.LimitReader(part, 1<<16)).Decode(&up); err != nil {
				return pu, &badPush{http.StatusBadRequest, "Base.1.8.MalformedJSON", "UpdateParameters: " + err.Error()}
			}
			if up.ApplyTime != "" {
				if !slices.Contains(applyTimes, up.ApplyTime) {
					return pu, &badPush{http.StatusBadRequest, "Base.1.8.PropertyValueNotInList",
						fmt.Sprintf("The value %q for the property @Redfish.OperationApplyTime is not in the list of acceptable values.", up.ApplyTime)}
				}
				pu.applyTime = up.ApplyTime
			}
			pu.targets = up.Targets
		case "UpdateFile":
			pu.gotFile = true
			pu.hdr, pu.perr = image.Parse(part)
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return pu, &badPush{} // the client went away mid-upload
		}
	}
}

// scheduleTaskLocked registers an install task and wakes the BMC when it is due to end.
func (b *BMC) scheduleTaskLocked(t *task) {
	b.newTaskLocked(t)
	if t.fault != KindStuck {
		b.afterLocked(t.dur, func() {
			b.mu.Lock()
			b.advanceLocked(b.clock.Now())
			b.mu.Unlock()
		})
	}
}

// replyAfterAccept applies an upload fault that strikes after the image was accepted (the reply
// lost, or held until the fault changes); it reports whether the reply is still to be written.
func (b *BMC) replyAfterAccept(w http.ResponseWriter, r *http.Request, fault FaultKind, gen chan struct{}) bool {
	switch fault {
	case KindLostReply:
		dropConn(w)
		return false
	case KindHangAfterAccept:
		select {
		case <-gen:
		case <-r.Context().Done():
			return false
		case <-b.closeCh:
			return false
		}
	}
	return true
}

func canonicalSlug(s string) string {
	for _, k := range []string{SlugBMC, SlugBIOS, SlugNIC, SlugDrive} {
		if strings.EqualFold(s, k) {
			return k
		}
	}
	return s
}

// matchLocked finds the components an image applies to, or says why it applies to none.
// BMC and BIOS images name the server's vendor and model; NIC and drive images the
// component's. An empty vendor or model in the image matches any.
func (b *BMC) matchLocked(h image.Header) ([]int, string) {
	slug := canonicalSlug(h.Component)
	notApplicable := func(why string) string {
		if b.cfg.Personality == Dell {
			return "SUP0518: Unable to perform the update because the update package is not applicable to the system: " + why
		}
		return "Image is not compatible with this machine: " + why
	}
	if b.cfg.Personality == OpenBMC {
		if slug != SlugBMC && slug != SlugBIOS {
			return nil, "Firmware update of " + h.Component + " is not supported by this BMC"
		}
		if slug == SlugBIOS && b.power == "On" {
			return nil, "BIOS update requires the host to be powered off"
		}
	}
	var targets []int
	var seen []string
	for i, c := range b.comps {
		if c.Slug != slug {
			continue
		}
		vendor, model := c.Vendor, c.Model
		if slug == SlugBMC || slug == SlugBIOS {
			vendor, model = b.cfg.Vendor, b.cfg.Model
		}
		if (h.Vendor == "" || strings.EqualFold(h.Vendor, vendor)) && (h.Model == "" || strings.EqualFold(h.Model, model)) {
			targets = append(targets, i)
		} else {
			seen = append(seen, vendor+" "+model)
		}
	}
	if len(targets) > 0 {
		return targets, ""
	}
	if len(seen) == 0 {
		return nil, notApplicable(fmt.Sprintf("image is for %s but this server has no %s", h.Component, h.Component))
	}
	return nil, notApplicable(fmt.Sprintf("image is for %s of %s %s, this server's %s is %s",
		h.Component, h.Vendor, h.Model, h.Component, strings.Join(seen, ", ")))
}
