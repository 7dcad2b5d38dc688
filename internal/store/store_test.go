package store_test

import (
	"testing"

	"github.com/flasher-dev/flasher/internal/store"
	"github.com/flasher-dev/flasher/internal/task"
)

func TestFilterMatch(t *testing.T) {
	tk := &task.Task{ID: "t1", ServerID: "srv-a", Method: task.MethodInBand, Requester: "alice", State: task.StateActive}
	tests := []struct {
		name string
		f    store.Filter
		want bool
	}{
		{"zero filter matches everything", store.Filter{}, true},
		{"server", store.Filter{ServerID: "srv-a"}, true},
		{"other server", store.Filter{ServerID: "srv-b"}, false},
		{"method", store.Filter{Method: task.MethodInBand}, true},
		{"other method", store.Filter{Method: task.MethodOutOfBand}, false},
		{"requester", store.Filter{Requester: "alice"}, true},
		{"other requester", store.Filter{Requester: "bob"}, false},
		{"one of several states", store.Filter{States: []task.State{task.StateQueued, task.StateActive}}, true},
		{"none of the states", store.Filter{States: []task.State{task.StateQueued, task.StateFailed}}, false},
		{"all fields", store.Filter{ServerID: "srv-a", Method: task.MethodInBand, Requester: "alice", States: []task.State{task.StateActive}}, true},
		{"all fields but one", store.Filter{ServerID: "srv-a", Method: task.MethodInBand, Requester: "bob", States: []task.State{task.StateActive}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(tk); got != tc.want {
				t.Errorf("%+v.Match = %v, want %v", tc.f, got, tc.want)
			}
		})
	}
}
