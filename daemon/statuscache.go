package daemon

import (
	"context"
	"slices"
	"sync"
	"time"

	"mabd/host"
)

// statusTTL is how long GET /v1/status reuses the host's status: a burst
// of health checks costs one inspection of the table and emulators.
const statusTTL = 250 * time.Millisecond

// refreshTimeout bounds one inspection of the host.
const refreshTimeout = 30 * time.Second

// statusCache holds the host's status. A status younger than statusTTL is
// answered as is; an older one too, while one inspection in the
// background makes the next (so that no request waits for an inspection
// while there is an answer); nothing, or a status dropped because the
// daemon changed the table, makes callers wait for an inspection that
// started after the drop.
type statusCache struct {
	mu     sync.Mutex
	val    host.Status
	at     time.Time // when val was made; zero: no val
	gen    uint64    // counts drops
	good   uint64    // the gen val was made in: val is current when good == gen
	err    error     // the last inspection's, when it failed
	errGen uint64    // the gen that inspection started in

	refreshing chan struct{} // closed when the running inspection ends
}

// get returns the status as the cache holds it, inspecting with fresh
// when it must. Each caller gets its own copy of the problems list.
func (c *statusCache) get(ctx context.Context, fresh func(context.Context) (*host.Status, error)) (*host.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		usable := !c.at.IsZero() && c.good == c.gen
		if usable {
			if time.Since(c.at) >= statusTTL && c.refreshing == nil {
				c.refresh(fresh)
			}
			st := c.val
			st.Problems = slices.Clone(c.val.Problems)
			return &st, nil
		}
		if c.refreshing == nil {
			c.refresh(fresh)
		}
		wait := c.refreshing
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			c.mu.Lock()
			return nil, context.Cause(ctx)
		}
		c.mu.Lock()
		if c.err != nil && c.errGen == c.gen {
			// An inspection since the last drop failed.
			return nil, c.err
		}
	}
}

// refresh inspects the host in the background. Called with mu held.
func (c *statusCache) refresh(fresh func(context.Context) (*host.Status, error)) {
	done := make(chan struct{})
	c.refreshing = done
	gen := c.gen
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		st, err := fresh(ctx)
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.refreshing = nil
		c.err, c.errGen = err, gen
		if err == nil {
			c.val, c.at, c.good = *st, time.Now(), gen
		}
		close(done)
	}()
}

// drop makes the next get wait for an inspection that starts after it.
func (c *statusCache) drop() {
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
}

// generation counts the drops: an answer made from the cache is current
// while it stays the same.
func (c *statusCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}
