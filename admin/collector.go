package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hopper-proxy/hopper/rotate"
)

// upstreamCollector exports the pools and upstreams of an UpstreamSource,
// read at scrape time: the series follow the current lists, so an upstream
// a reload dropped stops being exported.
type upstreamCollector struct {
	src UpstreamSource // nil: direct egress, nothing to export
	max int            // per-pool bound on upstreams with series; negative: none
}

var (
	descPoolSize = prometheus.NewDesc("hopper_pool_upstreams",
		"Upstreams in the pool.", []string{"pool"}, nil)
	descPoolHealthy = prometheus.NewDesc("hopper_pool_healthy_upstreams",
		"Upstreams of the pool in service (not quarantined).", []string{"pool"}, nil)
	descHealthy = prometheus.NewDesc("hopper_upstream_healthy",
		"1 while the upstream is in service, 0 while it is quarantined.", []string{"pool", "upstream"}, nil)
	descAttempts = prometheus.NewDesc("hopper_upstream_dial_attempts_total",
		"Dial attempts through the upstream (successes plus failures of either cause).", []string{"pool", "upstream"}, nil)
	descFailures = prometheus.NewDesc("hopper_upstream_dial_failures_total",
		"Failed dial attempts through the upstream, by cause (upstream: its own fault; target: the target refused or was unreachable).",
		[]string{"pool", "upstream", "cause"}, nil)
	descQuarantines = prometheus.NewDesc("hopper_upstream_quarantines_total",
		"Times the upstream was put out of service.", []string{"pool", "upstream"}, nil)
	descStateDegraded = prometheus.NewDesc("hopper_state_degraded",
		"1 while shared state (--state redis://...) is unreachable and hopper serves from local state.", []string{"backend"}, nil)
	descLatency = prometheus.NewDesc("hopper_upstream_latency_seconds",
		"Moving average of the time to establish a connection through the upstream (0 before the first).", []string{"pool", "upstream"}, nil)
)

// Describe sends the descriptors of every series Collect may send.
func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range [...]*prometheus.Desc{descPoolSize, descPoolHealthy, descHealthy, descAttempts, descFailures, descQuarantines, descLatency, descStateDegraded} {
		ch <- d
	}
}

// Collect reads the source's status once and sends its series.
func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	if ss, ok := c.src.(StateSource); ok {
		h := ss.StateHealth()
		degraded := 0.0
		if h.Degraded {
			degraded = 1
		}
		ch <- prometheus.MustNewConstMetric(descStateDegraded, prometheus.GaugeValue, degraded, h.Backend)
	}
	for _, ps := range c.src.Status() {
		ch <- prometheus.MustNewConstMetric(descPoolSize, prometheus.GaugeValue, float64(len(ps.Upstreams)), ps.Name)
		ch <- prometheus.MustNewConstMetric(descPoolHealthy, prometheus.GaugeValue, float64(ps.Healthy), ps.Name)
		if c.max < 0 || len(ps.Upstreams) > c.max {
			continue
		}
		labels := uniqueLabels(ps.Upstreams)
		for i := range ps.Upstreams {
			s := &ps.Upstreams[i].Stats
			pool, up := ps.Name, labels[i]
			healthy := 0.0
			if s.State == rotate.StateHealthy {
				healthy = 1
			}
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy, pool, up)
			ch <- prometheus.MustNewConstMetric(descAttempts, prometheus.CounterValue,
				float64(s.Successes+s.Failures+s.TargetFailures), pool, up)
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.Failures), pool, up, "upstream")
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.TargetFailures), pool, up, "target")
			ch <- prometheus.MustNewConstMetric(descQuarantines, prometheus.CounterValue, float64(s.Quarantines), pool, up)
			ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, s.Latency.Seconds(), pool, up)
		}
	}
}

// uniqueLabels returns the upstreams' labels, with "#2", "#3"... appended to
// repeats: redaction hides credentials, so two accounts on one gateway share
// a label, and a series must be unique.
func uniqueLabels(ups []rotate.UpstreamStatus) []string {
	out := make([]string, len(ups))
	used := make(map[string]bool, len(ups))
	for i, u := range ups {
		l := u.Label
		for n := 2; used[l]; n++ {
			l = u.Label + "#" + strconv.Itoa(n)
		}
		used[l] = true
		out[i] = l
	}
	return out
}
