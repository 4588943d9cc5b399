package investigate

import "time"

// SetGrowth makes e see the log growing by rate records a second, in a
// window that began at since with the tree size from.
func SetGrowth(e *Engine, since time.Time, from int64, rate float64) {
	e.growth.mu.Lock()
	defer e.growth.mu.Unlock()
	e.growth.since, e.growth.from, e.growth.rate = since, from, rate
}
