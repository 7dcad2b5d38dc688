package api

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/task"
)

var checksumRE = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|md5:[0-9a-f]{32})$`)

// FuzzCreateTaskValidation feeds arbitrary wire bytes through protovalidate and, for every
// request it accepts, checks that the domain task built from it holds the invariants the rest
// of Flasher relies on.
func FuzzCreateTaskValidation(f *testing.F) {
	seed := &flasherv1.CreateTaskRequest{RequestId: "r-1", Task: &flasherv1.TaskSpec{
		ServerId: "srv-1", Method: flasherv1.Method_METHOD_OUT_OF_BAND, Priority: 3,
		Install: &flasherv1.TaskSpec_Firmware{Firmware: &flasherv1.FirmwareList{Items: []*flasherv1.Firmware{{
			Component: "BIOS", Version: "2.19.1", Url: "https://x.example/b.bin",
			Checksum:   "sha256:" + string(make([]byte, 0)) + "0000000000000000000000000000000000000000000000000000000000000000",
			PreActions: []flasherv1.Action{flasherv1.Action_ACTION_RESET_BMC},
		}}}},
	}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	b, _ = proto.Marshal(&flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{ServerId: "s", Method: 2, Install: &flasherv1.TaskSpec_Resolve{Resolve: &flasherv1.ResolveInstall{Force: true}}}})
	f.Add(b)
	b, _ = proto.Marshal(&flasherv1.CreateTaskRequest{Task: &flasherv1.TaskSpec{ServerId: "s", Method: 1, Priority: 9, Install: &flasherv1.TaskSpec_FirmwareSet{FirmwareSet: &flasherv1.FirmwareSetInstall{FirmwareSet: "set"}}}})
	f.Add(b)
	v, err := protovalidate.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req flasherv1.CreateTaskRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		if v.Validate(&req) != nil {
			return
		}
		tk := SpecFromPB(req.GetTask())
		if tk.ServerID == "" || !tk.Method.Valid() || !tk.Mode.Valid() || tk.Priority < 0 || tk.Priority > task.MaxPriority {
			t.Fatalf("validated request gave an invalid task: %+v", tk)
		}
		if tk.Mode == task.ModeFirmware && len(tk.Firmware) == 0 {
			t.Fatal("validated firmware mode with no firmware")
		}
		if tk.Mode == task.ModeFirmwareSet && tk.FirmwareSet == "" {
			t.Fatal("validated set mode with no set")
		}
		for _, fw := range tk.Firmware {
			if fw.Component == "" || fw.Version == "" {
				t.Fatalf("validated firmware without component or version: %+v", fw)
			}
			if fw.URL != "" && !checksumRE.MatchString(fw.Checksum) {
				t.Fatalf("validated image url without a valid checksum: %+v", fw)
			}
			for _, a := range append(append([]task.Action(nil), fw.PreActions...), fw.PostActions...) {
				if !a.Valid() {
					t.Fatalf("validated unknown action %q", a)
				}
			}
		}
	})
}

// FuzzTaskConversion checks that a task survives the store's JSON encoding unchanged and that
// its wire form carries every field.
func FuzzTaskConversion(f *testing.F) {
	f.Add("id-1", "srv", "BIOS", "1.2.3", "sha256:00", "msg", int64(7), 2, 55, true)
	f.Add("", "", "", "", "", "", int64(0), 0, 0, false)
	f.Fuzz(func(t *testing.T, id, server, comp, version, checksum, msg string, rev int64, prio, pct int, force bool) {
		now := time.Unix(1700000000, 123).UTC()
		in := &task.Task{
			ID: id, ServerID: server, Method: task.MethodInBand, Priority: prio, Mode: task.ModeFirmware,
			Requester: msg, Force: force, Revision: rev, State: task.StateActive,
			Firmware: []task.Firmware{{Component: comp, Version: version, Checksum: checksum, Force: force,
				PreActions: []task.Action{task.ActionResetBMC}}},
			Plan:      &task.Plan{Steps: []task.Step{{Component: comp, ToVersion: version, Checksum: checksum, Method: task.MethodInBand}}},
			Progress:  []task.Progress{{Component: comp, State: task.StepRunning, Percent: pct, Message: msg, UpdatedAt: now}},
			Failure:   &task.Failure{Code: "X", Component: comp, Message: msg},
			CreatedAt: now, UpdatedAt: now, StartedAt: now,
		}
		data, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out task.Task
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(in, &out); diff != "" && !invalidUTF8(id, server, comp, version, checksum, msg) {
			t.Fatalf("JSON round trip changed the task (-in +out):\n%s", diff)
		}
		pb := TaskToPB(in)
		wire, err := proto.Marshal(pb)
		if err != nil {
			if invalidUTF8(id, server, comp, version, checksum, msg) {
				return // proto strings must be UTF-8; the API validates ids before they get here
			}
			t.Fatal(err)
		}
		var back flasherv1.Task
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatal(err)
		}
		if back.GetId() != id || back.GetServerId() != server || back.GetRevision() != rev ||
			back.GetFirmware()[0].GetVersion() != version || back.GetPlan().GetSteps()[0].GetChecksum() != checksum ||
			back.GetProgress()[0].GetMessage() != msg || back.GetFailure().GetMessage() != msg ||
			back.GetMethod() != flasherv1.Method_METHOD_IN_BAND || back.GetState() != flasherv1.TaskState_TASK_STATE_ACTIVE ||
			back.GetCreateTime().AsTime() != now {
			t.Fatalf("wire form lost a field: %v", &back)
		}
	})
}

func invalidUTF8(ss ...string) bool {
	for _, s := range ss {
		if !json.Valid([]byte(`"` + s + `"`)) {
			return true
		}
		for _, r := range s {
			if r == '\uFFFD' {
				return true
			}
		}
	}
	return false
}
