package engine

import "time"

// SetSyncRunLimit shortens how long POST /instances/{id}/poller/run waits
// before it answers 202 (SyncRunLimit), for tests.
func (h *Handlers) SetSyncRunLimit(d time.Duration) { h.syncLimit = d }
