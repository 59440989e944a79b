package audit_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"mabd/builder/audit"
)

// BenchmarkAuditLargeLayer streams a 500 MB layer, generated on the fly
// through an io.Pipe and never stored, through ScanLayer. Memory must stay
// flat: besides allocs/op it reports the heap in use before and after and
// the highest seen while scanning (sampled every 10ms).
//
//	go test -run '^$' -bench BenchmarkAuditLargeLayer -benchtime 1x ./builder/audit
func BenchmarkAuditLargeLayer(b *testing.B) {
	const size = 500 << 20
	b.ReportAllocs()
	b.SetBytes(size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var peak uint64
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
		}
	}()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fs, err := audit.ScanLayer(generatedLayer(size))
		if err != nil {
			b.Fatal(err)
		}
		if len(fs) == 0 {
			b.Fatal("no ELF file found")
		}
	}
	b.StopTimer()
	close(stop)
	<-done
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(before.HeapInuse), "heapinuse-before-B")
	b.ReportMetric(float64(after.HeapInuse), "heapinuse-after-B")
	mu.Lock()
	b.ReportMetric(float64(peak), "heapinuse-peak-B")
	mu.Unlock()
}
