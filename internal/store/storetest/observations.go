package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flasher-dev/flasher/internal/store"
)

// observationTests are the conformance tests of store.Observations.
var observationTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ObservationsEmpty", testObservationsEmpty},
	{"ObservationsRoundTrip", testObservationsRoundTrip},
	{"ObservationsNewestWins", testObservationsNewestWins},
	{"ObservationsHistoryBounded", testObservationsHistoryBounded},
	{"ObservationsRefuseInvalid", testObservationsRefuseInvalid},
	{"ObservationsFilterByServer", testObservationsFilterByServer},
	{"ObservationsConcurrentWithTasks", testObservationsConcurrent},
}

var obsEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func observation(server, instance, version string, src store.Source, at time.Duration) store.Observation {
	return store.Observation{
		ServerID: server, Instance: instance, Component: "BIOS", Vendor: "dell", Model: "r750", Serial: "SN-" + instance,
		Version: version, Source: src, ObservedAt: obsEpoch.Add(at),
	}
}

func record(t *testing.T, s store.Store, obs ...store.Observation) {
	t.Helper()
	if err := s.RecordObservations(context.Background(), obs); err != nil {
		t.Fatalf("RecordObservations: %v", err)
	}
}

func current(t *testing.T, s store.Store, servers ...string) []store.Observation {
	t.Helper()
	got, err := s.CurrentObservations(context.Background(), servers)
	if err != nil {
		t.Fatalf("CurrentObservations(%v): %v", servers, err)
	}
	return got
}

func history(t *testing.T, s store.Store, server, instance string) []store.Observation {
	t.Helper()
	got, err := s.ObservationHistory(context.Background(), server, instance)
	if err != nil {
		t.Fatalf("ObservationHistory(%s, %s): %v", server, instance, err)
	}
	return got
}

// sameTime compares times by instant: backends may hand back another location.
var sameTime = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func testObservationsEmpty(t *testing.T, s store.Store) {
	if got := current(t, s); len(got) != 0 {
		t.Errorf("CurrentObservations on an empty store = %v, want none", got)
	}
	if got := current(t, s, "srv-1"); len(got) != 0 {
		t.Errorf("CurrentObservations(srv-1) on an empty store = %v, want none", got)
	}
	if got := history(t, s, "srv-1", "bios"); len(got) != 0 {
		t.Errorf("ObservationHistory on an empty store = %v, want none", got)
	}
	if err := s.RecordObservations(context.Background(), nil); err != nil {
		t.Errorf("RecordObservations(nil) = %v, want nil", err)
	}
}

func testObservationsRoundTrip(t *testing.T, s store.Store) {
	a := observation("srv-1", "bios", "2.1.0", store.SourceBMC, 0)
	a.TaskID = "task-1"
	b := observation("srv-1", "nic/MT1", "14.20", store.SourceAgent, time.Second)
	b.Component, b.Vendor, b.Model = "NIC", "mellanox", "cx4"
	b.CollectID = "collect-1"
	c := observation("srv-0", "bmc", "7.10", store.SourceDeclared, 2*time.Second)
	record(t, s, a, b, c)
	want := []store.Observation{c, a, b} // server id, then instance
	if diff := cmp.Diff(want, current(t, s), sameTime); diff != "" {
		t.Errorf("CurrentObservations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]store.Observation{b}, history(t, s, "srv-1", "nic/MT1"), sameTime); diff != "" {
		t.Errorf("ObservationHistory (-want +got):\n%s", diff)
	}
	// Nanoseconds survive: staleness is computed from them.
	if got := current(t, s, "srv-0"); len(got) != 1 || !got[0].ObservedAt.Equal(c.ObservedAt) {
		t.Errorf("observed_at = %v, want %v", got, c.ObservedAt)
	}
}

func testObservationsNewestWins(t *testing.T, s store.Store) {
	bmc := observation("srv-1", "bios", "2.1.0", store.SourceBMC, 10*time.Second)
	record(t, s, bmc)
	// An older report from the agent arrives later: it goes to the history, not current.
	old := observation("srv-1", "bios", "2.0.0", store.SourceAgent, 5*time.Second)
	record(t, s, old)
	if diff := cmp.Diff([]store.Observation{bmc}, current(t, s, "srv-1"), sameTime); diff != "" {
		t.Errorf("an older observation replaced a newer one (-want +got):\n%s", diff)
	}
	// A newer one wins, whatever its source.
	newer := observation("srv-1", "bios", "2.2.0", store.SourceDeclared, 20*time.Second)
	record(t, s, newer)
	if diff := cmp.Diff([]store.Observation{newer}, current(t, s, "srv-1"), sameTime); diff != "" {
		t.Errorf("a newer observation did not win (-want +got):\n%s", diff)
	}
	// The same instant: the later write wins.
	tie := observation("srv-1", "bios", "2.2.1", store.SourceBMC, 20*time.Second)
	record(t, s, tie)
	if diff := cmp.Diff([]store.Observation{tie}, current(t, s, "srv-1"), sameTime); diff != "" {
		t.Errorf("a tie did not go to the later write (-want +got):\n%s", diff)
	}
	// Within one call too: the newest of the call wins, whatever its position.
	first := observation("srv-2", "bmc", "1.0", store.SourceBMC, 30*time.Second)
	second := observation("srv-2", "bmc", "0.9", store.SourceAgent, 25*time.Second)
	record(t, s, first, second)
	if diff := cmp.Diff([]store.Observation{first}, current(t, s, "srv-2"), sameTime); diff != "" {
		t.Errorf("within one call (-want +got):\n%s", diff)
	}
	want := []store.Observation{tie, newer, bmc, old}
	if diff := cmp.Diff(want, history(t, s, "srv-1", "bios"), sameTime); diff != "" {
		t.Errorf("history keeps every source, newest first (-want +got):\n%s", diff)
	}
}

func testObservationsHistoryBounded(t *testing.T, s store.Store) {
	n := store.HistoryLimit + 5
	var all []store.Observation
	for i := range n {
		o := observation("srv-1", "bios", fmt.Sprintf("1.%d", i), store.SourceBMC, time.Duration(i)*time.Second)
		all = append(all, o)
		record(t, s, o)
	}
	other := observation("srv-1", "bmc", "7.0", store.SourceBMC, 0)
	record(t, s, other)
	got := history(t, s, "srv-1", "bios")
	if len(got) != store.HistoryLimit {
		t.Fatalf("history has %d entries, want %d", len(got), store.HistoryLimit)
	}
	for i, o := range got {
		if want := all[n-1-i]; o.Version != want.Version {
			t.Errorf("history[%d] = %s, want %s (newest first)", i, o.Version, want.Version)
		}
	}
	if got := history(t, s, "srv-1", "bmc"); len(got) != 1 {
		t.Errorf("another instance's history has %d entries, want 1", len(got))
	}
}

func testObservationsRefuseInvalid(t *testing.T, s store.Store) {
	good := observation("srv-1", "bios", "2.1.0", store.SourceBMC, 0)
	for name, mutate := range map[string]func(*store.Observation){
		"empty server":   func(o *store.Observation) { o.ServerID = "" },
		"empty instance": func(o *store.Observation) { o.Instance = "" },
		"empty version":  func(o *store.Observation) { o.Version = "" },
		"unknown source": func(o *store.Observation) { o.Source = "guess" },
		"zero time":      func(o *store.Observation) { o.ObservedAt = time.Time{} },
	} {
		bad := good
		mutate(&bad)
		err := s.RecordObservations(context.Background(), []store.Observation{good, bad})
		if !errors.Is(err, store.ErrInvalidObservation) {
			t.Errorf("%s: RecordObservations = %v, want ErrInvalidObservation", name, err)
		}
	}
	if got := current(t, s); len(got) != 0 {
		t.Errorf("a refused call stored %v", got)
	}
}

func testObservationsFilterByServer(t *testing.T, s store.Store) {
	var obs []store.Observation
	var ids []string
	// More servers than one statement may bind on some backends.
	for i := range 1200 {
		id := fmt.Sprintf("srv-%04d", i)
		obs = append(obs, observation(id, "bios", "1.0", store.SourceBMC, time.Duration(i)))
		if i%2 == 1 {
			ids = append(ids, id)
		}
	}
	record(t, s, obs...)
	if got := current(t, s); len(got) != len(obs) {
		t.Errorf("every server: %d observations, want %d", len(got), len(obs))
	}
	// Asked in reverse order, answered in server order.
	rev := make([]string, len(ids))
	for i, id := range ids {
		rev[len(ids)-1-i] = id
	}
	got := current(t, s, rev...)
	if len(got) != len(ids) {
		t.Fatalf("odd servers: %d observations, want %d", len(got), len(ids))
	}
	for i, o := range got {
		if o.ServerID != ids[i] {
			t.Fatalf("observation %d is of %s, want %s", i, o.ServerID, ids[i])
		}
	}
	if got := current(t, s, "srv-9999"); len(got) != 0 {
		t.Errorf("unknown server: %v, want none", got)
	}
}

func testObservationsConcurrent(t *testing.T, s store.Store) {
	c := newClock()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			tk, ev := spec{id: fmt.Sprintf("t%d", i)}.new(c)
			if _, _, err := s.CreateTask(context.Background(), tk, ev); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			o := observation(fmt.Sprintf("srv-%d", i), "bios", "1.0", store.SourceBMC, time.Duration(i))
			if err := s.RecordObservations(context.Background(), []store.Observation{o}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := current(t, s); len(got) != 20 {
		t.Errorf("%d observations, want 20", len(got))
	}
	rev, err := s.Revision(context.Background())
	if err != nil || rev != 20 {
		t.Errorf("Revision = %d, %v; want 20: observations take no revision", rev, err)
	}
}
