package store

import (
	"encoding/json"
	"fmt"

	"github.com/flasher-dev/flasher/internal/task"
)

// EncodeChange encodes a task and the event that changed it as every backend stores them, so
// the JSON work happens in the caller's goroutine rather than on a backend's single writer. The
// event is returned with its TaskID set. The stored JSON's revisions are not authoritative: the
// writer assigns the revision afterwards, and reads take it from its column.
func EncodeChange(t *task.Task, ev task.Event) (task.Event, []byte, []byte, error) {
	ev.TaskID = t.ID
	body, err := json.Marshal(t)
	if err != nil {
		return ev, nil, nil, fmt.Errorf("task %s: encode: %w", t.ID, err)
	}
	evBody, err := json.Marshal(ev)
	if err != nil {
		return ev, nil, nil, fmt.Errorf("task %s: encode event: %w", t.ID, err)
	}
	return ev, body, evBody, nil
}
