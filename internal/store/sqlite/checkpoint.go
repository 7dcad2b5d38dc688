package sqlite

import (
	"context"
	"time"
)

const (
	// writerCacheKiB is the writer's page cache (PRAGMA cache_size takes negative KiB).
	writerCacheKiB = -32 << 10
	// writerAutoCheckpoint is the WAL size, in pages, at which the writer checkpoints itself
	// because the checkpointer has not: 64 MiB with 4 KiB pages, far beyond what the
	// checkpointer lets the WAL reach.
	writerAutoCheckpoint = 16384
	// checkpointEvery spaces background checkpoints: each one costs fsyncs of the database file
	// that compete with the writer's.
	checkpointEvery = 100 * time.Millisecond
)

// checkpoint copies committed WAL frames into the database file in the background, so that the
// writer, whose commits every caller waits for, does not do it inline (SQLite's automatic
// checkpoint runs inside the COMMIT that crosses the threshold). PASSIVE never blocks the writer
// or readers; once it has copied everything, the writer's next transaction starts the WAL over.
// Durability does not depend on it: every commit is already fsynced in the WAL.
func (s *Store) checkpoint() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.quit
		cancel()
	}()
	wait := time.NewTimer(checkpointEvery)
	defer wait.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-s.ckpt:
		}
		// A failed checkpoint (another process holding the checkpoint lock, say) is retried
		// after the next commit; the writer's own automatic checkpoint bounds the WAL meanwhile.
		_, _ = s.cdb.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		wait.Reset(checkpointEvery)
		select {
		case <-s.quit:
			return
		case <-wait.C:
		}
	}
}
