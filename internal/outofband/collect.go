package outofband

import (
	"context"
	"fmt"
	"time"

	"github.com/flasher-dev/flasher/internal/inventory"
)

// ReadInventory reads a server's installed versions through its BMC and changes nothing: the
// collect operation of internal/fleet. It takes the BMC's turn like a task does, so a read never
// interleaves with a flash through the same BMC.
func (x *Executor) ReadInventory(ctx context.Context, srv *inventory.Server) ([]inventory.Component, error) {
	target, err := TargetFor(srv)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", srv.ID, err)
	}
	unlock, err := x.sessions.Lock(ctx, target.Key())
	if err != nil {
		return nil, err
	}
	defer unlock()
	creds := func(ctx context.Context) (inventory.Credentials, error) {
		return x.cfg.Inventory.Credentials(ctx, srv.ID)
	}
	sess, err := x.sessions.Open(ctx, target, creds, x.cfg.Policy.For(srv.Vendor, ""), nil)
	if err != nil {
		return nil, fmt.Errorf("server %s: connect to the BMC: %w", srv.ID, err)
	}
	defer sess.Close()
	dev, err := sess.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("server %s: read the BMC inventory: %w", srv.ID, err)
	}
	return liveComponents(srv, dev, time.Now()), nil
}
