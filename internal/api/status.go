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
	"github.com/flasher-dev/flasher/internal/inventory"
	"github.com/flasher-dev/flasher/internal/plan"
	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

// errorStatus turns a domain error into a gRPC status. It is the one place that does, so
// callers get codes and details to act on, never error strings to parse.
func errorStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var refusal *plan.Error
	var te *task.TransitionError
	var se *fleet.SelectorError
	switch {
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
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, inventory.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
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
