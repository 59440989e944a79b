package parallel

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct{ n, limit, wantMax int }{
		{0, 4, 0},
		{1, 4, 1},
		{3, 0, 1}, // a limit below one runs them one at a time
		{34, 1, 1},
		{34, 4, 4},
		{2, 8, 2},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.n, tc.limit), func(t *testing.T) {
			calls := make([]atomic.Int32, tc.n)
			var running, most atomic.Int32
			release := make(chan struct{})
			go func() {
				// Hold the first calls until as many run as may.
				for running.Load() < int32(tc.wantMax) {
					runtime.Gosched()
				}
				close(release)
			}()
			Run(tc.n, tc.limit, func(i int) {
				r := running.Add(1)
				for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
				}
				<-release
				calls[i].Add(1)
				running.Add(-1)
			})
			for i := range calls {
				if c := calls[i].Load(); c != 1 {
					t.Errorf("f(%d) called %d times, want once", i, c)
				}
			}
			if m := most.Load(); int(m) != tc.wantMax {
				t.Errorf("at most %d ran at once, want %d", m, tc.wantMax)
			}
		})
	}
}
