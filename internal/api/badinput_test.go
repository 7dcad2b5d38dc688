package api_test

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// rawCodec sends bytes as they are, so a test can send a body that is not protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestUndecodableBody: a body that is not a valid protobuf message is the caller's error,
// InvalidArgument with a field violation; it never echoes the decoder's own text.
func TestUndecodableBody(t *testing.T) {
	env := newEnv(t, nil, 0)
	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	var out []byte
	err := env.Conn.Invoke(context.Background(), "/flasher.v1.TaskService/GetTask", garbage, &out, grpc.ForceCodec(rawCodec{}))
	checkUndecodable(t, "unary", err)

}

func checkUndecodable(t *testing.T, what string, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("%s: %v, want InvalidArgument", what, err)
	}
	var field string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 {
			field = br.FieldViolations[0].Field
		}
	}
	if field != "body" {
		t.Fatalf("%s: details %v, want one violation of field body", what, st.Details())
	}
}

// TestWatchFromFutureRevision: a start_revision the server has not reached is OutOfRange at
// once, not a watch that waits in silence.
func TestWatchFromFutureRevision(t *testing.T) {
	env := newEnv(t, nil, 0)
	if _, err := env.Tasks.CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-1", 1)}); err != nil {
		t.Fatal(err)
	}
	rev, err := env.Store.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream, err := env.Tasks.WatchTasks(context.Background(), &flasherv1.WatchTasksRequest{StartRevision: rev + 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.OutOfRange {
		t.Fatalf("watch from revision %d (latest %d): %v, want OutOfRange", rev+1000, rev, err)
	}
	// The latest revision itself is a valid resume point.
	stream, err = env.Tasks.WatchTasks(context.Background(), &flasherv1.WatchTasksRequest{StartRevision: rev})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		env.Tasks.CreateTask(context.Background(), &flasherv1.CreateTaskRequest{Task: firmwareSpec("srv-2", 1)})
	}()
	if m, err := stream.Recv(); err != nil || m.Type != flasherv1.WatchEventType_WATCH_EVENT_TYPE_CHANGE {
		t.Fatalf("watch from the latest revision: %v %v", m, err)
	}
}
