package store

import (
	"context"
	"errors"
	"time"

	"github.com/flasher-dev/flasher/internal/task"
)

var (
	// ErrLeaseHeld is returned by AcquireLease when another live lease holds the server, or
	// when the cluster-wide limits leave no room.
	ErrLeaseHeld = errors.New("server leased by another task or replica")
	// ErrLeaseLost is returned by a fenced UpdateTask, and reported by RenewLeases, when the
	// writer no longer holds its lease: it expired, or another replica took it.
	ErrLeaseLost = errors.New("lease lost")
)

// Lease is one replica's right, until Expires by the database's clock, to run TaskID on
// ServerID. Epoch grows by one every time the server's lease changes hands, so a write fenced
// with an older epoch is refused.
type Lease struct {
	ServerID string
	TaskID   string
	Method   task.Method
	Owner    string
	Epoch    int64
	Expires  time.Time
}

// LeaseLimits bound the live leases of the whole cluster; zero means no bound.
type LeaseLimits struct {
	MaxActive int
	PerMethod map[task.Method]int
}

// Leases is implemented by backends that several processes share. A scheduler holds a lease on
// a task's server for as long as it runs the task, renews it at a fraction of its duration, and
// fences every write it makes for the task with it (WithFence), so a replica that lost its
// lease cannot change the task again, and two replicas never run tasks of one server at once.
type Leases interface {
	// AcquireLease leases serverID to owner for taskID for d. It succeeds when no live lease
	// holds the server and the limits (counted over live leases of other servers) allow one
	// more; or, whatever the limits, when the lease held is taskID's own and expired (a
	// takeover). Otherwise it returns ErrLeaseHeld.
	AcquireLease(ctx context.Context, l Lease, d time.Duration, limits LeaseLimits) (Lease, error)
	// RenewLeases extends by d each of held that owner still holds at its epoch, and returns
	// those it no longer holds.
	RenewLeases(ctx context.Context, owner string, held []Lease, d time.Duration) (lost []Lease, err error)
	// ReleaseLease ends l now if it is still held at its epoch.
	ReleaseLease(ctx context.Context, l Lease) error
	// Orphans returns the ACTIVE tasks no live lease covers (their owner died or stopped
	// renewing), as leases to take over: ServerID, TaskID and Method set.
	Orphans(ctx context.Context) ([]Lease, error)
}

type fenceKey struct{}

// WithFence returns a context whose UpdateTask calls commit only while l is held at its epoch;
// otherwise they return ErrLeaseLost and change nothing.
func WithFence(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, fenceKey{}, l)
}

// FenceFrom returns the lease WithFence put in ctx.
func FenceFrom(ctx context.Context) (Lease, bool) {
	l, ok := ctx.Value(fenceKey{}).(Lease)
	return l, ok
}
