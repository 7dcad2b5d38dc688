package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// `flasherctl agents` lists the agents connected to the server and `flasherctl audit` reads its
// audit trail. A server that does not offer AgentService or AuditService answers Unimplemented,
// which the commands report as "not available on this server" (exit code 7).

func setupAgents(fs *flag.FlagSet, a *app) runFunc {
	server := fs.String("server", "", "only the agent of this server id")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("agents takes no arguments")
		}
		return show(ctx, a, flasherv1.NewAgentServiceClient, func(ctx context.Context, c flasherv1.AgentServiceClient) (*flasherv1.ListAgentsResponse, error) {
			return c.ListAgents(ctx, &flasherv1.ListAgentsRequest{ServerId: *server})
		}, func(w io.Writer, resp *flasherv1.ListAgentsResponse) error {
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
	identity := fs.String("identity", "", "only entries of this identity")
	server := fs.String("server", "", "only entries about this server id")
	taskID := fs.String("task", "", "only entries about this task id")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("audit takes no arguments")
		}
		if *limit < 1 || *limit > 1000 {
			return usagef("--limit must be between 1 and 1000")
		}
		req := &flasherv1.ListAuditEventsRequest{Identity: *identity, ServerId: *server, TaskId: *taskID, PageSize: int32(*limit)}
		if *since > 0 {
			req.Since = timestamppb.New(a.now().Add(-*since))
		}
		return show(ctx, a, flasherv1.NewAuditServiceClient, func(ctx context.Context, c flasherv1.AuditServiceClient) (*flasherv1.ListAuditEventsResponse, error) {
			return c.ListAuditEvents(ctx, req)
		}, func(w io.Writer, resp *flasherv1.ListAuditEventsResponse) error {
			tw := newTable(w)
			row(tw, "TIME", "IDENTITY", "ACTION", "SERVER", "TASK", "OUTCOME", "MESSAGE")
			for _, e := range resp.GetEvents() {
				row(tw, e.GetTime().AsTime().Format(time.RFC3339), e.GetIdentity(), e.GetAction(), e.GetServerId(),
					e.GetTaskId(), e.GetCode(), e.GetMessage())
			}
			return tw.Flush()
		})
	}
}
