package scheduler

import "context"

// Hold makes a read-only operation (a collect) take its turn in the one-active-operation-per-
// server rule: it waits until no task of serverID is active in this process, then keeps the
// server busy, so no task of it starts, until release is called. busyWith is called once with
// the id of the task it waits for, if it has to wait. It returns ctx's error if ctx ends first.
func (s *Scheduler) Hold(ctx context.Context, serverID, holder string, busyWith func(taskID string)) (release func(), err error) {
	told := false
	for {
		s.mu.Lock()
		cur, busy := s.busy[serverID]
		if !busy {
			s.busy[serverID] = holder
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				if s.busy[serverID] == holder {
					delete(s.busy, serverID)
					s.signalFreedLocked()
				}
				s.mu.Unlock()
				s.poke()
			}, nil
		}
		if s.freed == nil {
			s.freed = make(chan struct{})
		}
		freed := s.freed
		s.mu.Unlock()
		if !told && busyWith != nil {
			busyWith(cur)
			told = true
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// signalFreedLocked wakes every Hold waiting for a server to become idle.
func (s *Scheduler) signalFreedLocked() {
	if s.freed != nil {
		close(s.freed)
		s.freed = nil
	}
}
