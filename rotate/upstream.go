package rotate

import (
	"encoding/base64"
	"sync/atomic"
	"time"
)

// Upstream is one egress of the pool: an entry plus the counters that outlive
// list reloads. It has identity: Pool.Replace keeps the same *Upstream for an
// unchanged entry, so counters carry over; never copy an Upstream.
type Upstream struct {
	entry     Entry
	key       string // entry.String(): identity, holds credentials, never logged
	label     string // entry.Redacted()
	addr      string // host:port when the host has no placeholder
	basicAuth string // Proxy-Authorization value when credentials have no placeholder
	templated bool

	successes      atomic.Uint64
	failures       atomic.Uint64 // attempts failed through the upstream's own fault
	targetFailures atomic.Uint64 // attempts the target (or the caller) failed
	latency        atomic.Int64  // EWMA of establishment time, nanoseconds
	lastErr        atomic.Pointer[errorRecord]
}

type errorRecord struct {
	err error
	at  time.Time
}

// NewUpstream returns an upstream for e with zeroed counters.
func NewUpstream(e Entry) *Upstream {
	u := &Upstream{entry: e, key: e.String(), label: e.Redacted(), templated: e.Templated()}
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

// Stats is a point-in-time copy of an upstream's counters.
type Stats struct {
	Successes uint64 // attempts that established a connection
	// Failures counts attempts that failed through the upstream's own fault
	// (cannot connect, TLS, bad or refused handshake, 5xx of its own,
	// timeout, a ruleset denying the target); TargetFailures those where the
	// target refused or was unreachable. Attempts the client cut short, and
	// local resolver trouble, count in neither.
	Failures       uint64
	TargetFailures uint64
	// Latency is a moving average (1/8 weight per sample) of the time to
	// establish a connection through this upstream; zero before the first.
	Latency     time.Duration
	LastError   error // most recent failed attempt, nil if none
	LastErrorAt time.Time
}

// Stats reads the counters without locking.
func (u *Upstream) Stats() Stats {
	s := Stats{
		Successes:      u.successes.Load(),
		Failures:       u.failures.Load(),
		TargetFailures: u.targetFailures.Load(),
		Latency:        time.Duration(u.latency.Load()),
	}
	if r := u.lastErr.Load(); r != nil {
		s.LastError, s.LastErrorAt = r.err, r.at
	}
	return s
}

// recordSuccess counts a success; sampled says elapsed measured a fresh
// establishment (a kept connection handed out again measures nothing).
func (u *Upstream) recordSuccess(elapsed time.Duration, sampled bool) {
	u.successes.Add(1)
	if !sampled {
		return
	}
	sample := int64(elapsed)
	for {
		old := u.latency.Load()
		next := sample
		if old != 0 {
			next = old + (sample-old)/8
		}
		if u.latency.CompareAndSwap(old, next) {
			return
		}
	}
}

func (u *Upstream) recordFailure(err error, f fault) {
	switch f {
	case faultCaller, faultLocal:
		return
	case faultUpstream, faultPolicy:
		u.failures.Add(1)
	case faultTarget:
		u.targetFailures.Add(1)
	}
	u.lastErr.Store(&errorRecord{err: err, at: time.Now()})
}
