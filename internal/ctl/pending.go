package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// `flasherctl audit` calls an API that is still being built. It goes
// through one small function that names the RPC it expects; once the RPC is in gen/, replace
// the function's body with the generated client call and render its response with a.emit and a
// table, as inventory.go does. Until then a server without the RPC answers Unimplemented, which
// the commands report as "not available on this server" (exit code 7).

// Method names the commands expect the servers to offer.
const (
	listAuditEventsMethod = "/flasher.v1.AuditService/ListAuditEvents"
)

func setupAgents(fs *flag.FlagSet, a *app) runFunc {
	server := fs.String("server", "", "only the agent of this server id")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("agents takes no arguments")
		}
		conn, err := a.client()
		if err != nil {
			return err
		}
		cctx, cancel := a.unary(ctx)
		defer cancel()
		resp, err := flasherv1.NewAgentServiceClient(conn).ListAgents(cctx, &flasherv1.ListAgentsRequest{ServerId: *server})
		if err != nil {
			return err
		}
		return a.emit(resp, func(w io.Writer) error {
			tw := newTable(w)
			row(tw, "SERVER", "HOST", "VENDOR", "MODEL", "AGENT", "COMPONENTS", "CONNECTED", "LAST SEEN", "TASKS")
			for _, ag := range resp.GetAgents() {
				row(tw, ag.GetServerId(), ag.GetHostname(), ag.GetVendor(), ag.GetModel(), ag.GetAgentVersion(),
					fmt.Sprint(ag.GetComponents()), ag.GetConnectTime().AsTime().Format(time.RFC3339),
					ag.GetLastSeenTime().AsTime().Format(time.RFC3339), fmt.Sprint(len(ag.GetTaskIds())))
			}
			return tw.Flush()
		})
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
