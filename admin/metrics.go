package admin

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
)

// UpstreamSource lists the pools and their upstreams with their health and
// counters; *rotate.Router implements it. It is read at scrape and request
// time, never on the proxy's request path.
type UpstreamSource interface {
	Status() []rotate.PoolStatus
}

// Defaults for zero MetricsConfig fields.
const (
	DefaultMaxUpstreamSeries = 1000
	maxResults               = 64 // distinct (protocol, result) pairs kept apart
	resultOther              = "other"
)

// quiet reports results that are how tunnels normally end, kept out of the
// recent errors.
func quiet(result string) bool {
	switch result {
	case "ok", "idle", "idle-timeout", "client-closed", "shutdown", "canceled":
		return true
	}
	return false
}

// MetricsConfig configures NewMetrics.
type MetricsConfig struct {
	// Upstreams is read for the per-pool and per-upstream figures. Nil means
	// hopper egresses directly: there are no pools, and egress is always
	// healthy.
	Upstreams UpstreamSource
	// MaxUpstreamSeries bounds the upstreams a pool exports series for;
	// a larger pool exports its pool totals only, so that a list of tens of
	// thousands of entries cannot swamp the scraper. Zero means
	// DefaultMaxUpstreamSeries; negative exports none.
	MaxUpstreamSeries int
	// Now is the clock of the status API's series and errors; nil means
	// time.Now.
	Now func() time.Time
}

// Metrics collects hopper's figures for /metrics (a private Prometheus
// registry, names hopper_*) and the status API. It is a dial.Observer: give
// it to tunnel.Config.Observer and socks.Config.Observer. Its observer
// methods cost a few atomic operations and, once per tunnel, one short
// mutex hold; it is safe for concurrent use.
//
// Bytes are counted when a tunnel ends, so a long download shows in the
// throughput figures at its end.
type Metrics struct {
	cfg     MetricsConfig
	now     func() time.Time
	started time.Time
	reg     *prometheus.Registry

	protos       [nProtocols]protoMetrics
	adminAuth    prometheus.Counter
	nAdminAuth   atomic.Uint64
	dialOK       prometheus.Observer
	dialFailed   prometheus.Observer
	tunnels      *prometheus.CounterVec
	reloadOK     prometheus.Counter
	reloadFailed prometheus.Counter
	nReloads     [2]atomic.Uint64 // ok, failed

	resMu   sync.RWMutex
	results map[resultKey]*resultCounter

	mitm atomic.Pointer[mitmMetrics] // nil until WatchInterception

	act activity
}

// nProtocols is the number of dial.Protocol values; others count as unknown.
const nProtocols = int(dial.ProtocolMITM) + 1

type protoMetrics struct {
	active    prometheus.Gauge
	up, down  prometheus.Counter
	handshake prometheus.Observer
	authFails prometheus.Counter

	nActive       atomic.Int64
	nTotal, nAuth atomic.Uint64
	nUp, nDown    atomic.Uint64
}

type resultKey struct {
	proto  dial.Protocol
	result string
}

type resultCounter struct {
	c prometheus.Counter
	n atomic.Uint64
}

var _ dial.Observer = (*Metrics)(nil)

// latencyBuckets spans loopback dials to slow upstreams, in seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics builds the registry with hopper's metrics, the upstream
// collector, and the Go runtime and process collectors.
func NewMetrics(cfg MetricsConfig) *Metrics {
	if cfg.MaxUpstreamSeries == 0 {
		cfg.MaxUpstreamSeries = DefaultMaxUpstreamSeries
	}
	m := &Metrics{cfg: cfg, now: cfg.Now, reg: prometheus.NewRegistry(), results: make(map[resultKey]*resultCounter)}
	if m.now == nil {
		m.now = time.Now
	}
	m.started = m.now()

	active := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hopper_tunnels_active",
		Help: "Tunnels and requests being served, by front-end protocol.",
	}, []string{"proto"})
	m.tunnels = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hopper_tunnels_total",
		Help: "Tunnels and requests served, by front-end protocol and result (as in the access log).",
	}, []string{"proto", "result"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hopper_tunnel_bytes_total",
		Help: "Bytes relayed, by front-end protocol and direction (up: client to target, down: target to client), counted when a tunnel ends.",
	}, []string{"proto", "direction"})
	handshake := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hopper_handshake_duration_seconds",
		Help:    "Time from a request's start until its outbound connection was ready, by front-end protocol.",
		Buckets: latencyBuckets,
	}, []string{"proto"})
	dials := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hopper_dial_duration_seconds",
		Help:    "Time of each dial attempt through an upstream or directly, by result (ok, failed).",
		Buckets: latencyBuckets,
	}, []string{"result"})
	auth := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hopper_auth_failures_total",
		Help: "Requests refused for missing or wrong credentials, by protocol (admin: this admin server).",
	}, []string{"proto"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hopper_reloads_total",
		Help: "Reloads of upstream lists and accounts on request (SIGHUP), by result (ok, failed).",
	}, []string{"result"})

	for p := range m.protos {
		name := dial.Protocol(p).String()
		pm := &m.protos[p]
		pm.active = active.WithLabelValues(name)
		pm.up = bytes.WithLabelValues(name, "up")
		pm.down = bytes.WithLabelValues(name, "down")
		pm.handshake = handshake.WithLabelValues(name)
		pm.authFails = auth.WithLabelValues(name)
	}
	m.adminAuth = auth.WithLabelValues("admin")
	m.dialOK = dials.WithLabelValues("ok")
	m.dialFailed = dials.WithLabelValues("failed")
	m.reloadOK = reloads.WithLabelValues("ok")
	m.reloadFailed = reloads.WithLabelValues("failed")

	m.reg.MustRegister(active, m.tunnels, bytes, handshake, dials, auth, reloads,
		&upstreamCollector{src: cfg.Upstreams, max: cfg.MaxUpstreamSeries},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the private registry /metrics serves; callers may register
// more collectors on it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) proto(p dial.Protocol) *protoMetrics {
	if int(p) >= nProtocols {
		p = dial.ProtocolUnknown
	}
	return &m.protos[p]
}

// TunnelOpened counts a tunnel or request as active.
func (m *Metrics) TunnelOpened(p dial.Protocol) {
	pm := m.proto(p)
	pm.nActive.Add(1)
	pm.active.Inc()
}

// TunnelClosed counts how a tunnel or request ended.
func (m *Metrics) TunnelClosed(r dial.Record) {
	pm := m.proto(r.Protocol)
	// The active gauge drops last: a reader that sees the tunnel gone
	// from it also sees it counted in the totals, bytes and results.
	defer func() {
		pm.nActive.Add(-1)
		pm.active.Dec()
	}()
	pm.nTotal.Add(1)
	m.result(r.Protocol, r.Result).inc()
	if r.Up > 0 {
		pm.nUp.Add(uint64(r.Up))
		pm.up.Add(float64(r.Up))
	}
	if r.Down > 0 {
		pm.nDown.Add(uint64(r.Down))
		pm.down.Add(float64(r.Down))
	}
	if r.Established > 0 {
		pm.handshake.Observe(r.Established.Seconds())
	}
	for _, a := range r.Dials {
		switch {
		case a.Err != nil:
			m.dialFailed.Observe(a.Elapsed.Seconds())
		case a.Elapsed > 0: // zero: a kept-alive connection, not a dial
			m.dialOK.Observe(a.Elapsed.Seconds())
		}
	}
	if r.Result == "auth-failed" {
		pm.nAuth.Add(1)
		pm.authFails.Inc()
	}
	m.act.add(m.now(), &r, !quiet(r.Result))
}

func (c *resultCounter) inc() {
	c.n.Add(1)
	c.c.Inc()
}

// result returns the counter of (p, result), creating it on first use.
// Past maxResults distinct pairs, new results count as "other", so a front
// end inventing results cannot grow the label set without bound.
func (m *Metrics) result(p dial.Protocol, result string) *resultCounter {
	if int(p) >= nProtocols {
		p = dial.ProtocolUnknown
	}
	k := resultKey{p, result}
	m.resMu.RLock()
	c := m.results[k]
	m.resMu.RUnlock()
	if c != nil {
		return c
	}
	m.resMu.Lock()
	defer m.resMu.Unlock()
	if c = m.results[k]; c != nil {
		return c
	}
	if len(m.results) >= maxResults {
		k.result = resultOther
		if c = m.results[k]; c != nil {
			return c
		}
	}
	c = &resultCounter{c: m.tunnels.WithLabelValues(p.String(), k.result)}
	m.results[k] = c
	return c
}

// Reloaded counts a reload of upstream lists and accounts done on request;
// err nil means it worked.
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.nReloads[1].Add(1)
		m.reloadFailed.Inc()
		return
	}
	m.nReloads[0].Add(1)
	m.reloadOK.Inc()
}

// adminAuthFailed counts a refused request to the admin server.
func (m *Metrics) adminAuthFailed() {
	m.nAdminAuth.Add(1)
	m.adminAuth.Inc()
}
