package fleetflag_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/fleetflag"
	"github.com/flasher-dev/flasher/internal/task"
)

// operatorFields is an attribute's data without the keys Flasher writes.
func operatorFields(t *testing.T, data json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("attribute %s: %v", data, err)
	}
	for _, k := range []string{"status", "worker", "taskID", "requestID", "failureCode", "reason", "queuedAt", "startedAt", "finishedAt", "updatedAt", "resolved"} {
		delete(m, k)
	}
	return m
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// finish opens the installer's gate (once) and waits until the attribute's task has ended,
// then polls once so the attribute shows it.
func (f *fixture) finish(t *testing.T, fl *fleetflag.Flagger, id uuid.UUID) *fleetflag.Payload {
	t.Helper()
	select {
	case <-f.exec.gate:
	default:
		close(f.exec.gate)
	}
	f.env.WaitState(t, f.attr(t, id).TaskID, 10*time.Second, task.StateSucceeded, task.StateFailed)
	poll(t, fl)
	return f.attr(t, id)
}

// reflagStatusOnly is an operator re-flagging the written-back attribute by setting its status
// back to "" and leaving every other key as it is.
func (f *fixture) reflagStatusOnly(t *testing.T, id uuid.UUID) {
	t.Helper()
	f.clk.Advance(time.Minute)
	a, _ := f.sim.Attribute(id, fleetflag.Namespace)
	var m map[string]any
	if err := json.Unmarshal(a.Data, &m); err != nil {
		t.Fatal(err)
	}
	m["status"] = ""
	f.sim.SetAttribute(id, fleetflag.Namespace, m)
}

// setupOne is a fixture with the catalog and one server flagged with data.
func setupOne(t *testing.T, data any) (*fixture, uuid.UUID) {
	t.Helper()
	f := setup(t)
	f.catalog()
	id := f.server("a")
	f.sim.SetAttribute(id, fleetflag.Namespace, data)
	return f, id
}

// An operator's re-flag of the same payload after a success is a new request, against
// fleetdb's real update semantics (a PUT never moves the attribute's updated_at): whether the
// operator writes the original payload again or only sets status back to "".
func TestReflagAfterSuccessStartsNewTask(t *testing.T) {
	request := json.RawMessage(`{"status":"","requester":"alice","Firmware":{"bios":{"version":"2.19.1","force":true}}}`)
	f, id := setupOne(t, request)
	fl := f.flags("flasher-0")
	poll(t, fl)
	first := f.attr(t, id).TaskID
	if p := f.finish(t, fl, id); p.Status != fleetflag.StatusSuccess || p.TaskID != first {
		t.Fatalf("first request: %+v", p)
	}

	// the same payload written again
	f.clk.Advance(time.Minute)
	f.sim.SetAttribute(id, fleetflag.Namespace, request)
	poll(t, fl)
	second := f.attr(t, id)
	if second.TaskID == "" || second.TaskID == first || second.Status == fleetflag.StatusSuccess && second.TaskID == first {
		t.Fatalf("re-flag of the same payload: attribute %+v, want a new task (first was %s)", second, first)
	}
	if p := f.finish(t, fl, id); p.Status != fleetflag.StatusSuccess || p.TaskID != second.TaskID {
		t.Fatalf("second request: %+v", p)
	}

	// the written-back attribute with only its status set back to ""
	f.reflagStatusOnly(t, id)
	poll(t, fl)
	third := f.attr(t, id)
	if third.TaskID == "" || third.TaskID == second.TaskID || third.TaskID == first {
		t.Fatalf("re-flag by status only: attribute %+v, want a third task", third)
	}
	if n := len(f.tasksOf(t, id)); n != 3 {
		t.Errorf("%d tasks for three requests", n)
	}
}

// Write-back keeps every field the operator set: actions, force, fields Flasher does not know
// (reinstall) and the object-keyed form; and a re-flag of a resolve-mode attribute Flasher
// filled asks for resolve mode again.
func TestWriteBackKeepsOperatorFields(t *testing.T) {
	f := setup(t)
	f.catalog()
	explicit, resolve := f.server("explicit"), f.server("resolve")
	request := json.RawMessage(`{"namespace":"sh.hollow.flasher.task","status":"","priority":1,"requester":"alice","ticket":"OPS-1",
		"Firmware":{"bmc":{"version":"7.00.00.171","preActions":["resetBMC"],"postActions":["resetHost"],"force":true,"reinstall":true}}}`)
	f.sim.SetAttribute(explicit, fleetflag.Namespace, request)
	f.sim.SetAttribute(resolve, fleetflag.Namespace, map[string]any{"status": "", "requester": "carol"})
	fl := f.flags("flasher-0")
	poll(t, fl)

	var want map[string]any
	if err := json.Unmarshal(request, &want); err != nil {
		t.Fatal(err)
	}
	delete(want, "status")
	check := func(when string) {
		t.Helper()
		a, _ := f.sim.Attribute(explicit, fleetflag.Namespace)
		if got := operatorFields(t, a.Data); jsonOf(got) != jsonOf(want) {
			t.Errorf("%s: operator fields\n got %s\nwant %s", when, jsonOf(got), jsonOf(want))
		}
	}
	check("queued")
	if p := f.finish(t, fl, explicit); p.Status != fleetflag.StatusSuccess {
		t.Fatalf("explicit: %+v", p)
	}
	check("success")
	tasks := f.tasksOf(t, explicit)
	if len(tasks) != 1 || len(tasks[0].GetFirmware()) != 1 {
		t.Fatalf("explicit tasks = %v", tasks)
	}
	fw := tasks[0].GetFirmware()[0]
	if len(fw.GetPreActions()) != 1 || len(fw.GetPostActions()) != 1 || !fw.GetForce() {
		t.Errorf("task firmware = %v, want the operator's actions and force", fw)
	}

	// resolve mode: Flasher fills the set and firmware, as the design shows ...
	f.env.WaitState(t, f.attr(t, resolve).TaskID, 10*time.Second, task.StateSucceeded)
	poll(t, fl)
	p := f.attr(t, resolve)
	if p.Status != fleetflag.StatusSuccess || p.FirmwareSet == "" || len(p.Firmware) != 2 {
		t.Fatalf("resolve after success: %+v", p)
	}
	// ... and a re-flag of that attribute is a resolve request again, not an explicit one
	f.reflagStatusOnly(t, resolve)
	poll(t, fl)
	tasks = f.tasksOf(t, resolve)
	if len(tasks) != 2 {
		t.Fatalf("resolve re-flag: %d tasks, want 2", len(tasks))
	}
	for _, tk := range tasks {
		if tk.GetInstallMode() != flasherv1.InstallMode_INSTALL_MODE_RESOLVE {
			t.Errorf("task %s install mode = %v, want RESOLVE", tk.GetId(), tk.GetInstallMode())
		}
	}
}

// Every attribute in the namespace gets a status and a reason: invalid ones fail with
// INVALID_REQUEST naming the field; the design's initial resolve-mode "queued" is picked up.
func TestEveryAttributeAnswered(t *testing.T) {
	f := setup(t)
	f.catalog()
	noStatus, stringPriority, badItem, notObject, unknownStatus, designQueued :=
		f.server("nostatus"), f.server("stringprio"), f.server("baditem"), f.server("notobject"), f.server("unknown"), f.server("queued")
	f.sim.SetAttribute(noStatus, fleetflag.Namespace, map[string]any{"requester": "alice", "firmwareSet": "dell-r6515"})
	f.sim.SetAttribute(stringPriority, fleetflag.Namespace, json.RawMessage(`{"status":"","priority":"3"}`))
	f.sim.SetAttribute(badItem, fleetflag.Namespace, json.RawMessage(`{"status":"","Firmware":{"bmc":{"version":"7.00.00.171","force":"yes"}}}`))
	f.sim.SetAttribute(notObject, fleetflag.Namespace, json.RawMessage(`["status",""]`))
	f.sim.SetAttribute(unknownStatus, fleetflag.Namespace, map[string]any{"status": "pending"})
	f.sim.SetAttribute(designQueued, fleetflag.Namespace, json.RawMessage(`{"namespace":"sh.hollow.flasher.task","status":"queued","requester":"requester","worker":"some-worker-name"}`))

	fl := f.flags("flasher-0")
	if _, err := fl.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id    uuid.UUID
		field string
	}{{noStatus, "status"}, {stringPriority, "priority"}, {badItem, "force"}, {unknownStatus, "pending"}} {
		p := f.attr(t, c.id)
		if p.Status != fleetflag.StatusFailed || p.FailureCode != "INVALID_REQUEST" || !strings.Contains(p.Reason, c.field) {
			t.Errorf("%s: status %q code %q reason %q, want failed INVALID_REQUEST naming %s", c.field, p.Status, p.FailureCode, p.Reason, c.field)
		}
	}
	a, _ := f.sim.Attribute(notObject, fleetflag.Namespace)
	var m map[string]any
	if err := json.Unmarshal(a.Data, &m); err != nil || m["status"] != "failed" || m["failureCode"] != "INVALID_REQUEST" || m["reason"] == "" || jsonOf(m["request"]) != `["status",""]` {
		t.Errorf("non-object attribute written as %s (%v), want failed with the original kept", a.Data, err)
	}
	// the design's initial queued attribute is picked up, never marked stale
	p := f.attr(t, designQueued)
	if p.TaskID == "" || p.Status != fleetflag.StatusQueued && p.Status != fleetflag.StatusActive {
		t.Fatalf("design's queued attribute: %+v, want a task", p)
	}
	f.clk.Advance(time.Hour)
	poll(t, fl)
	if p := f.attr(t, designQueued); p.FailureCode == "STALE" || p.Status == fleetflag.StatusFailed {
		t.Errorf("picked-up attribute marked %s %s", p.Status, p.FailureCode)
	}
	for _, id := range []uuid.UUID{noStatus, stringPriority, badItem, notObject, unknownStatus} {
		if n := len(f.tasksOf(t, id)); n != 0 {
			t.Errorf("%d tasks for an invalid request", n)
		}
	}
	// answered attributes are not written again. The picked-up task moves on to ACTIVE (its
	// executor then waits on the gate) whenever the scheduler gets to it: wait for that and let
	// one poll write it back, so the measured poll truly has nothing new.
	f.env.WaitState(t, f.attr(t, designQueued).TaskID, 10*time.Second, task.StateActive)
	poll(t, fl)
	before := f.sim.Stats().ByRoute
	poll(t, fl)
	after := f.sim.Stats().ByRoute
	for route, n := range after {
		if strings.HasPrefix(route, "PUT") && n != before[route] {
			t.Errorf("%s: %d writes in a poll where nothing changed", route, n-before[route])
		}
	}
}

// A re-flag while the server's task runs is kept in the attribute (never overwritten by the
// running task) and started when that task ends.
func TestReflagDuringActiveTaskWaits(t *testing.T) {
	f, id := setupOne(t, map[string]any{"status": "", "firmwareSet": "dell-r6515"})
	fl := f.flags("flasher-0")
	poll(t, fl)
	first := f.attr(t, id).TaskID
	f.env.WaitState(t, first, 10*time.Second, task.StateActive)

	f.clk.Advance(time.Second)
	reflag := map[string]any{"status": "", "requester": "alice", "Firmware": map[string]any{"nic": map[string]any{"version": "22.31.6", "postActions": []string{"resetHost"}}}, "method": "in-band"}
	f.sim.SetAttribute(id, fleetflag.Namespace, reflag)
	for range 2 {
		poll(t, fl)
		a, _ := f.sim.Attribute(id, fleetflag.Namespace)
		if got := operatorFields(t, a.Data); jsonOf(got) != jsonOf(map[string]any{"requester": "alice", "Firmware": reflag["Firmware"], "method": "in-band"}) {
			t.Fatalf("re-flag overwritten while task %s runs: %s", first, a.Data)
		}
		p := f.attr(t, id)
		if p.TaskID != "" || p.Status != fleetflag.StatusQueued || !strings.Contains(p.Reason, first) {
			t.Fatalf("re-flag while %s runs: %+v, want queued and waiting for it", first, p)
		}
	}
	if n := len(f.tasksOf(t, id)); n != 1 {
		t.Fatalf("%d tasks while the first runs, want 1", n)
	}

	close(f.exec.gate)
	f.env.WaitState(t, first, 10*time.Second, task.StateSucceeded)
	poll(t, fl)
	p := f.attr(t, id)
	if p.TaskID == "" || p.TaskID == first {
		t.Fatalf("after the first task ended: %+v, want the re-flag's task", p)
	}
	f.env.WaitState(t, p.TaskID, 10*time.Second, task.StateSucceeded)
	poll(t, fl)
	if p := f.attr(t, id); p.Status != fleetflag.StatusSuccess {
		t.Errorf("re-flag's task ended as %+v", p)
	}
	if v, _ := f.sim.InstalledVersion(id, "nic"); v != "22.31.6" {
		t.Errorf("nic = %s after the re-flag's task", v)
	}
}

// While a task runs and nothing about it changes, polls write nothing.
func TestNoWritesWhileNothingChanges(t *testing.T) {
	f, id := setupOne(t, map[string]any{"status": "", "firmwareSet": "dell-r6515"})
	fl := f.flags("flasher-0")
	poll(t, fl)
	f.env.WaitState(t, f.attr(t, id).TaskID, 10*time.Second, task.StateActive)
	poll(t, fl) // queued → active
	puts := func() int { return f.sim.Stats().ByRoute["PUT /api/v1/servers/{uuid}/attributes/{ns}"] }
	before := puts()
	for range 5 {
		f.clk.Advance(30 * time.Second)
		poll(t, fl)
	}
	if n := puts() - before; n != 0 {
		t.Errorf("%d attribute writes in 5 polls of an unchanged active task, want 0", n)
	}
	if p := f.attr(t, id); p.Status != fleetflag.StatusActive {
		t.Errorf("attribute = %+v", p)
	}
}
