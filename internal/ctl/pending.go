package ctl

import (
	"context"
	"flag"
	"fmt"

	"google.golang.org/protobuf/types/known/emptypb"
)

// `flasherctl agents` and `flasherctl audit` call APIs that are still being built. Each goes
// through one small function that names the RPC it expects; once the RPC is in gen/, replace
// the function's body with the generated client call and render its response with a.emit and a
// table, as inventory.go does. Until then a server without the RPC answers Unimplemented, which
// the commands report as "not available on this server" (exit code 7).

// Method names the commands expect the servers to offer.
const (
	listAgentsMethod      = "/flasher.v1.AgentService/ListAgents"
	listAuditEventsMethod = "/flasher.v1.AuditService/ListAuditEvents"
)

func setupAgents(fs *flag.FlagSet, a *app) runFunc {
	server := fs.String("server", "", "only the agent of this server id")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("agents takes no arguments")
		}
		_ = server // a filter of the future ListAgentsRequest
		return a.pendingRPC(ctx, "agents", listAgentsMethod)
	}
}

func setupAudit(fs *flag.FlagSet, a *app) runFunc {
	since := fs.Duration("since", 0, "only entries newer than this")
	limit := fs.Int("limit", 100, "at most this many entries")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("audit takes no arguments")
		}
		_, _ = since, limit // fields of the future request
		return a.pendingRPC(ctx, "audit", listAuditEventsMethod)
	}
}

// pendingRPC calls an RPC this flasherctl has no generated types for. An empty request is
// valid for any request message; a server that implements the RPC answers with a response this
// build cannot show, which says to upgrade flasherctl instead of printing nothing.
func (a *app) pendingRPC(ctx context.Context, cmd, method string) error {
	conn, err := a.client()
	if err != nil {
		return err
	}
	cctx, cancel := a.unary(ctx)
	defer cancel()
	if err := conn.Invoke(cctx, method, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		return err
	}
	return fmt.Errorf("flasherctl %s: the server offers %s but this flasherctl cannot show it yet; upgrade flasherctl", cmd, method)
}
