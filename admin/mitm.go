package admin

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Interception figures. Metrics is a mitm.Observer (by its methods: admin
// reports on mitm without importing it), and WatchInterception adds the
// interceptor's own counts. Without --mitm none of these series exist.
type mitmMetrics struct {
	requests  *prometheus.CounterVec // profile, result, code
	duration  prometheus.Observer
	rotations *prometheus.CounterVec // reason
}

// WatchInterception registers the interception series: requests by
// profile, result and status class, their duration, identity rotations by
// reason, and from the interceptor itself leaves minted (minted) and
// identities held (identities). Call it once, before traffic.
func (m *Metrics) WatchInterception(minted func() uint64, identities func() int) {
	mm := &mitmMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hopper_mitm_requests_total",
			Help: "Requests served inside intercepted tunnels, by the identity's browser profile, result (as in the access log) and origin status class (none: no answer).",
		}, []string{"profile", "result", "code"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hopper_mitm_identity_rotations_total",
			Help: "Identities (profile and cookie jar of one exit and site) replaced, by reason: requests (--rotate-after-requests), 429, 403 (repeated), upstream-restored.",
		}, []string{"reason"}),
	}
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hopper_mitm_request_duration_seconds",
		Help:    "Time of each request inside an intercepted tunnel, until its response ended.",
		Buckets: latencyBuckets,
	})
	mm.duration = duration
	m.reg.MustRegister(mm.requests, mm.rotations, duration,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hopper_mitm_leaves_minted_total",
			Help: "Leaf certificates signed by hopper's CA (leaf cache misses).",
		}, func() float64 { return float64(minted()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hopper_mitm_identities",
			Help: "Identities held: one per (exit, site) pair in use, bounded by the identity store's size.",
		}, func() float64 { return float64(identities()) }),
	)
	m.mitm.Store(mm)
}

// InterceptedRequest counts one intercepted request (mitm.Observer).
func (m *Metrics) InterceptedRequest(profile string, status int, result string, took time.Duration) {
	mm := m.mitm.Load()
	if mm == nil {
		return
	}
	if profile == "" {
		profile = "none"
	}
	mm.requests.WithLabelValues(profile, result, statusClass(status)).Inc()
	mm.duration.Observe(took.Seconds())
}

// IdentityRotated counts one identity replaced (mitm.Observer).
func (m *Metrics) IdentityRotated(reason string) {
	if mm := m.mitm.Load(); mm != nil {
		mm.rotations.WithLabelValues(reason).Inc()
	}
}

// statusClass is "2xx" for 204, "none" for no status.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "none"
	}
	return strconv.Itoa(status/100) + "xx"
}
