package outofband_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
	"github.com/flasher-dev/flasher/sim/redfish"
)

// TestFaults: every simulator fault ends the task with the right code, within the deadline
// that governs it, and nothing is uploaded when the image cannot be trusted.
func TestFaults(t *testing.T) {
	to := testTimeouts
	// The bound under test is the configured timeout; slack absorbs the machine, not retries: on
	// a loaded 2-core machine thirteen parallel BMCs and task environments start slowly (3 s was
	// once missed by half a second). An unbounded retry would still overshoot by far more.
	slack := 8 * time.Second
	tests := []struct {
		name     string
		op       redfish.Op
		fault    redfish.Fault
		image    string
		password string // wrong credentials in the inventory
		dead     bool   // the inventory points at a port nobody listens on
		code     task.Code
		contains string
		within   time.Duration
		uploads  int // upload requests that reached the BMC
	}{
		{name: "wrong password", password: "wrong", code: task.CodeLoginFailed, within: to.Connect + slack},
		{name: "login answers 500", op: redfish.OpLogin, fault: redfish.Fault{Kind: redfish.KindStatus, Status: 500},
			code: task.CodeLoginFailed, within: time.Duration(to.LoginAttempts)*to.Connect + slack},
		{name: "login hangs", op: redfish.OpLogin, fault: redfish.Fault{Kind: redfish.KindHang},
			code: task.CodeTimeout, within: time.Duration(to.LoginAttempts)*(to.Connect+to.Connect/4) + slack},
		{name: "BMC unreachable", dead: true, code: task.CodeBMCUnreachable, within: to.Connect + slack},
		{name: "upload rejected", op: redfish.OpUpload, fault: redfish.Fault{Kind: redfish.KindStatus, Status: 500, Message: "Internal flash error"},
			code: task.CodeUploadRejected, contains: "Internal flash error", within: to.Upload + slack, uploads: 1},
		{name: "upload hangs", op: redfish.OpUpload, fault: redfish.Fault{Kind: redfish.KindHang},
			// A hung request is held before the simulator counts it as an upload.
			code: task.CodeTimeout, within: to.Upload + slack},
		{name: "install fails", op: redfish.OpInstall, fault: redfish.Fault{Kind: redfish.KindException, Message: "Flash write failed at 0x3f000"},
			code: task.CodeInstallFailed, contains: "Flash write failed at 0x3f000", within: to.Install + slack, uploads: 1},
		{name: "install stuck", op: redfish.OpInstall, fault: redfish.Fault{Kind: redfish.KindStuck},
			code: task.CodeTimeout, within: to.Install + slack, uploads: 1},
		{name: "install leaves the version", op: redfish.OpInstall, fault: redfish.Fault{Kind: redfish.KindUnchanged},
			code: task.CodeVerifyMismatch, contains: "reports 2.11.4", within: to.Install + to.Verify + slack, uploads: 1},
		{name: "leftover scheduled job", op: redfish.OpQueue, fault: redfish.Fault{Kind: redfish.KindLeftover},
			code: task.CodeUploadRejected, within: to.Upload + slack},
		{name: "power cycle refused", op: redfish.OpPower, fault: redfish.Fault{Kind: redfish.KindStatus, Status: 500},
			code: task.CodePowerFailed, within: to.Install + slack, uploads: 1},
		{name: "checksum mismatch", image: "dell-bios-bad", code: task.CodeChecksumMismatch, within: slack},
		{name: "image missing", image: "dell-bios-gone", code: task.CodeImageUnavailable, within: slack},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := dellConfig("dell-fault")
			b := startBMC(t, cfg)
			if tc.op != "" {
				if err := b.SetFault(tc.op, tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			srv := server{id: "srv-1", cfg: cfg, bmc: b, password: tc.password}
			if tc.dead {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv.addr = l.Addr().String()
				l.Close()
			}
			f := newFixture(t, []server{srv}, dellImages, nil)
			img := tc.image
			if img == "" {
				img = "dell-bios-2.19.1"
			}
			began := time.Now()
			id := f.create(firmwareSpec("srv-1", f.item(img, false)))
			tk := f.env.WaitState(t, id, tc.within+10*time.Second, task.StateFailed, task.StateSucceeded)
			took := time.Since(began)
			if tk.State != task.StateFailed || tk.Failure == nil {
				t.Fatalf("state %s, want FAILED %s", tk.State, tc.code)
			}
			if tk.Failure.Code != tc.code || !strings.Contains(tk.Failure.Message, tc.contains) {
				t.Errorf("failure %+v, want %s mentioning %q", tk.Failure, tc.code, tc.contains)
			}
			if took > tc.within {
				t.Errorf("failed after %s, want within %s", took, tc.within)
			}
			if n := b.Counters().Uploads; n != tc.uploads {
				t.Errorf("uploads that reached the BMC: %d, want %d", n, tc.uploads)
			}
			if tk.Failure.Code != task.CodeLoginFailed && tk.Failure.Code != task.CodeBMCUnreachable &&
				tk.Failure.Code != task.CodeTimeout && b.InstalledVersion("BIOS") == "2.11.4" &&
				!strings.Contains(tk.Failure.Message, "nothing was changed") {
				t.Errorf("failure message does not say nothing changed: %q", tk.Failure.Message)
			}
		})
	}
}
