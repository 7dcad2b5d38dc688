// Command flasher-agent runs on every host (DaemonSet or systemd unit): it holds one stream to
// the Flasher server, applies the in-band firmware tasks of its host with ironlib and reports
// progress. This file only parses the configuration and wires internal/agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"

	"github.com/flasher-dev/flasher/internal/agent"
	"github.com/flasher-dev/flasher/internal/config"
)

// Config is flasher-agent's configuration, resolved in config.Precedence like every binary's.
type Config struct {
	Server   string `flag:"server" usage:"address of the Flasher server (host:port)"`
	CAFile   string `flag:"tls-ca" usage:"CA bundle that signed the server's certificate"`
	CertFile string `flag:"tls-cert" usage:"the agent's client certificate (names its server id)"`
	KeyFile  string `flag:"tls-key" usage:"the client certificate's key"`
	// Insecure disables TLS; only for servers started with unauthenticated agents allowed.
	Insecure  bool          `flag:"insecure" usage:"plaintext connection and identity by header (INSECURE: test labs only)"`
	ServerID  string        `flag:"server-id" usage:"this host's server id: enrolled for with -join-token-file (in Kubernetes, the node name), or sent as a header in insecure mode"`
	JoinToken string        `flag:"join-token-file" usage:"file holding a join token ('flasher-server ca join-token'): without a valid -tls-cert the agent makes its key and enrolls, writing -tls-cert and -tls-key"`
	StateDir  string        `flag:"state-dir" usage:"directory for task records and downloaded images"`
	Reboot    []string      `flag:"reboot-command" usage:"command (comma-separated argv) that reboots the host; empty: never reboot"`
	Heartbeat time.Duration `flag:"heartbeat" usage:"heartbeat interval until the server names one"`
	LogLevel  string        `flag:"log-level" usage:"debug, info, warn or error"`
}

func defaultConfig() Config {
	return Config{
		Server:    "127.0.0.1:8443",
		StateDir:  "/var/lib/flasher-agent",
		Reboot:    []string{"systemctl", "reboot"},
		Heartbeat: 10 * time.Second,
		LogLevel:  "info",
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flasher-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := defaultConfig()
	rest, err := config.Load("flasher-agent", &cfg, args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	log := slog.New(auth.RedactingHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})))

	var enroller *agent.Enroller
	if !cfg.Insecure && cfg.CAFile != "" && cfg.CertFile != "" && cfg.KeyFile != "" {
		if enroller, err = agent.NewEnroller(agent.EnrollConfig{
			Server: cfg.Server, CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
			ServerID: cfg.ServerID, JoinTokenFile: cfg.JoinToken, Logger: log,
		}); err != nil {
			return err
		}
		if cfg.JoinToken != "" {
			if err := enroller.Ensure(ctx); err != nil {
				return err
			}
		}
	}
	creds, err := transportCredentials(cfg)
	if err != nil {
		return err
	}
	conn, err := agent.NewSwapConn(func() (*grpc.ClientConn, error) {
		cc, err := grpc.NewClient(cfg.Server, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", cfg.Server, err)
		}
		return cc, nil
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if enroller != nil {
		// The certificate is renewed over the agent's own connection before it expires.
		go enroller.RenewLoop(ctx, conn)
	}
	serverID := ""
	if cfg.Insecure {
		serverID = cfg.ServerID
		if serverID == "" {
			return errors.New("-insecure needs -server-id: without a client certificate the server id is sent as a header")
		}
		log.Warn("INSECURE: plaintext connection, server id sent as a header; use only where the server allows unauthenticated agents")
	}
	var reboot func(context.Context) error
	if len(cfg.Reboot) > 0 {
		argv := cfg.Reboot
		reboot = func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("reboot command %q: %w: %s", argv, err, out)
			}
			return nil
		}
	}
	a, err := agent.New(agent.Config{
		Conn: conn, ServerID: serverID, StateDir: cfg.StateDir, Reboot: reboot,
		HeartbeatInterval: cfg.Heartbeat, Logger: log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// transportCredentials builds mTLS credentials from the configured files (the certificate is
// re-read when it is rotated on disk), or plaintext in insecure mode.
func transportCredentials(cfg Config) (credentials.TransportCredentials, error) {
	if cfg.Insecure {
		return insecure.NewCredentials(), nil
	}
	if cfg.CAFile == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("-tls-ca, -tls-cert and -tls-key are required (or -insecure for a test lab)")
	}
	tlsCfg, err := ca.AgentTLSConfig(ca.AgentTLS{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CAFile: cfg.CAFile})
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tlsCfg), nil
}
