package task

// Code is a stable, machine-readable failure or refusal reason: the code of a task's Failure and
// of a planner refusal. Every code Flasher can produce is in Catalogue, with its meaning;
// docs/operations.md lists them all (a test keeps the two in step).
type Code string

// Effect says what a failure with a given code may have left on the hardware, counting only the
// step that failed: steps verified before it stand in every case, and the failure message says
// which ones they were.
type Effect string

// Effects.
const (
	// EffectNone: the failing step never reached the hardware (refused, or stopped before upload).
	EffectNone Effect = "none"
	// EffectPossible: the failing step may have changed the hardware; the message says what was
	// observed, or that it could not be re-read.
	EffectPossible Effect = "possible"
	// EffectChanged: the hardware did change; what failed came after the change.
	EffectChanged Effect = "changed"
)

// Planner refusals: PlanTask and CreateTask answer them before anything is queued, and a task
// whose re-plan at start is refused fails PLAN_REFUSED naming one of them.
const (
	CodeInvalidRequest      Code = "INVALID_REQUEST"
	CodeDependencyCycle     Code = "DEPENDENCY_CYCLE"
	CodeUnsatisfiable       Code = "UNSATISFIABLE"
	CodeConstraintViolated  Code = "CONSTRAINT_VIOLATED"
	CodeImageMissing        Code = "IMAGE_MISSING"
	CodeChecksumMissing     Code = "CHECKSUM_MISSING"
	CodeUnorderableVersion  Code = "UNORDERABLE_VERSION"
	CodeDowngradeRefused    Code = "DOWNGRADE_REFUSED"
	CodeNoMatchingSet       Code = "NO_MATCHING_SET"
	CodeAmbiguousSet        Code = "AMBIGUOUS_SET"
	CodeSetNotFound         Code = "SET_NOT_FOUND"
	CodeServerModelMismatch Code = "SERVER_MODEL_MISMATCH"
	CodeComponentNotFound   Code = "COMPONENT_NOT_FOUND"
	CodeAmbiguousFirmware   Code = "AMBIGUOUS_FIRMWARE"
	CodeUnsupportedModel    Code = "UNSUPPORTED_MODEL"
)

// Failures of a running task, out-of-band and in-band.
const (
	CodePlanRefused        Code = "PLAN_REFUSED"
	CodePlanDiverged       Code = "PLAN_DIVERGED"
	CodeInventoryError     Code = "INVENTORY_ERROR"
	CodeImageUnavailable   Code = "IMAGE_UNAVAILABLE"
	CodeImageTooLarge      Code = "IMAGE_TOO_LARGE"
	CodeChecksumMismatch   Code = "CHECKSUM_MISMATCH"
	CodeBMCUnreachable     Code = "BMC_UNREACHABLE"
	CodeBMCTLSFailed       Code = "BMC_TLS_FAILED"
	CodeLoginFailed        Code = "LOGIN_FAILED"
	CodeBMCLicenseRequired Code = "BMC_LICENSE_REQUIRED"
	CodeBMCBusy            Code = "BMC_BUSY"
	CodeUnsupported        Code = "UNSUPPORTED"
	CodeUploadRejected     Code = "UPLOAD_REJECTED"
	CodeInstallFailed      Code = "INSTALL_FAILED"
	CodeInstallInterrupted Code = "INSTALL_INTERRUPTED"
	CodeTimeout            Code = "TIMEOUT"
	CodeJobPending         Code = "JOB_PENDING"
	CodeVerifyMismatch     Code = "VERIFY_MISMATCH"
	CodeVerifyFailed       Code = "VERIFY_FAILED"
	CodePowerFailed        Code = "POWER_FAILED"
	CodeBMCResetFailed     Code = "BMC_RESET_FAILED"
	CodeRebootFailed       Code = "REBOOT_FAILED"
	CodeAgentUnavailable   Code = "AGENT_UNAVAILABLE"
	CodeAgentLost          Code = "AGENT_LOST"
	CodeAgentProtocol      Code = "AGENT_PROTOCOL"
	CodeAgentState         Code = "AGENT_STATE"
	CodeAssignmentChanged  Code = "ASSIGNMENT_CHANGED"
	CodeAssignmentUnknown  Code = "ASSIGNMENT_UNKNOWN"
	CodeUploadUnknown      Code = "UPLOAD_UNKNOWN"
	CodeWriteBackFailed    Code = "WRITE_BACK_FAILED"
	CodeInternal           Code = "INTERNAL"
)

// CodeInfo describes one code of the catalogue.
type CodeInfo struct {
	Code Code
	// Meaning says in one line what happened.
	Meaning string
	// Effect says whether the failing step may have changed the hardware.
	Effect Effect
}

// Catalogue lists every failure and refusal code, planner refusals first.
var Catalogue = []CodeInfo{
	{CodeInvalidRequest, "the request is malformed (unknown mode or method, an item without component or version, a URL without a checksum, an invalid attribute field)", EffectNone},
	{CodeDependencyCycle, "requirements order steps in a cycle, or the catalog holds a same-target cycle", EffectNone},
	{CodeUnsatisfiable, "two requirements on one component admit no known version together", EffectNone},
	{CodeConstraintViolated, "some intermediate or final state breaks a requirement", EffectNone},
	{CodeImageMissing, "no downloadable image (catalog record or explicit URL) exists for a wanted version", EffectNone},
	{CodeChecksumMissing, "the image for a wanted version has no checksum Flasher can verify (none, or an unknown algorithm)", EffectNone},
	{CodeUnorderableVersion, "an ordering was needed between versions that have none (opaque, unparseable or conflicting schemes)", EffectNone},
	{CodeDowngradeRefused, "a step would lower a version and force was not given", EffectNone},
	{CodeNoMatchingSet, "resolve mode found no firmware set labelled for the server", EffectNone},
	{CodeAmbiguousSet, "resolve mode found several sets, or a set name is not unique", EffectNone},
	{CodeSetNotFound, "the named firmware set does not exist", EffectNone},
	{CodeServerModelMismatch, "the named set is labelled for another vendor or model", EffectNone},
	{CodeComponentNotFound, "an explicit item names a component (or serial) the server lacks", EffectNone},
	{CodeAmbiguousFirmware, "more than one image or catalog record would apply to one component instance", EffectNone},
	{CodeUnsupportedModel, "Flasher has no install path for this server's vendor or model", EffectNone},

	{CodePlanRefused, "the re-plan against live versions at start or resume was refused (the message names the planner code)", EffectNone},
	{CodePlanDiverged, "the re-plan against live versions dropped or changed a step the operator was shown; both plans are in the message", EffectNone},
	{CodeInventoryError, "the server's record, the catalog or the BMC's firmware inventory could not be read", EffectNone},
	{CodeImageUnavailable, "an image could not be fetched into the artifact cache", EffectNone},
	{CodeImageTooLarge, "the image is larger than the BMC or the artifact cache accepts", EffectNone},
	{CodeChecksumMismatch, "the fetched image did not match its checksum; it was never uploaded", EffectNone},
	{CodeBMCUnreachable, "no connection to the BMC, or it stopped answering", EffectPossible},
	{CodeBMCTLSFailed, "the BMC's TLS certificate did not verify", EffectNone},
	{CodeLoginFailed, "the BMC refused the credentials", EffectPossible},
	{CodeBMCLicenseRequired, "the BMC needs a licence to update this component remotely", EffectNone},
	{CodeBMCBusy, "the BMC has another update job running or scheduled, so no upload was started", EffectNone},
	{CodeUnsupported, "the BMC cannot update that component out-of-band, or an action is unknown", EffectNone},
	{CodeUploadRejected, "the BMC refused the image", EffectNone},
	{CodeInstallFailed, "the BMC or the vendor tool reported that the install failed", EffectPossible},
	{CodeInstallInterrupted, "the agent stopped while a vendor tool was running", EffectPossible},
	{CodeTimeout, "a step exceeded its bound", EffectPossible},
	{CodeJobPending, "an update job is left scheduled on the BMC and may apply at the next host boot", EffectPossible},
	{CodeVerifyMismatch, "the install ended but the component reports another version", EffectPossible},
	{CodeVerifyFailed, "the agent could not confirm the new version after the install", EffectPossible},
	{CodePowerFailed, "a host power action failed", EffectPossible},
	{CodeBMCResetFailed, "a BMC reset failed", EffectPossible},
	{CodeRebootFailed, "the agent could not reboot the host after an install that needs one", EffectChanged},
	{CodeAgentUnavailable, "no agent was connected for the server in time", EffectNone},
	{CodeAgentLost, "the agent went away mid-task and did not come back in time", EffectPossible},
	{CodeAgentProtocol, "the agent's answer made no sense (a result for steps it was not given)", EffectPossible},
	{CodeAgentState, "the agent could not read or write its own state directory", EffectNone},
	{CodeAssignmentChanged, "the agent holds a different assignment recorded for this task", EffectNone},
	{CodeAssignmentUnknown, "a restart left it unknown whether work was handed out, and the hardware no longer matches the plan; nothing is started again", EffectPossible},
	{CodeUploadUnknown, "a restart or a lost reply left it unknown whether the BMC accepted an upload, and its job queue cannot tell; nothing is uploaded again", EffectPossible},
	{CodeWriteBackFailed, "the firmware was verified but recording the new version in the inventory failed", EffectChanged},
	{CodeInternal, "an error Flasher does not classify; the message has it", EffectPossible},
}

// Info returns the catalogue entry of c, and false when c is not in the catalogue.
func (c Code) Info() (CodeInfo, bool) {
	for _, i := range Catalogue {
		if i.Code == c {
			return i, true
		}
	}
	return CodeInfo{}, false
}
