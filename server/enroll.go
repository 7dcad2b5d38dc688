package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flasher-dev/flasher/internal/auth/ca"
	"github.com/flasher-dev/flasher/internal/enroll"
	"github.com/flasher-dev/flasher/internal/server"
	"github.com/flasher-dev/flasher/internal/store"
)

// runEnrollment runs the ca subcommands that work on the join tokens and agents kept in the
// server's database (SQLite file or PostgreSQL), next to a running server.
func runEnrollment(ctx context.Context, cmd string, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	cfg := server.DefaultConfig()
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "the server's -data-dir (for the default -database)")
	fs.StringVar(&cfg.Database, "database", "", "the server's SQLite database (default <data-dir>/flasher.db)")
	fs.StringVar(&cfg.Store, "store", "", "the server's -store, for PostgreSQL")
	fs.StringVar(&cfg.StorePasswordFile, "store-password-file", "", "the server's -store-password-file")
	var (
		serverID, note, id, reason, denyList string
		count                                int
		ttl                                  time.Duration
		quiet                                bool
	)
	switch cmd {
	case "join-token":
		fs.StringVar(&serverID, "server", "", "bind the token to this server id, for one enrollment")
		fs.IntVar(&count, "count", 0, "a batch token: up to this many servers enroll with it, once each")
		fs.DurationVar(&ttl, "ttl", enroll.DefaultTokenTTL, "how long the token can be used (at most "+enroll.MaxTokenTTL.String()+")")
		fs.StringVar(&note, "note", "", "what the token is for (kept with it, shown by join-tokens)")
		fs.BoolVar(&quiet, "q", false, "print the token only (for kubectl create secret ... --from-file)")
	case "revoke-token":
		fs.StringVar(&id, "id", "", "the token id (the 16 hex digits after fjt_, as join-tokens lists them)")
	case "revoke-agent":
		fs.StringVar(&serverID, "server", "", "the server whose agent is revoked (required)")
		fs.StringVar(&reason, "reason", "", "note kept in the deny list")
		fs.StringVar(&denyList, "deny-list", "", "deny list file (default: <dir>/"+ca.DenyListFile+")")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("ca %s: unexpected arguments %q", cmd, fs.Args())
	}
	switch {
	case cmd == "join-token" && (serverID == "") == (count == 0):
		return errors.New("ca join-token: give --server X (one server) or --count N (a batch of N servers)")
	case cmd == "revoke-token" && id == "":
		return errors.New("ca revoke-token: --id is required")
	case cmd == "revoke-agent" && serverID == "":
		return errors.New("ca revoke-agent: --server is required")
	}
	st, closeStore, err := server.OpenEnrollments(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("ca %s: %w", cmd, err)
	}
	defer closeStore()
	now := time.Now()
	switch cmd {
	case "join-token":
		tok, rec, err := enroll.NewToken(enroll.TokenSpec{ServerID: serverID, Count: count, TTL: ttl, Note: note}, now)
		if err != nil {
			return fmt.Errorf("ca join-token: %w", err)
		}
		if err := st.CreateJoinTokens(ctx, []store.JoinToken{rec}); err != nil {
			return fmt.Errorf("ca join-token: %w", err)
		}
		if quiet {
			fmt.Fprintln(stdout, tok)
			return nil
		}
		what := fmt.Sprintf("for server %s, one enrollment", serverID)
		if serverID == "" {
			what = fmt.Sprintf("for a batch of up to %d servers, once each", count)
		}
		fmt.Fprintf(stdout, "join token %s (shown once; only its SHA-256 is stored):\n%s\n\n  id:      %s\n  expires: %s\n",
			what, tok, rec.ID, rec.ExpiresAt.Format(time.RFC3339))
		return nil
	case "join-tokens":
		toks, err := st.JoinTokens(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSERVER\tUSED\tEXPIRES\tSTATE\tNOTE\tUSED BY")
		for _, t := range toks {
			state := "valid"
			switch {
			case !t.RevokedAt.IsZero():
				state = "revoked"
			case !now.Before(t.ExpiresAt):
				state = "expired"
			case len(t.Uses) >= t.MaxUses:
				state = "used up"
			}
			server := t.ServerID
			if server == "" {
				server = "(batch)"
			}
			var by []string
			for _, u := range t.Uses {
				by = append(by, u.ServerID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", t.ID, server, len(t.Uses), t.MaxUses,
				t.ExpiresAt.Format(time.RFC3339), state, t.Note, strings.Join(by, ","))
		}
		return tw.Flush()
	case "revoke-token":
		if err := st.RevokeJoinToken(ctx, strings.TrimPrefix(id, "fjt_"), now); err != nil {
			return fmt.Errorf("ca revoke-token: %w", err)
		}
		fmt.Fprintf(stdout, "revoked join token %s: no agent can enroll with it any more\n", id)
		return nil
	default: // revoke-agent
		path := denyList
		if path == "" {
			path = filepath.Join(fs.Lookup("dir").Value.String(), ca.DenyListFile)
		}
		serials, err := enroll.RevokeAgent(ctx, st, path, serverID, reason, now)
		if err != nil {
			return fmt.Errorf("ca revoke-agent: %w", err)
		}
		fmt.Fprintf(stdout, "revoked the agent of server %s: %d unexpired certificate(s) added to %s %v; its renewals and enrollments with tokens made before now are refused\n",
			serverID, len(serials), path, serials)
		return nil
	}
}
