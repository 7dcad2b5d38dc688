package api

import (
	"context"
	"errors"
	"fmt"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
	"github.com/flasher-dev/flasher/internal/auth"
)

// LocalTaskClient calls a TaskService in the same process as the identity given, validating
// every request as the gRPC chain would. In-process producers of tasks (the fleetdb attribute
// workflow) use it instead of dialling the server and holding a credential.
type LocalTaskClient struct {
	svc       *TaskService
	validator protovalidate.Validator
	id        auth.Identity
}

// NewLocalTaskClient returns a client of svc acting as id.
func NewLocalTaskClient(svc *TaskService, id auth.Identity) (*LocalTaskClient, error) {
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("protovalidate: %w", err)
	}
	return &LocalTaskClient{svc: svc, validator: v, id: id}, nil
}

func (c *LocalTaskClient) call(ctx context.Context, req proto.Message) (context.Context, error) {
	if err := c.validator.Validate(req); err != nil {
		return nil, withFieldViolations(validationStatus(err))
	}
	return auth.WithIdentity(ctx, c.id), nil
}

// CreateTask creates a task.
func (c *LocalTaskClient) CreateTask(ctx context.Context, in *flasherv1.CreateTaskRequest, _ ...grpc.CallOption) (*flasherv1.CreateTaskResponse, error) {
	ctx, err := c.call(ctx, in)
	if err != nil {
		return nil, err
	}
	return c.svc.CreateTask(ctx, in)
}

// GetTask returns a task.
func (c *LocalTaskClient) GetTask(ctx context.Context, in *flasherv1.GetTaskRequest, _ ...grpc.CallOption) (*flasherv1.GetTaskResponse, error) {
	ctx, err := c.call(ctx, in)
	if err != nil {
		return nil, err
	}
	return c.svc.GetTask(ctx, in)
}

// ListTasks lists tasks.
func (c *LocalTaskClient) ListTasks(ctx context.Context, in *flasherv1.ListTasksRequest, _ ...grpc.CallOption) (*flasherv1.ListTasksResponse, error) {
	ctx, err := c.call(ctx, in)
	if err != nil {
		return nil, err
	}
	return c.svc.ListTasks(ctx, in)
}

// validationStatus is what the protovalidate interceptor returns for err.
func validationStatus(err error) error {
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		// The validator itself failed (a rule that does not compile): not the caller's doing.
		return status.Error(codes.Internal, "internal error: the request could not be validated")
	}
	st := status.New(codes.InvalidArgument, err.Error())
	if d, derr := st.WithDetails(ve.ToProto()); derr == nil {
		st = d
	}
	return st.Err()
}
