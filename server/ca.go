package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/flasher-dev/flasher/internal/auth"
	"github.com/flasher-dev/flasher/internal/auth/ca"
)

const caUsage = `usage: flasher-server ca <command> [flags]

commands:
  init          create a Flasher CA (ca.crt, ca.key mode 0600) in --dir
  issue-server  issue the gRPC server's certificate for --dns names and --ip addresses
  issue-agent   issue an agent's client certificate for --server-id (default 24h)
  revoke        add a certificate --serial to the deny list (checked on every agent call)
  token         generate a static API token: prints the token once and its token-file entry
  join-token    make an agent join token, for one --server or a batch of --count servers
                (stored hashed in the server's database; agents enroll with it over TLS)
  join-tokens   list the join tokens and the servers that used them
  revoke-token  revoke a join token by --id
  revoke-agent  revoke a server's agent: its certificates, renewals and older tokens

run "flasher-server ca <command> -h" for a command's flags.
`

// runCA runs the "flasher-server ca ..." subcommands: certificate and token tooling that works
// on files only and never contacts a server.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return errors.New("ca: missing command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("flasher-server ca "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "flasher-ca", "CA directory")
	parse := func() error {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("ca %s: unexpected arguments %q", cmd, fs.Args())
		}
		return nil
	}
	switch cmd {
	case "init":
		name := fs.String("name", "Flasher CA", "CA common name")
		validity := fs.Duration("validity", ca.DefaultCAValidity, "CA certificate validity")
		if err := parse(); err != nil {
			return err
		}
		c, err := ca.Init(*dir, *name, *validity, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created CA %q in %s (valid until %s)\n  certificate: %s\n  key:         %s (keep it offline; mode 0600)\n",
			*name, c.Dir, c.Cert.NotAfter.UTC().Format(time.RFC3339), filepath.Join(c.Dir, ca.CertFile), filepath.Join(c.Dir, ca.KeyFile))
		return nil

	case "issue-server":
		dns := fs.String("dns", "", "comma-separated DNS names")
		ips := fs.String("ip", "", "comma-separated IP addresses")
		validity := fs.Duration("validity", ca.DefaultServerValidity, "certificate validity")
		cert := fs.String("cert", "server.crt", "output certificate file")
		key := fs.String("key", "server.key", "output key file (mode 0600)")
		if err := parse(); err != nil {
			return err
		}
		var addrs []net.IP
		for _, s := range splitList(*ips) {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("ca issue-server: %q is not an IP address", s)
			}
			addrs = append(addrs, ip)
		}
		c, err := ca.Load(*dir)
		if err != nil {
			return err
		}
		is, err := c.IssueServer(splitList(*dns), addrs, *validity)
		if err != nil {
			return err
		}
		return writeIssued(stdout, is, *cert, *key, "server")

	case "issue-agent":
		serverID := fs.String("server-id", "", "the one server this agent may act for (required)")
		validity := fs.Duration("validity", ca.DefaultAgentValidity, "certificate validity (keep it short and re-issue)")
		cert := fs.String("cert", "agent.crt", "output certificate file")
		key := fs.String("key", "agent.key", "output key file (mode 0600)")
		if err := parse(); err != nil {
			return err
		}
		if *serverID == "" {
			return errors.New("ca issue-agent: --server-id is required")
		}
		c, err := ca.Load(*dir)
		if err != nil {
			return err
		}
		is, err := c.IssueAgent(*serverID, *validity)
		if err != nil {
			return err
		}
		return writeIssued(stdout, is, *cert, *key, "agent for server "+*serverID)

	case "revoke":
		serial := fs.String("serial", "", "certificate serial (hex, as issue-* printed it)")
		reason := fs.String("reason", "", "note kept in the deny list")
		denyList := fs.String("deny-list", "", "deny list file (default: <dir>/"+ca.DenyListFile+")")
		if err := parse(); err != nil {
			return err
		}
		n, err := ca.ParseSerial(*serial)
		if err != nil {
			return fmt.Errorf("ca revoke: %w", err)
		}
		path := *denyList
		if path == "" {
			path = filepath.Join(*dir, ca.DenyListFile)
		}
		if err := ca.Revoke(path, n, *reason, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked serial %s in %s; servers reading this file refuse it on the next call\n", auth.SerialString(n), path)
		return nil

	case "token":
		name := fs.String("name", "", "token name: recorded as the requester of its tasks (required)")
		scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(auth.KnownScopes, ", "))
		ttl := fs.Duration("ttl", 0, "expire the token after this long (0: never)")
		if err := parse(); err != nil {
			return err
		}
		var exp *time.Time
		if *ttl > 0 {
			t := time.Now().Add(*ttl).UTC().Truncate(time.Second)
			exp = &t
		}
		tok, entry, err := auth.GenerateToken(*name, splitList(*scopes), exp)
		if err != nil {
			return fmt.Errorf("ca token: %w", err)
		}
		y, err := auth.MarshalEntry(entry)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token (shown once; give it to %s and do not store it):\n%s\n\nadd this entry under tokens: in the token file:\n%s", *name, tok, y)
		return nil

	case "join-token", "join-tokens", "revoke-token", "revoke-agent":
		return runEnrollment(ctx, cmd, fs, args, stdout)

	case "-h", "--help", "help":
		fmt.Fprint(stdout, caUsage)
		return nil
	}
	fmt.Fprint(stderr, caUsage)
	return fmt.Errorf("ca: unknown command %q", cmd)
}

func writeIssued(stdout io.Writer, is *ca.Issued, certPath, keyPath, what string) error {
	if err := is.Write(certPath, keyPath); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued %s certificate\n  serial:      %s\n  valid until: %s\n  certificate: %s\n  key:         %s\n",
		what, auth.SerialString(is.Serial), is.NotAfter.UTC().Format(time.RFC3339), certPath, keyPath)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
