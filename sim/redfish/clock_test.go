package redfish

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/sim/image"
)

// manualClock only moves when the test says so; due timers run inside Advance.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	c       *manualClock
	at      time.Time
	f       func()
	stopped bool
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock and runs every timer that came due, in order.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *manualTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(c.now) && (due == nil || t.at.Before(due.at)) {
				due = t
			}
		}
		if due != nil {
			due.stopped = true
		}
		c.mu.Unlock()
		if due == nil {
			return
		}
		due.f()
	}
}

func uploadRaw(t *testing.T, b *BMC, h image.Header) string {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	ph := textproto.MIMEHeader{}
	ph.Set("Content-Disposition", `form-data; name="UpdateParameters"`)
	ph.Set("Content-Type", "application/json")
	pw, _ := mw.CreatePart(ph)
	_, _ = pw.Write([]byte(`{"Targets":[],"@Redfish.OperationApplyTime":"OnReset","Oem":{}}`))
	fw, _ := mw.CreateFormFile("UpdateFile", "fw.bin")
	_, _ = fw.Write(image.Make(h, 4096, ""))
	_ = mw.Close()
	req, _ := newRequest(t, b, "POST", "/redfish/v1/UpdateService/MultipartUpload", body.String())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp := do(t, req)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func getJSON(t *testing.T, b *BMC, path string) map[string]any {
	t.Helper()
	req, _ := newRequest(t, b, "GET", path, "")
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return m
}

func TestTaskTimelineWithInjectedClock(t *testing.T) {
	clk := &manualClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg := testConfig(Dell)
	cfg.Clock = clk
	cfg.InstallDuration, cfg.ApplyDuration = 10*time.Second, 4*time.Second
	cfg.BMCRebootDelay, cfg.BMCRebootDuration = time.Second, 30*time.Second
	b := start(t, cfg)

	loc := uploadRaw(t, b, image.Header{Component: "BIOS", Vendor: cfg.Vendor, Model: cfg.Model, Version: "2.19.1"})
	job := "/redfish/v1/Managers/iDRAC.Embedded.1/Oem/Dell/Jobs/" + loc[len("/redfish/v1/TaskService/Tasks/"):]
	steps := []struct {
		advance  time.Duration
		power    string // ResetType to post before reading, if any
		jobState string
		percent  float64
		version  string
	}{
		{0, "", "Downloading", 0, "2.11.4"},
		{6 * time.Second, "", "Downloaded", 60, "2.11.4"},
		{4 * time.Second, "", "Scheduled", 0, "2.11.4"},
		{time.Hour, "", "Scheduled", 0, "2.11.4"}, // waits for the host as long as it takes
		{0, "ForceRestart", "Running", 0, "2.11.4"},
		{2 * time.Second, "", "Running", 50, "2.11.4"},
		{2 * time.Second, "", "Completed", 100, "2.19.1"},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.power != "" {
			req, _ := newRequest(t, b, "POST", "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset", `{"ResetType":"`+s.power+`"}`)
			if r := do(t, req); r.StatusCode != http.StatusNoContent {
				t.Fatalf("step %d: reset %d", i, r.StatusCode)
			}
		}
		m := getJSON(t, b, job)
		if m["JobState"] != s.jobState || m["PercentComplete"] != s.percent {
			t.Errorf("step %d: job %v %v%%, want %s %v%%", i, m["JobState"], m["PercentComplete"], s.jobState, s.percent)
		}
		if v := b.InstalledVersion(SlugBIOS); v != s.version {
			t.Errorf("step %d: BIOS %s, want %s", i, v, s.version)
		}
	}

	// An iDRAC update: the BMC goes down one reboot delay after completion and comes back
	// with the new version after the reboot time, all on the injected clock.
	uploadRaw(t, b, image.Header{Component: "BMC", Vendor: cfg.Vendor, Model: cfg.Model, Version: "7.00.00.171"})
	clk.Advance(10 * time.Second)
	if b.Down() || b.InstalledVersion(SlugBMC) != "6.10.30.00" {
		t.Fatalf("at completion: down=%v version=%s", b.Down(), b.InstalledVersion(SlugBMC))
	}
	clk.Advance(time.Second)
	if !b.Down() {
		t.Fatal("BMC not rebooting one delay after completion")
	}
	clk.Advance(29 * time.Second)
	if !b.Down() {
		t.Fatal("BMC up before its reboot time")
	}
	clk.Advance(time.Second)
	if b.Down() || b.InstalledVersion(SlugBMC) != "7.00.00.171" {
		t.Fatalf("after reboot: down=%v version=%s", b.Down(), b.InstalledVersion(SlugBMC))
	}
	if m := getJSON(t, b, "/redfish/v1/Managers/iDRAC.Embedded.1"); m["FirmwareVersion"] != "7.00.00.171" {
		t.Errorf("manager FirmwareVersion %v", m["FirmwareVersion"])
	}
}
