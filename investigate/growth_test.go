package investigate

import (
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

func TestGrowth(t *testing.T) {
	var g growth
	t0 := time.Unix(1_800_000_000, 0)
	steps := []struct {
		at   time.Duration
		size int64
		want float64
	}{
		{0, 100, 0},                      // the first look begins a window
		{500 * time.Millisecond, 900, 0}, // within it: no rate yet
		{2 * time.Second, 5100, 2500},    // 5,000 records in 2 s
		{2500 * time.Millisecond, 5200, 2500},
		{4 * time.Second, 5200, 50},    // 100 in 2 s
		{3 * time.Second, 9999, 50},    // a clock that went back begins again
		{4 * time.Second, 10999, 1000}, // 1,000 in 1 s
		{6 * time.Second, 10, 1000},    // a smaller tree (another store) begins again
		{7 * time.Second, 10, 0},
	}
	for i, s := range steps {
		if got := g.observe(t0.Add(s.at), s.size); got != s.want {
			t.Errorf("step %d: observe(+%v, %d) = %v, want %v", i, s.at, s.size, got, s.want)
		}
	}
}

func TestBlockRows(t *testing.T) {
	var b blockRows
	b.add([]infertrail.Posting{{Key: "a", Seq: 0}, {Key: "b", Seq: 0}, {Key: "a", Seq: 1}, {Key: "c", Seq: 63}})
	if b.n != 3 {
		t.Errorf("block 0: %d rows, want 3 (a, b, c)", b.n)
	}
	b.add([]infertrail.Posting{{Key: "a", Seq: 64}, {Key: "a", Seq: 65}, {Key: "b", Seq: 127}, {Key: "a", Seq: 128}})
	if b.n != 6 {
		t.Errorf("blocks 0 to 2: %d rows, want 6 (and a, b in block 1, a in block 2)", b.n)
	}
}
