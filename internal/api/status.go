package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/flasher-dev/flasher/internal/fleet"
	"github.com/flasher-dev/flasher/internal/inband"
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// errorStatus turns a domain error into a gRPC status for every service of this package. It is
// the one place that does, so callers get codes and details to act on, never error strings to
// parse. A status carries only sentences written for the caller: the text of an inner error (a
// database's, a network's, a library's) is logged here and never returned.
func errorStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err // already a status this server wrote (or a stream's own end)
	}
	var wrapped interface{ GRPCStatus() *status.Status }
	if errors.As(err, &wrapped) {
		// A status wrapped in context: keep its code and message, log the context.
		log.WarnContext(ctx, "call failed", "err", err)
		return wrapped.GRPCStatus().Err()
	}
	var refusal *plan.Error
	var te *task.TransitionError
	var se *fleet.SelectorError
	var refused *inband.Error
	switch {
	case errors.As(err, &refused):
		if refused.Err != nil {
			log.WarnContext(ctx, "agent call refused", "err", err)
		}
		return status.Error(inbandCodes[refused.Kind], refused.Msg)
	case errors.As(err, &se):
		return badRequest(se.Field, se.Reason)
	case errors.As(err, &refusal):
		// A planner refusal: one violation per reason, each typed with the rule that failed.
		pf := &errdetails.PreconditionFailure{}
		for _, v := range refusal.Violations {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
				Type: string(refusal.Code), Subject: v.Subject, Description: v.Description,
			})
		}
		if len(pf.Violations) == 0 {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{Type: string(refusal.Code), Subject: "server/" + refusal.Server, Description: refusal.Message})
		}
		return withDetails(codes.FailedPrecondition, refusal.Error(), pf)
	case errors.As(err, &te):
		return withDetails(codes.FailedPrecondition, fmt.Sprintf("task %s is %s", te.TaskID, te.From),
			&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
				Type: "TASK_STATE", Subject: "task/" + te.TaskID,
				Description: fmt.Sprintf("a %s task cannot become %s", te.From, te.To),
			}}})
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, "task not found")
	case errors.Is(err, inventory.ErrNotFound):
		// The inventory sources name what was looked up ("server X: not found"), nothing more.
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, inventory.ErrUnavailable):
		log.WarnContext(ctx, "inventory source unavailable", "err", err)
		return status.Error(codes.Unavailable, "the inventory source is unavailable; retry later")
	case errors.Is(err, store.ErrInvalidPageToken):
		return badRequest("page_token", "not a page token this server issued")
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, "task changed concurrently; retry")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	log.ErrorContext(ctx, "internal error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// inbandCodes answers each kind of the in-band service's refusals.
var inbandCodes = map[inband.Kind]codes.Code{
	inband.KindDenied:       codes.PermissionDenied,
	inband.KindProtocol:     codes.FailedPrecondition,
	inband.KindBadMessage:   codes.InvalidArgument,
	inband.KindSilent:       codes.DeadlineExceeded,
	inband.KindBusy:         codes.AlreadyExists,
	inband.KindShuttingDown: codes.Unavailable,
	inband.KindNotFound:     codes.NotFound,
	inband.KindUnavailable:  codes.Unavailable,
}

func withDetails(c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(c, msg)
	for _, d := range details {
		if withD, err := st.WithDetails(d); err == nil {
			st = withD
		}
	}
	return st.Err()
}

// badRequest is InvalidArgument with one field violation, for checks protovalidate cannot make.
func badRequest(field, description string) error {
	return withDetails(codes.InvalidArgument, fmt.Sprintf("invalid %s: %s", field, description),
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}}})
}
