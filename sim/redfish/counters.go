package redfish

// Counters are what a BMC has seen since it was created. They survive BMC reboots (they are
// the simulator's bookkeeping, not the BMC's) but not simulator restarts.
type Counters struct {
	Requests      int `json:"requests"`
	Logins        int `json:"logins"`
	LoginFailures int `json:"login_failures"`
	Logouts       int `json:"logouts"`
	// Uploads counts firmware upload requests that reached the BMC, accepted or not.
	Uploads int `json:"uploads"`
	// UploadsRejected counts uploads answered with an error status.
	UploadsRejected int `json:"uploads_rejected"`
	// Pulls counts SimpleUpdate requests (the BMC downloads the image itself); each is also
	// counted in Uploads.
	Pulls int `json:"pulls,omitempty"`
	// PowerActions counts accepted ComputerSystem.Reset requests.
	PowerActions int `json:"power_actions"`
	// HostBoots counts host power-ons and restarts (what runs OnReset jobs).
	HostBoots int `json:"host_boots"`
	// BMCResets counts accepted Manager.Reset requests.
	BMCResets int `json:"bmc_resets"`
	// BMCReboots counts BMC reboots from any cause (reset or BMC firmware update).
	BMCReboots int `json:"bmc_reboots"`
	// JobsDeleted counts unfinished firmware jobs deleted through the Dell job queue.
	JobsDeleted int `json:"jobs_deleted"`
	// Components holds per-component-slug install counters.
	Components map[string]ComponentCounters `json:"components,omitempty"`
}

// ComponentCounters are the install counters of one component slug.
type ComponentCounters struct {
	// Uploads counts uploaded images naming this component (valid images only).
	Uploads int `json:"uploads"`
	// InstallsStarted counts install tasks created for the component.
	InstallsStarted int `json:"installs_started"`
	// InstallsCompleted counts install tasks that ended Completed (whether or not the
	// version changed: see KindUnchanged).
	InstallsCompleted int `json:"installs_completed"`
	// InstallsFailed counts install tasks that ended Exception or Killed.
	InstallsFailed int `json:"installs_failed"`
	// VersionChanges counts times the installed version actually changed.
	VersionChanges int `json:"version_changes"`
}

func (c *Counters) component(slug string, f func(*ComponentCounters)) {
	if c.Components == nil {
		c.Components = make(map[string]ComponentCounters, 2)
	}
	cc := c.Components[slug]
	f(&cc)
	c.Components[slug] = cc
}

func (c Counters) clone() Counters {
	out := c
	if c.Components != nil {
		out.Components = make(map[string]ComponentCounters, len(c.Components))
		for k, v := range c.Components {
			out.Components[k] = v
		}
	}
	return out
}
