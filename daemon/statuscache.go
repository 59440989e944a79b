package daemon

import (
	"slices"
	"sync"
	"time"

	"mabd/host"
)

// statusTTL is how long GET /v1/status reuses the host's status: a burst
// of health checks costs one inspection of the table and emulators.
const statusTTL = 250 * time.Millisecond

// statusCache holds the host's status for statusTTL. Concurrent callers
// wait for one inspection.
type statusCache struct {
	mu  sync.Mutex
	at  time.Time // zero: nothing cached
	val host.Status
}

// get returns the cached status, or inspects with fresh and caches it.
// Each caller gets its own copy of the problems list.
func (c *statusCache) get(fresh func() (*host.Status, error)) (*host.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= statusTTL {
		st, err := fresh()
		if err != nil {
			return nil, err
		}
		c.val, c.at = *st, time.Now()
	}
	st := c.val
	st.Problems = slices.Clone(c.val.Problems)
	return &st, nil
}

// drop forgets the cached status.
func (c *statusCache) drop() {
	c.mu.Lock()
	c.at = time.Time{}
	c.mu.Unlock()
}
