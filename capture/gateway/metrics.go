package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus metrics; a nil *metrics records nothing.
type metrics struct {
	requests    *prometheus.CounterVec
	incompletes *prometheus.CounterVec
	waits       prometheus.Counter
	failures    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, g *Gateway) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_gateway_requests_total",
			Help: "Calls through the LLM gateway by provider, operation and status code."}, []string{"provider", "operation", "code"}),
		incompletes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_gateway_incomplete_total",
			Help: "Calls whose response broke off, by provider and reason; each has a record marked incomplete."}, []string{"provider", "reason"}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_gateway_backpressure_waits_total",
			Help: "Calls that waited for room because records were waiting to be written."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_gateway_record_failures_total",
			Help: "Records the trail refused outright (each is logged)."}),
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "infertrail_gateway_records_pending",
		Help: "Records waiting to be written after the fact."}, func() float64 { return float64(g.sp.Pending()) })
	reg.MustRegister(m.requests, m.incompletes, m.waits, m.failures, pending)
	return m
}

func (m *metrics) request(provider, op string, code int) {
	if m != nil {
		m.requests.WithLabelValues(provider, op, strconv.Itoa(code)).Inc()
	}
}

func (m *metrics) incomplete(provider, reason string) {
	if m != nil {
		m.incompletes.WithLabelValues(provider, reason).Inc()
	}
}

func (m *metrics) waited() {
	if m != nil {
		m.waits.Inc()
	}
}

func (m *metrics) failed() {
	if m != nil {
		m.failures.Inc()
	}
}
