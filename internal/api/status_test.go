package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// TestErrorStatus checks the one error→status mapping every service uses: each domain error
// gets its code, and the text of an inner error reaches the log, never the caller.
func TestErrorStatus(t *testing.T) {
	// inner stands for what a database, a network or a library says: it must stay in the log.
	inner := errors.New("dial tcp 10.0.0.7:5432: secret-inner-detail")
	cases := []struct {
		name string
		err  error
		code codes.Code
		// msg is a part of the message the caller must see.
		msg string
		// logged says the inner error must be in the log.
		logged bool
	}{
		{"unknown error", fmt.Errorf("audit query: %w", inner), codes.Internal, "internal error", true},
		{"inventory unavailable", fmt.Errorf("%w: fleetdb: list servers: %w", inventory.ErrUnavailable, inner), codes.Unavailable, "inventory source is unavailable", true},
		{"inventory not found", fmt.Errorf("server s1: %w", inventory.ErrNotFound), codes.NotFound, "server s1", false},
		{"task not found", fmt.Errorf("get t1: %w", store.ErrNotFound), codes.NotFound, "task not found", false},
		{"store conflict", store.ErrConflict, codes.Aborted, "retry", false},
		{"page token", store.ErrInvalidPageToken, codes.InvalidArgument, "page_token", false},
		{"transition", &task.TransitionError{TaskID: "t1", From: task.StateCancelled, To: task.StateActive}, codes.FailedPrecondition, "is CANCELLED", false},
		{"planner refusal", &plan.Error{Code: "NO_CANDIDATE", Server: "s1", Message: "no firmware matches"}, codes.FailedPrecondition, "no firmware matches", false},
		{"selector", &fleet.SelectorError{Field: "selector.vendor", Reason: "unknown vendor"}, codes.InvalidArgument, "selector.vendor", false},
		{"cancelled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "cancelled", false},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline", false},
		{"agent busy", &inband.Error{Kind: inband.KindBusy, Msg: "server s1 already has a connected agent"}, codes.AlreadyExists, "already has a connected agent", false},
		{"agent denied", &inband.Error{Kind: inband.KindDenied, Msg: "image sha256:ab is not part of a task assigned to server s1"}, codes.PermissionDenied, "not part of a task", false},
		{"agent silent", &inband.Error{Kind: inband.KindSilent, Msg: "no hello within 3s"}, codes.DeadlineExceeded, "no hello", false},
		{"agent protocol", &inband.Error{Kind: inband.KindProtocol, Msg: "the first message of a stream must be hello"}, codes.FailedPrecondition, "must be hello", false},
		{"agent bad message", &inband.Error{Kind: inband.KindBadMessage, Msg: "unknown message"}, codes.InvalidArgument, "unknown message", false},
		{"shutting down", &inband.Error{Kind: inband.KindShuttingDown, Msg: "server shutting down; reconnect"}, codes.Unavailable, "reconnect", false},
		{"image not cached", &inband.Error{Kind: inband.KindNotFound, Msg: "image sha256:ab is not cached"}, codes.NotFound, "not cached", false},
		{"image unreadable", &inband.Error{Kind: inband.KindUnavailable, Msg: "image sha256:ab cannot be read now", Err: inner}, codes.Unavailable, "cannot be read now", true},
		{"status passes", status.Error(codes.OutOfRange, "offset 9 is beyond the image size 3"), codes.OutOfRange, "offset 9", false},
		{"wrapped status", fmt.Errorf("image sha256:ab: %w: %w", inner, status.Error(codes.Unavailable, "transport closing")), codes.Unavailable, "transport closing", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			got := status.Convert(errorStatus(context.Background(), log, tc.err))
			if got.Code() != tc.code {
				t.Errorf("code %s, want %s (status %q)", got.Code(), tc.code, got.Message())
			}
			if !strings.Contains(got.Message(), tc.msg) {
				t.Errorf("message %q lacks %q", got.Message(), tc.msg)
			}
			if strings.Contains(got.Message(), "secret-inner-detail") || strings.Contains(got.Message(), "10.0.0.7") {
				t.Errorf("message %q carries the inner error's text", got.Message())
			}
			if tc.logged && !strings.Contains(logs.String(), "secret-inner-detail") {
				t.Errorf("the inner error was not logged; log: %q", logs.String())
			}
		})
	}
	if errorStatus(context.Background(), slog.Default(), nil) != nil {
		t.Error("a nil error became a status")
	}
}
