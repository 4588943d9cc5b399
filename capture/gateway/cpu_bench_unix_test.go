//go:build unix

package gateway_test

import (
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkGatewayCPU measures the gateway alone, at concurrency 1 and 16,
// for 8 seconds each: requests per second, and the CPU time of the whole
// process per request (the client, the scripted upstream and the gateway
// with its trail, all in this process), the steadier figure on a shared
// machine. Run with -benchtime 1x; INFERTRAIL_BENCH_DURABILITY selects the
// mode as for the other benchmarks.
func BenchmarkGatewayCPU(b *testing.B) {
	up := httptest.NewServer(bodyScript())
	b.Cleanup(up.Close)
	u := benchGateway(b, up.URL, nil) + "/openai/v1/chat/completions"
	for _, conc := range []int{1, 16} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
			for range 50 { // warm up
				call(b, u, false)
			}
			var n atomic.Int64
			var cpu, wall time.Duration
			for range b.N {
				var ru0, ru1 syscall.Rusage
				syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
				start := time.Now()
				deadline := start.Add(8 * time.Second)
				var wg sync.WaitGroup
				for range conc {
					wg.Go(func() {
						for time.Now().Before(deadline) {
							call(b, u, false)
							n.Add(1)
						}
					})
				}
				wg.Wait()
				wall += time.Since(start)
				syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
				cpu += time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			}
			b.ReportMetric(float64(n.Load())/wall.Seconds(), "req/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(n.Load()), "cpu-µs/req")
		})
	}
}
