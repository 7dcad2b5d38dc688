package server

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flasher-dev/flasher/internal/firmware"
	"github.com/flasher-dev/flasher/internal/inventory/fleetdb"
	"github.com/flasher-dev/flasher/internal/outofband"
)

// Config is flasher-server's configuration. Every field can be set by flag, YAML file
// (-config) or FLASHER_* environment variable; see `flasher-server -h` and docs/configuration.md.
type Config struct {
	GRPCListen string `flag:"grpc-listen" usage:"gRPC listen address"`
	HTTPListen string `flag:"http-listen" usage:"HTTP listen address for /metrics, /healthz and /readyz"`
	DataDir    string `flag:"data-dir" usage:"directory for the SQLite database and the artifact cache"`
	Database   string `flag:"database" usage:"SQLite database file (default <data-dir>/flasher.db)"`
	Store      string `flag:"store" usage:"task store: empty for SQLite at -database, or postgres://user@host/db for replicas sharing PostgreSQL (the audit trail moves there too)"`

	StorePasswordFile string        `flag:"store-password-file" usage:"file holding the PostgreSQL password, kept out of the -store DSN"`
	LeaseDuration     time.Duration `flag:"lease-duration" usage:"with PostgreSQL: how long a replica's lease on a running task lasts unrenewed (renewed every third); a dead replica's tasks are taken over after it"`
	Inventory         string        `flag:"inventory" usage:"inventory YAML file or directory (empty: no inventory, tasks are not planned)"`

	FleetdbURL          string        `flag:"fleetdb-url" usage:"use fleetdb (serverservice) at this URL as the inventory instead of -inventory"`
	FleetdbTokenFile    string        `flag:"fleetdb-token-file" usage:"file holding the bearer token for fleetdb"`
	FleetdbFlagTasks    bool          `flag:"fleetdb-flag-tasks" usage:"turn servers flagged with the sh.hollow.flasher.task attribute into tasks and write their status back"`
	FleetdbFlagInterval time.Duration `flag:"fleetdb-flag-interval" usage:"how often flagged servers are polled"`
	FleetdbBMCCAFile    string        `flag:"fleetdb-bmc-ca-file" usage:"CA certificate (PEM) that verifies the BMCs of servers from fleetdb (empty: system roots)"`
	FleetdbBMCInsecure  []string      `flag:"fleetdb-bmc-insecure-skip-verify" usage:"fleetdb server UUIDs whose BMC certificates are not verified, or * for every server (comma-separated)"`
	FleetdbSchemes      []string      `flag:"fleetdb-schemes" usage:"version schemes of fleetdb firmware, KEY=SCHEME with KEY vendor/component or component, e.g. dell/bios=semver,drive=opaque (comma-separated)"`
	Worker              string        `flag:"worker" usage:"name of this replica in tasks it runs (default: host name)"`

	MaxActive       int `flag:"max-active" usage:"maximum ACTIVE tasks in this replica"`
	MaxActiveOOB    int `flag:"max-active-out-of-band" usage:"maximum ACTIVE out-of-band tasks (0: max-active)"`
	MaxActiveInBand int `flag:"max-active-in-band" usage:"maximum ACTIVE in-band tasks (0: max-active)"`

	WatchKeep       int           `flag:"watch-keep" usage:"recent changes kept in memory for reconnecting watchers"`
	ChangeRetention int64         `flag:"change-retention" usage:"revisions kept in the change log for resuming watchers"`
	WatchHeartbeat  time.Duration `flag:"watch-heartbeat" usage:"heartbeat interval of idle watch streams"`
	ShutdownTimeout time.Duration `flag:"shutdown-timeout" usage:"how long a graceful shutdown waits for calls and executors"`
	MaxRecvBytes    int           `flag:"max-recv-bytes" usage:"maximum size of a request message"`
	LogLevel        string        `flag:"log-level" usage:"debug, info, warn or error"`
	Insecure        bool          `flag:"insecure" usage:"serve gRPC without TLS (local demo and tests only; logs a warning)"`

	TLSCert     string  `flag:"tls-cert" usage:"server certificate (PEM), from 'flasher-server ca issue-server'"`
	TLSKey      string  `flag:"tls-key" usage:"server key (PEM)"`
	CAFile      string  `flag:"ca-file" usage:"the Flasher CA certificate: agent client certificates must chain to it"`
	DenyList    string  `flag:"deny-list" usage:"revoked certificate serials (default: revoked.txt next to -ca-file)"`
	TokenFile   string  `flag:"token-file" usage:"static client tokens (hashed), from 'flasher-server ca token'"`
	JWTIssuer   string  `flag:"jwt-issuer" usage:"OIDC issuer whose JWTs are accepted"`
	JWTAudience string  `flag:"jwt-audience" usage:"audience the JWTs must name"`
	JWKSURL     string  `flag:"jwks-url" usage:"JWKS of the OIDC issuer"`
	JWKSFile    string  `flag:"jwks-file" usage:"JWKS file instead of -jwks-url"`
	AuditDB     string  `flag:"audit-db" usage:"audit log database (default <data-dir>/audit.db)"`
	CreateRate  float64 `flag:"create-rate" usage:"CreateTask calls per second allowed per identity (per connection without client authentication)"`
	CreateBurst int     `flag:"create-burst" usage:"CreateTask burst allowed per identity (per connection without client authentication)"`

	ArtifactDir      string   `flag:"artifact-dir" usage:"firmware image cache (default <data-dir>/artifacts)"`
	ArtifactMaxBytes int64    `flag:"artifact-max-bytes" usage:"size cap of the image cache; least recently used images not in use are evicted"`
	ArtifactSchemes  []string `flag:"artifact-schemes" usage:"URL schemes images may be downloaded with (comma-separated)"`
	ArtifactHosts    []string `flag:"artifact-hosts" usage:"hosts images may be downloaded from: names, *.domain, host:port, IPs or CIDRs (comma-separated; empty denies all)"`

	ObservationMaxAge  time.Duration `flag:"observation-max-age" usage:"observations older than this are stale in compliance, and the sweep re-collects them (0: never stale)"`
	Sweep              bool          `flag:"sweep" usage:"collect, through the BMC, every server with a component unobserved or older than -observation-max-age (off by default)"`
	CollectConcurrency int           `flag:"collect-concurrency" usage:"servers a collect or the sweep reads at once"`

	BMCPollInterval    time.Duration `flag:"bmc-poll-interval" usage:"first wait between two polls of a BMC's firmware job or version (real BMCs: seconds; simulators: less)"`
	BMCMaxPollInterval time.Duration `flag:"bmc-max-poll-interval" usage:"polls of an unchanged job grow by half up to this (a few requests a minute per BMC)"`
	BMCConnectTimeout  time.Duration `flag:"bmc-connect-timeout" usage:"bound of one BMC login"`
	BMCCallTimeout     time.Duration `flag:"bmc-call-timeout" usage:"bound of one ordinary BMC call (power, job status, reset)"`
	BMCInventoryTime   time.Duration `flag:"bmc-inventory-timeout" usage:"bound of one BMC inventory read"`
	BMCUploadTimeout   time.Duration `flag:"bmc-upload-timeout" usage:"bound of one firmware upload"`
	BMCInstallTimeout  time.Duration `flag:"bmc-install-timeout" usage:"bound of the wait for one BMC job, host power cycle included"`
	BMCVerifyTimeout   time.Duration `flag:"bmc-verify-timeout" usage:"bound of the wait for the new version once the job ended"`
	BMCRebootTimeout   time.Duration `flag:"bmc-reboot-timeout" usage:"bound of the wait for a BMC to come back after its update or a reset"`
	BMCUnknownState    time.Duration `flag:"bmc-unknown-state-timeout" usage:"a job in a state Flasher does not know fails after this"`
	BMCLoginAttempts   int           `flag:"bmc-login-attempts" usage:"logins per connect (transient failures only)"`
	BMCUploadAttempts  int           `flag:"bmc-upload-attempts" usage:"uploads per component (lost connections only; the BMC's job queue is read first)"`
	BMCPollErrors      int           `flag:"bmc-poll-errors" usage:"consecutive failed job polls tolerated"`
	BMCReadyReads      int           `flag:"bmc-ready-reads" usage:"successful reads in a row that make a rebooted BMC ready"`
	BMCBackoff         time.Duration `flag:"bmc-backoff" usage:"first wait between BMC retries (doubles, jittered)"`
	BMCMaxBackoff      time.Duration `flag:"bmc-max-backoff" usage:"longest wait between BMC retries"`
	BMCOverrides       []string      `flag:"bmc-overrides" usage:"per vendor/component bounds, VENDOR[/COMPONENT]:FIELD=VALUE;... e.g. dell/BIOS:install=2h;max-poll-interval=1m (comma-separated; FIELD is a bmc-* flag name without bmc- and -timeout)"`

	OTLPEndpoint string `flag:"otlp-endpoint" usage:"send OpenTelemetry traces (a span per call, task, step, BMC and agent call) to this OTLP/gRPC collector, host:port (empty: tracing off)"`
	OTLPInsecure bool   `flag:"otlp-insecure" usage:"talk to the OTLP collector without TLS (a collector on the same host)"`

	AllowUnauthenticatedAgents bool          `flag:"allow-unauthenticated-agents" usage:"INSECURE: trust the x-flasher-server-id header of agents instead of a client certificate"`
	AgentConnectTimeout        time.Duration `flag:"agent-connect-timeout" usage:"how long an in-band task waits for its agent before failing AGENT_UNAVAILABLE"`
	AgentLostTimeout           time.Duration `flag:"agent-lost-timeout" usage:"how long an agent may be away mid-task before the task fails AGENT_LOST"`
	AgentHeartbeat             time.Duration `flag:"agent-heartbeat" usage:"heartbeat interval agents are told to keep; a stream silent for three intervals is closed"`

	EnrollCADir        string        `flag:"enroll-ca-dir" usage:"Flasher CA directory (ca.crt, ca.key): serve AgentService.Enroll, which issues agent certificates for join tokens ('flasher-server ca join-token') and renews them; sets -ca-file when empty"`
	EnrollCertValidity time.Duration `flag:"enroll-cert-validity" usage:"validity of the agent certificates Enroll issues; agents renew at two thirds of it"`
}

// DefaultConfig is the configuration flags, file and environment start from.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		GRPCListen:      "127.0.0.1:9090",
		HTTPListen:      "127.0.0.1:9091",
		DataDir:         "var/flasher",
		Worker:          host,
		LeaseDuration:   15 * time.Second,
		MaxActive:       256,
		WatchKeep:       4096,
		ChangeRetention: 100000,
		WatchHeartbeat:  30 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		MaxRecvBytes:    4 << 20,
		LogLevel:        "info",
		CreateRate:      50,
		CreateBurst:     200,

		FleetdbFlagInterval: 30 * time.Second,
		ArtifactMaxBytes:    20 << 30,
		ArtifactSchemes:     []string{"https"},
		BMCPollInterval:     10 * time.Second,
		CollectConcurrency:  16,
		AgentConnectTimeout: 5 * time.Minute,
		AgentLostTimeout:    10 * time.Minute,
		AgentHeartbeat:      10 * time.Second,
		EnrollCertValidity:  24 * time.Hour,
	}
}

// bmcPolicy is the out-of-band executor's bounds from the bmc-* settings; zero values keep the
// executor's defaults (docs/outofband.md).
func (c Config) bmcPolicy() (outofband.Policy, error) {
	p := outofband.Policy{Defaults: outofband.Timeouts{
		Connect: c.BMCConnectTimeout, Call: c.BMCCallTimeout, Inventory: c.BMCInventoryTime, Upload: c.BMCUploadTimeout,
		Install: c.BMCInstallTimeout, PollInterval: c.BMCPollInterval, MaxPollInterval: c.BMCMaxPollInterval,
		UnknownState: c.BMCUnknownState, Verify: c.BMCVerifyTimeout, BMCReboot: c.BMCRebootTimeout,
		LoginAttempts: c.BMCLoginAttempts, UploadAttempts: c.BMCUploadAttempts, PollErrors: c.BMCPollErrors,
		ReadyReads: c.BMCReadyReads, Backoff: c.BMCBackoff, MaxBackoff: c.BMCMaxBackoff,
	}}
	for _, s := range c.BMCOverrides {
		o, err := outofband.ParseOverride(s)
		if err != nil {
			return outofband.Policy{}, fmt.Errorf("-bmc-overrides: %w", err)
		}
		p.Overrides = append(p.Overrides, o)
	}
	return p, nil
}

// fleetdbTLSAndSchemes turns the -fleetdb-bmc-* and -fleetdb-schemes settings into the fleetdb
// source's, refusing an unknown scheme or a malformed entry.
func (c Config) fleetdbTLSAndSchemes() (fleetdb.BMCTLS, map[string]string, error) {
	tlsCfg := fleetdb.BMCTLS{CAFile: c.FleetdbBMCCAFile}
	for _, id := range c.FleetdbBMCInsecure {
		switch id = strings.TrimSpace(id); {
		case id == "*":
			tlsCfg.InsecureSkipVerify = true
		case uuid.Validate(id) == nil:
			tlsCfg.InsecureServers = append(tlsCfg.InsecureServers, id)
		default:
			return fleetdb.BMCTLS{}, nil, fmt.Errorf("-fleetdb-bmc-insecure-skip-verify: %q is neither a server UUID nor *", id)
		}
	}
	var schemes map[string]string
	for _, kv := range c.FleetdbSchemes {
		key, name, ok := strings.Cut(kv, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" || strings.Count(key, "/") > 1 {
			return fleetdb.BMCTLS{}, nil, fmt.Errorf("-fleetdb-schemes: %q is not KEY=SCHEME (KEY vendor/component or component)", kv)
		}
		sc, err := firmware.ParseScheme(name)
		if err != nil {
			return fleetdb.BMCTLS{}, nil, fmt.Errorf("-fleetdb-schemes %q: %w", kv, err)
		}
		if vendor, component, ok := strings.Cut(key, "/"); ok {
			key = firmware.NormalizeVendor(vendor) + "/" + component
		}
		if schemes == nil {
			schemes = map[string]string{}
		}
		schemes[key] = string(sc)
	}
	return tlsCfg, schemes, nil
}
