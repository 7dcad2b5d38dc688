package ctl

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// Every command reaches the server the same way: call (one unary call on the shared
// connection, bounded by --timeout), then emit (a table for people, protojson or YAML for
// scripts); show does both. Commands about one task resolve their ID argument with taskID.

// call runs one unary call of the service that newClient builds.
func call[C, R any](ctx context.Context, a *app, newClient func(grpc.ClientConnInterface) C, f func(context.Context, C) (R, error)) (R, error) {
	var zero R
	conn, err := a.client()
	if err != nil {
		return zero, err
	}
	cctx, cancel := a.unary(ctx)
	defer cancel()
	return f(cctx, newClient(conn))
}

// show runs one call and renders its answer with table for people.
func show[C any, R proto.Message](ctx context.Context, a *app, newClient func(grpc.ClientConnInterface) C, f func(context.Context, C) (R, error), table func(io.Writer, R) error) error {
	resp, err := call(ctx, a, newClient, f)
	if err != nil {
		return err
	}
	return a.emit(resp, func(w io.Writer) error { return table(w, resp) })
}

// idPrefix is what may start a task ID: the short IDs `task watch` prints are its first 8.
var idPrefix = regexp.MustCompile(`^[0-9a-fA-F][0-9a-fA-F-]{0,35}$`)

// taskID returns the task ID that the command's one argument names: a full ID, or a prefix
// that starts exactly one task's ID.
func (a *app) taskID(ctx context.Context, cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("%s needs one task ID", cmd)
	}
	arg := args[0]
	if _, err := uuid.Parse(arg); err == nil && len(arg) == 36 {
		return strings.ToLower(arg), nil
	}
	if !idPrefix.MatchString(arg) {
		return "", status.Errorf(codes.InvalidArgument, "%s: %q is not a task ID (a UUID, or the start of one)", cmd, arg)
	}
	prefix := strings.ToLower(arg)
	var matches []string
	token := ""
	for {
		resp, err := call(ctx, a, flasherv1.NewTaskServiceClient, func(ctx context.Context, tc flasherv1.TaskServiceClient) (*flasherv1.ListTasksResponse, error) {
			return tc.ListTasks(ctx, &flasherv1.ListTasksRequest{PageSize: 1000, PageToken: token})
		})
		if err != nil {
			return "", err
		}
		for _, t := range resp.GetTasks() {
			if strings.HasPrefix(strings.ToLower(t.GetId()), prefix) {
				matches = append(matches, t.GetId())
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	switch len(matches) {
	case 0:
		return "", status.Errorf(codes.NotFound, "no task ID starts with %q", arg)
	case 1:
		return matches[0], nil
	}
	shown := matches[:min(len(matches), 5)]
	more := ""
	if len(matches) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(matches)-len(shown))
	}
	return "", status.Errorf(codes.InvalidArgument, "%s: %q starts %d task IDs (%s%s); give more of the ID", cmd, arg, len(matches), strings.Join(shown, ", "), more)
}
