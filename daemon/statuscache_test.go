package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"mabd/host"
)

// TestStatusCache: a fresh status is reused; a stale one is answered at
// once while one inspection runs behind it; after a drop, callers wait
// for an inspection that started after the drop; an inspection that
// fails with nothing to answer is the caller's error.
func TestStatusCache(t *testing.T) {
	var c statusCache
	var calls atomic.Int32
	release := make(chan struct{}, 10)
	fresh := func(ctx context.Context) (*host.Status, error) {
		n := calls.Add(1)
		<-release
		return &host.Status{Health: "healthy", Problems: []string{string(rune('0' + n))}}, nil
	}
	ctx := context.Background()
	get := func() string {
		t.Helper()
		st, err := c.get(ctx, fresh)
		if err != nil {
			t.Fatal(err)
		}
		return st.Problems[0]
	}

	release <- struct{}{}
	if got := get(); got != "1" || calls.Load() != 1 {
		t.Fatalf("first get: %q after %d inspections, want 1 after 1", got, calls.Load())
	}
	if got := get(); got != "1" || calls.Load() != 1 {
		t.Errorf("fresh: %q after %d inspections, want the same", got, calls.Load())
	}

	// Stale: answered at once, with one inspection behind it.
	c.mu.Lock()
	c.at = time.Now().Add(-2 * statusTTL)
	c.mu.Unlock()
	if got := get(); got != "1" {
		t.Errorf("stale: %q, want the stale 1 at once", got)
	}
	for deadline := time.Now().Add(5 * time.Second); calls.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := get(); got != "1" || calls.Load() != 2 {
		t.Errorf("while the inspection runs: %q after %d inspections, want 1 after 2 (one inspection)", got, calls.Load())
	}
	release <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for get() != "2" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}

	// Dropped: the next get waits for a new inspection.
	c.drop()
	done := make(chan string)
	go func() { st, _ := c.get(ctx, fresh); done <- st.Problems[0] }()
	select {
	case got := <-done:
		t.Fatalf("after a drop, get answered %q without waiting", got)
	case <-time.After(50 * time.Millisecond):
	}
	release <- struct{}{}
	if got := <-done; got != "3" {
		t.Errorf("after a drop: %q, want the new 3", got)
	}

	// Nothing to answer and the inspection fails: its error.
	var empty statusCache
	boom := errors.New("boom")
	if _, err := empty.get(ctx, func(context.Context) (*host.Status, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("failed first inspection: %v, want boom", err)
	}
	// A caller that gives up while it waits gets its context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var slow statusCache
	if _, err := slow.get(cctx, func(ctx context.Context) (*host.Status, error) {
		time.Sleep(100 * time.Millisecond)
		return &host.Status{}, nil
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
}
