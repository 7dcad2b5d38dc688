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

var enrollmentTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"JoinTokensRoundTrip", testJoinTokensRoundTrip},
	{"JoinTokenUseChecked", testJoinTokenUseChecked},
	{"JoinTokenUsesSerialized", testJoinTokenUsesSerialized},
	{"RevokeAgent", testRevokeAgent},
}

func enrollmentsOf(t *testing.T, s store.Store) store.Enrollments {
	t.Helper()
	e, ok := s.(store.Enrollments)
	if !ok {
		t.Fatalf("%T does not implement store.Enrollments", s)
	}
	return e
}

// enrollTime is a whole second, so every backend's time precision keeps it exactly.
var enrollTime = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func joinToken(id, serverID string, maxUses int) store.JoinToken {
	return store.JoinToken{
		ID: id, SHA256: []byte("0123456789abcdef0123456789abcdef"), ServerID: serverID, MaxUses: maxUses,
		CreatedAt: enrollTime, ExpiresAt: enrollTime.Add(time.Hour), Note: "rack 12",
	}
}

func testJoinTokensRoundTrip(t *testing.T, st store.Store) {
	ctx := context.Background()
	e := enrollmentsOf(t, st)
	want := []store.JoinToken{joinToken("a1", "srv-1", 1), joinToken("b2", "", 100)}
	want[1].CreatedAt = enrollTime.Add(time.Second)
	if err := e.CreateJoinTokens(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := e.JoinTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("JoinTokens (-want +got):\n%s", d)
	}
	if err := e.CreateJoinTokens(ctx, []store.JoinToken{joinToken("c3", "", 1), joinToken("a1", "", 1)}); err == nil {
		t.Fatal("CreateJoinTokens with a duplicate id succeeded")
	}
	if got, _ := e.JoinTokens(ctx); len(got) != 2 {
		t.Fatalf("a failed CreateJoinTokens stored %d tokens, want the 2 from before", len(got))
	}
	if err := e.RevokeJoinToken(ctx, "a1", enrollTime.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := e.RevokeJoinToken(ctx, "a1", enrollTime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := e.RevokeJoinToken(ctx, "zz", enrollTime); !errors.Is(err, store.ErrJoinTokenNotFound) {
		t.Fatalf("RevokeJoinToken(unknown) = %v, want ErrJoinTokenNotFound", err)
	}
	got, _ = e.JoinTokens(ctx)
	if !got[0].RevokedAt.Equal(enrollTime.Add(time.Minute)) || !got[1].RevokedAt.IsZero() {
		t.Fatalf("revoked at %v and %v, want the first revocation's time and zero", got[0].RevokedAt, got[1].RevokedAt)
	}
}

func testJoinTokenUseChecked(t *testing.T, st store.Store) {
	ctx := context.Background()
	e := enrollmentsOf(t, st)
	if err := e.CreateJoinTokens(ctx, []store.JoinToken{joinToken("t1", "", 3)}); err != nil {
		t.Fatal(err)
	}
	if err := e.UseJoinToken(ctx, "nope", "srv-1", enrollTime, func(store.JoinToken, time.Time) error { return nil }); !errors.Is(err, store.ErrJoinTokenNotFound) {
		t.Fatalf("UseJoinToken(unknown) = %v, want ErrJoinTokenNotFound", err)
	}
	var seen []store.TokenUse
	accept := func(tok store.JoinToken, revoked time.Time) error {
		seen = tok.Uses
		if !revoked.IsZero() {
			return fmt.Errorf("revoked at %v", revoked)
		}
		return nil
	}
	if err := e.UseJoinToken(ctx, "t1", "srv-1", enrollTime.Add(time.Second), accept); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused by check")
	if err := e.UseJoinToken(ctx, "t1", "srv-2", enrollTime.Add(2*time.Second), func(store.JoinToken, time.Time) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("UseJoinToken with a refusing check = %v, want its error", err)
	}
	if err := e.UseJoinToken(ctx, "t1", "srv-3", enrollTime.Add(3*time.Second), accept); err != nil {
		t.Fatal(err)
	}
	want := []store.TokenUse{{ServerID: "srv-1", At: enrollTime.Add(time.Second)}}
	if d := cmp.Diff(want, seen); d != "" {
		t.Fatalf("uses the check saw (-want +got):\n%s", d)
	}
	toks, err := e.JoinTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, store.TokenUse{ServerID: "srv-3", At: enrollTime.Add(3 * time.Second)})
	if d := cmp.Diff(want, toks[0].Uses); d != "" {
		t.Fatalf("stored uses (-want +got), the refused one must be missing:\n%s", d)
	}
	if _, err := e.RevokeAgent(ctx, "srv-4", enrollTime.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := e.UseJoinToken(ctx, "t1", "srv-4", enrollTime.Add(5*time.Second), accept); err == nil {
		t.Fatal("the check was not given the agent's revocation time")
	}
}

// testJoinTokenUsesSerialized: concurrent uses of a one-use token, each checking the uses made
// before, must let exactly one through.
func testJoinTokenUsesSerialized(t *testing.T, st store.Store) {
	ctx := context.Background()
	e := enrollmentsOf(t, st)
	if err := e.CreateJoinTokens(ctx, []store.JoinToken{joinToken("once", "", 1)}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.UseJoinToken(ctx, "once", fmt.Sprintf("srv-%d", i), enrollTime, func(tok store.JoinToken, _ time.Time) error {
				if len(tok.Uses) >= tok.MaxUses {
					return errors.New("used up")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	toks, _ := e.JoinTokens(ctx)
	if ok != 1 || len(toks) != 1 || len(toks[0].Uses) != 1 {
		t.Fatalf("%d of %d concurrent uses succeeded and %d were stored, want 1 and 1 (errors %v)", ok, n, len(toks[0].Uses), errs)
	}
}

func testRevokeAgent(t *testing.T, st store.Store) {
	ctx := context.Background()
	e := enrollmentsOf(t, st)
	if at, err := e.AgentRevokedAt(ctx, "srv-1"); err != nil || !at.IsZero() {
		t.Fatalf("AgentRevokedAt of a never revoked agent = %v, %v; want zero", at, err)
	}
	certs := []store.AgentCertificate{
		{Serial: "a1", ServerID: "srv-1", TokenID: "t1", IssuedAt: enrollTime, NotAfter: enrollTime.Add(time.Hour)},
		{Serial: "b2", ServerID: "srv-1", IssuedAt: enrollTime.Add(time.Minute), NotAfter: enrollTime.Add(25 * time.Hour)},
		{Serial: "c3", ServerID: "srv-2", IssuedAt: enrollTime, NotAfter: enrollTime.Add(25 * time.Hour)},
	}
	for _, c := range certs {
		if err := e.RecordAgentCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	revokedAt := enrollTime.Add(2 * time.Hour)
	got, err := e.RevokeAgent(ctx, "srv-1", revokedAt)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(certs[1:2], got); d != "" {
		t.Fatalf("RevokeAgent returned (-want +got), only srv-1's unexpired certificate:\n%s", d)
	}
	if at, err := e.AgentRevokedAt(ctx, "srv-1"); err != nil || !at.Equal(revokedAt) {
		t.Fatalf("AgentRevokedAt = %v, %v; want %v", at, err, revokedAt)
	}
	if _, err := e.RevokeAgent(ctx, "srv-1", revokedAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if at, _ := e.AgentRevokedAt(ctx, "srv-1"); !at.Equal(revokedAt.Add(time.Hour)) {
		t.Fatalf("a second revocation left the time at %v", at)
	}
	if at, _ := e.AgentRevokedAt(ctx, "srv-2"); !at.IsZero() {
		t.Fatalf("srv-2 revoked at %v, want never", at)
	}
}
