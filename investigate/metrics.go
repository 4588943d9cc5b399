package investigate

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lagCollector reports Engine.Lag at each scrape.
type lagCollector struct {
	e             *Engine
	index, detect *prometheus.Desc
}

// Collector returns a Prometheus collector of how far the index and the
// detectors are behind the log: infertrail_index_lag_records and
// infertrail_detect_lag_records, read from the store at each scrape. A
// store that does not answer within two seconds gives no sample.
func (e *Engine) Collector() prometheus.Collector {
	return &lagCollector{
		e: e,
		index: prometheus.NewDesc("infertrail_index_lag_records",
			"Committed records the investigation index has still to index.", nil, nil),
		detect: prometheus.NewDesc("infertrail_detect_lag_records",
			"Committed records the detectors have still to examine; they wait out their window (investigate.window) before they examine a record.", nil, nil),
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.index
	ch <- c.detect
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	index, detect, err := c.e.Lag(ctx)
	if err != nil {
		return // no sample, rather than fail the scrape of every metric
	}
	ch <- prometheus.MustNewConstMetric(c.index, prometheus.GaugeValue, float64(index))
	ch <- prometheus.MustNewConstMetric(c.detect, prometheus.GaugeValue, float64(detect))
}
