package rotate

import (
	"encoding/base64"
	"net/netip"
	"sync/atomic"
	"time"
)

// Upstream is one egress of the pool: an entry plus the health and counters
// that outlive list reloads. It has identity: Pool.Replace keeps the same
// *Upstream for an unchanged entry, so counters and quarantine carry over;
// never copy an Upstream, and give each to one pool only.
type Upstream struct {
	entry     Entry
	key       string // entry.String(): identity, holds credentials, never logged
	id        string // upstreamID(key): identity in a shared store
	label     string // entry.Redacted()
	addr      string // host:port when the host has no placeholder
	basicAuth string // Proxy-Authorization value when credentials have no placeholder
	templated bool

	successes      atomic.Uint64
	failures       atomic.Uint64 // attempts failed through the upstream's own fault
	targetFailures atomic.Uint64 // attempts the target (or the caller) failed
	latency        atomic.Int64  // EWMA of establishment time, nanoseconds
	lastErr        atomic.Pointer[errorRecord]

	// Health. state and until are written under the owning pool's lock and
	// read lock-free; consec counts upstream-fault failures since the last
	// success.
	state  atomic.Uint32 // State
	until  atomic.Int64  // quarantine end, unix nanoseconds
	consec atomic.Int32
	// reported counts failures reported after a successful dial
	// (ReportFailure: an origin that stalls or bans the exit) and
	// reportedAt is the last one's time. The dial that preceded each of
	// them succeeded and cleared consec, so they quarantine by their own
	// count: Config.FailuresUntilQuarantine of them, each within the base
	// quarantine period of the one before.
	reported    atomic.Int32
	reportedAt  atomic.Int64
	quarantines atomic.Uint64
	retired     atomic.Bool // removed from its pool by a reload
	// Guarded by the pool's lock.
	offences   int
	releasedAt time.Time
	cause      quarantineCause
	changedAt  int64 // last health change made or adopted, unix nanoseconds
	pushed     bool  // that change is in the shared store

	// Measurements (requests and probes).
	rate          atomic.Uint64 // success-rate EWMA in millionths, plus one; 0: none yet
	probeLatency  atomic.Int64  // EWMA of probe time, nanoseconds
	probes        atomic.Uint64
	probeFailures atomic.Uint64
	lastProbe     atomic.Int64 // unix nanoseconds
	exit          atomic.Pointer[exitRecord]
}

type errorRecord struct {
	err error
	at  time.Time
}

// exitRecord is what a judge said about an upstream.
type exitRecord struct {
	ip        netip.Addr
	anonymity Anonymity
	pinned    netip.Addr // first exit IP seen, for PinExitIP
}

// NewUpstream returns an upstream for e with zeroed counters, healthy.
func NewUpstream(e Entry) *Upstream {
	u := &Upstream{entry: e, key: e.String(), label: e.Redacted(), templated: e.Templated()}
	u.id = upstreamID(u.key)
	if e.Scheme != SchemeDirect && !hasPlaceholder(e.Host) {
		u.addr = e.hostPort()
	}
	if e.User != "" && !hasPlaceholder(e.User) && !hasPlaceholder(e.Pass) {
		u.basicAuth = basicAuth(e.User, e.Pass)
	}
	return u
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// Entry returns the parsed entry (with credentials: do not log it).
func (u *Upstream) Entry() Entry { return u.entry }

// Label is the redacted name for logs and metrics; see Entry.Redacted.
func (u *Upstream) Label() string { return u.label }

// String is Label, so an *Upstream never prints its password.
func (u *Upstream) String() string { return u.label }

// State reports whether the upstream is in service.
func (u *Upstream) State() State { return State(u.state.Load()) }

func (u *Upstream) healthy() bool { return u.state.Load() == uint32(StateHealthy) }

// ewma folds sample into the moving average at p with weight 1/8.
func ewma(p *atomic.Int64, sample int64) {
	for {
		old := p.Load()
		next := sample
		if old != 0 {
			next = old + (sample-old)/8
		}
		if next == 0 {
			next = 1
		}
		if p.CompareAndSwap(old, next) {
			return
		}
	}
}

// recordRate folds one outcome into the success-rate average (weight 1/10).
func (u *Upstream) recordRate(ok bool) {
	const one = 1_000_000
	sample := uint64(0)
	if ok {
		sample = one
	}
	for {
		old := u.rate.Load()
		next := sample
		if old != 0 {
			cur := old - 1
			next = cur - cur/10 + sample/10
		}
		if u.rate.CompareAndSwap(old, next+1) {
			return
		}
	}
}

// successRate is the success-rate average in [0,1], 1 before any outcome.
func (u *Upstream) successRate() float64 {
	v := u.rate.Load()
	if v == 0 {
		return 1
	}
	return float64(v-1) / 1_000_000
}

// selLatency is the latency selection policies use: the prober's measure,
// else the requests', 0 when neither exists yet.
func (u *Upstream) selLatency() time.Duration {
	if l := u.probeLatency.Load(); l != 0 {
		return time.Duration(l)
	}
	return time.Duration(u.latency.Load())
}

// recordSuccess counts a success; sampled says elapsed measured a fresh
// establishment (a kept connection handed out again measures nothing). It
// reports whether the success ended a run of failures.
func (u *Upstream) recordSuccess(elapsed time.Duration, sampled bool) (hadFailures bool) {
	u.successes.Add(1)
	if u.consec.Load() != 0 {
		u.consec.Store(0)
		hadFailures = true
	}
	u.recordRate(true)
	if sampled {
		ewma(&u.latency, int64(elapsed))
	}
	return hadFailures
}

// recordFailure counts a failed attempt by whose fault it was, and reports
// whether it counts towards quarantine (the upstream's own fault).
func (u *Upstream) recordFailure(err error, f fault, now time.Time) (charged bool) {
	switch f {
	case faultCaller, faultLocal:
		return false
	case faultUpstream:
		u.failures.Add(1)
		u.consec.Add(1)
		u.recordRate(false)
		charged = true
	case faultPolicy:
		// Its ruleset refused this target; it may serve others, so it is
		// counted but not put out of service for it.
		u.failures.Add(1)
	case faultTarget:
		u.targetFailures.Add(1)
	}
	u.lastErr.Store(&errorRecord{err: err, at: now})
	return charged
}
