package redfish

// XCC is a Lenovo XClarity Controller (ThinkSystem), after Lenovo's XCC Redfish API
// documentation: Systems/1, Managers/1, Chassis/1; UpdateService with MultipartHttpPushUri
// "/mfwupdate" (outside /redfish/v1) and HttpPushUri "/fwupdate", apply times Immediate and
// OnReset (HttpPushUriOptions), SimpleUpdate over HTTP(S); the push answers 202 with the Task in
// the body, 413 for an image over MaxImageSizeBytes, and 503 while another push runs.
const XCC Personality = "xcc"

var xccIDs = ids{
	system: "1", manager: "1", chassis: "1", storage: "RAID_Slot1",
	uploadURI:         "/mfwupdate",
	managerResetTypes: []string{"GracefulRestart", "ForceRestart"},
	managerModel:      "Lenovo XClarity Controller",
}

var xccUpdate = stdUpdate{
	pushURI: "/mfwupdate", httpPushURI: "/fwupdate",
	applyTimes: []string{"Immediate", "OnReset"},
	protocols:  []string{"HTTP", "HTTPS", "SFTP", "TFTP"},
	taskOnPull: true, defaultMax: 128 << 20,
}
