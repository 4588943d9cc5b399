package load

import (
	"slices"
	"time"
)

// Latency summarises acknowledgement latencies exactly: percentiles are
// nearest-rank values of the full sorted sample (the smallest sample that at
// least p percent of the samples do not exceed), so they are always latencies
// that were measured.
type Latency struct {
	Samples int           `json:"samples"`
	P50     time.Duration `json:"p50_ns"`
	P90     time.Duration `json:"p90_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
}

// NewLatency summarises samples, which it sorts in place. It returns the
// zero Latency for no samples.
func NewLatency(samples []time.Duration) Latency {
	slices.Sort(samples)
	return Latency{
		Samples: len(samples),
		P50:     percentile(samples, 500),
		P90:     percentile(samples, 900),
		P99:     percentile(samples, 990),
		Max:     percentile(samples, 1000),
	}
}

// percentile returns the nearest-rank permille-th per mille of sorted: the
// element of rank ceil(permille/1000 × n), counting from 1. It computes in
// integers, since in floating point 0.9 × 10 is not 9.
func percentile(sorted []time.Duration, permille int) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (permille*n + 999) / 1000
	return sorted[min(max(rank, 1), n)-1]
}
