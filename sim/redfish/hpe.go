package redfish

import "time"

// HPE is an HPE iLO 5 (ProLiant Gen10), after HPE's iLO Redfish documentation: Systems/1,
// Managers/1, Chassis/1; UpdateService schema 1.1 with HttpPushUri "/cgi-bin/uploadFile" (HPE's
// own form upload, which Flasher does not use) and SimpleUpdate over HTTP(S). Its quirk:
// SimpleUpdate answers 200 with an iLO message and creates no Redfish Task; the flash is followed
// in UpdateService Oem.Hpe (State Idle, Uploading, Progressing, Verifying, Writing, Updating,
// Complete, Error; FlashProgressPercent; Result). An iLO image resets iLO when written, after
// which State is Idle again (the handle is lost: the installed version decides). No
// MaxImageSizeBytes is advertised.
const HPE Personality = "hpe"

var hpeIDs = ids{
	system: "1", manager: "1", chassis: "1", storage: "DE00A000",
	uploadURI:         "/cgi-bin/uploadFile",
	managerResetTypes: []string{"GracefulRestart", "ForceRestart"},
	managerModel:      "iLO 5",
}

var hpeUpdate = stdUpdate{
	httpPushURI: "/cgi-bin/uploadFile",
	protocols:   []string{"HTTP", "HTTPS"},
}

// hpeStateLocked is UpdateService Oem.Hpe as iLO 5 reports the flash it runs.
func (b *BMC) hpeStateLocked(now time.Time) map[string]any {
	t := b.hpeTask
	if t == nil || b.findTaskLocked(t.id) == nil {
		return map[string]any{"State": "Idle", "FlashProgressPercent": 0}
	}
	v := b.viewAt(t, now)
	switch v.taskState {
	case "Completed":
		return map[string]any{"State": "Complete", "FlashProgressPercent": 100, "Result": map[string]any{"MessageId": "iLO.2.14.FlashComplete"}}
	case "Exception", "Killed":
		return map[string]any{"State": "Error", "FlashProgressPercent": v.percent,
			"Result": map[string]any{"MessageId": "iLO.2.14.UpdateFailed", "MessageArgs": []string{v.message}}}
	}
	state := "Progressing"
	if v.percent >= 50 {
		state = "Writing"
	}
	return map[string]any{"State": state, "FlashProgressPercent": v.percent}
}
