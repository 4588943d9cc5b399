package ledger

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the log's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	appended    prometheus.Counter
	batches     prometheus.Histogram
	latency     prometheus.Histogram
	failures    prometheus.Counter
	pushbacks   prometheus.Counter
	full        prometheus.Counter
	treeSize    prometheus.Gauge
	queued      prometheus.Counter
	checkpoints prometheus.Counter
	signFails   prometheus.Counter
	cpSize      prometheus.Gauge
	wFails      *prometheus.CounterVec
	wSize       *prometheus.GaugeVec
}

// NewMetrics creates the log's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_records_appended_total",
			Help: "Records committed to the log."}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "infertrail_batch_records",
			Help: "Records per committed batch (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "infertrail_commit_seconds",
			Help:    "Time to commit one batch, from the start of its transaction to its durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_commit_failures_total",
			Help: "Batches whose transaction failed; none of their records were acknowledged."}),
		pushbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_pushback_total",
			Help: "Append calls refused because the queue was full."}),
		full: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_storage_full_total",
			Help: "Append calls refused because the store's disk was down to its reserve of free space."}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "infertrail_tree_size",
			Help: "Records in the log as of this node's last commit."}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_records_queued_total",
			Help: "Records handed to the sequencer."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_checkpoints_signed_total",
			Help: "Checkpoints signed by this node."}),
		signFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_checkpoint_sign_failures_total",
			Help: "Checkpoints this node could not sign: the signer failed (an SSH agent that is gone, or holds no key) or what it signed did not verify."}),
		cpSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "infertrail_checkpoint_tree_size",
			Help: "Records covered by the latest signed checkpoint this node has seen; alert when infertrail_tree_size runs ahead of it for long."}),
		wFails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_witness_failures_total",
			Help: "Checkpoints a witness did not cosign when sent: unreachable, refused, or an answer that did not verify."}, []string{"witness"}),
		wSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "infertrail_witness_cosigned_tree_size",
			Help: "Records covered by the latest checkpoint each witness cosigned for this node."}, []string{"witness"}),
	}
	reg.MustRegister(m.appended, m.batches, m.latency, m.failures, m.pushbacks, m.full, m.treeSize, m.queued, m.checkpoints, m.signFails, m.cpSize, m.wFails, m.wSize)
	return m
}

func (m *Metrics) committed(n int, size int64, d time.Duration) {
	if m == nil {
		return
	}
	m.appended.Add(float64(n))
	m.batches.Observe(float64(n))
	m.latency.Observe(d.Seconds())
	m.treeSize.Set(float64(size))
}

func (m *Metrics) witnessFailed(name string) {
	if m != nil {
		m.wFails.WithLabelValues(name).Inc()
	}
}

func (m *Metrics) witnessed(name string, size int64) {
	if m != nil {
		m.wSize.WithLabelValues(name).Set(float64(size))
	}
}

func (m *Metrics) checkpoint(size int64) {
	if m != nil {
		m.cpSize.Set(float64(size))
	}
}

func (m *Metrics) signFailed() {
	if m != nil {
		m.signFails.Inc()
	}
}

func (m *Metrics) commitFailed() {
	if m != nil {
		m.failures.Inc()
	}
}

func (m *Metrics) storageFull() {
	if m != nil {
		m.full.Inc()
	}
}

func (m *Metrics) pushback() {
	if m != nil {
		m.pushbacks.Inc()
	}
}

func (m *Metrics) queue(n int) {
	if m != nil {
		m.queued.Add(float64(n))
	}
}

func (m *Metrics) signed() {
	if m != nil {
		m.checkpoints.Inc()
	}
}
