// Package parallel runs independent calls a bounded number at a time: the
// probes, the emulators' --version questions and the discovery of
// candidates run through it, and so does the bench's floor of row 3b,
// which must schedule QEMU's starts exactly as mabd does.
package parallel

import (
	"sync"
	"sync/atomic"
)

// Run calls f(0), …, f(n-1) concurrently, at most limit at a time (one at
// a time when limit is below 1), and waits for them. It starts no more
// goroutines than run at once: a goroutine's stack is fresh memory that
// grows as f calls into the system, and faulting it in is a real part of
// a short command's time.
func Run(n, limit int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(limit, 1), n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}
