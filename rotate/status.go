package rotate

import (
	"net/netip"
	"time"
)

// Stats is a point-in-time copy of an upstream's health and counters, read
// without locking (fields may be a moment apart from each other).
//
// With a shared store (--state redis://) the totals Successes, Failures,
// TargetFailures, Probes and ProbeFailures are this instance's own and add
// up over instances: each attempt and each probe is counted by the one
// instance that made it. The other fields describe the upstream as this
// instance knows it, partly from the others: each upstream is probed by one
// instance per interval and the others adopt what it learned (LastProbeAt,
// ProbeLatency, ExitIP, Anonymity, a probe's LastError, its outcome in
// SuccessRate), and quarantines and failure counts are shared as they
// change. Compare or average those over instances; never sum them.
type Stats struct {
	State State
	// QuarantinedUntil is when the quarantine ends (zero while healthy).
	QuarantinedUntil time.Time
	// Quarantines counts how often the upstream was put out of service here,
	// including, with a shared store, by another instance's decision (which
	// every instance applies and counts): take one instance's figure, or the
	// maximum, rather than the sum.
	Quarantines uint64
	// ConsecutiveFailures counts failures of its own since its last success
	// (with a shared store, each failure here raises it to at least the
	// count all instances share).
	ConsecutiveFailures int

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
	Latency time.Duration
	// SuccessRate is a moving average (1/10 weight) of attempts and probes
	// that worked, counting only failures of the upstream's own; 1 before
	// the first. It takes in this instance's attempts and, with a shared
	// store, every instance's probes, each at most once: when this instance
	// reads its probe record (one overwritten before it was read is missed).
	SuccessRate float64

	// Probes and ProbeFailures count the probes this instance made itself;
	// ProbeFailures counts every failed one, also those not charged to the
	// upstream (this host or the probe's target at fault). With a shared
	// store a probe another instance made is adopted without counting here,
	// so the sums over instances count each probe once.
	Probes        uint64
	ProbeFailures uint64
	// ProbeLatency is the prober's moving average (1/8 weight) of the time
	// to a probe's answer, zero before the first success. With a shared
	// store the instance that probes carries on the average it last read
	// from the others' probes, and the others adopt its value, so the
	// instances' policies rank upstreams alike.
	ProbeLatency time.Duration
	// LastProbeAt is when the upstream was last probed: by this instance, or
	// with a shared store by whichever instance held its probe lease (by
	// that instance's clock); zero before the first.
	LastProbeAt time.Time
	// ExitIP and Anonymity are what the judge saw through the upstream last,
	// on this instance's probe or, with a shared store, another's; invalid
	// and AnonymityUnknown without a judge.
	ExitIP    netip.Addr
	Anonymity Anonymity

	// LastError is the most recent failed attempt of this instance or failed
	// probe of any instance (another instance's keeps its text and the
	// sentinel it wraps: dial.ErrUpstream, ErrLeak or ErrExitIPChanged),
	// nil if none; LastErrorAt is when it happened.
	LastError   error
	LastErrorAt time.Time
}

// Score is the weight PolicyWeighted gives the upstream relative to a best
// latency of the pool: SuccessRate² × best/latency, at least 0.01; an
// upstream not measured yet scores as if it had the best latency.
func (s Stats) Score(best time.Duration) float64 {
	lat := s.ProbeLatency
	if lat == 0 {
		lat = s.Latency
	}
	return score(s.SuccessRate, int64(lat), int64(best))
}

// Stats reads the counters without locking.
func (u *Upstream) Stats() Stats {
	s := Stats{
		State:               u.State(),
		Quarantines:         u.quarantines.Load(),
		ConsecutiveFailures: int(u.consec.Load()),
		Successes:           u.successes.Load(),
		Failures:            u.failures.Load(),
		TargetFailures:      u.targetFailures.Load(),
		Latency:             time.Duration(u.latency.Load()),
		SuccessRate:         u.successRate(),
		Probes:              u.probes.Load(),
		ProbeFailures:       u.probeFailures.Load(),
		ProbeLatency:        time.Duration(u.probeLatency.Load()),
	}
	if s.State == StateQuarantined {
		if until := u.until.Load(); until != 0 {
			s.QuarantinedUntil = time.Unix(0, until)
		}
	}
	if t := u.lastProbe.Load(); t != 0 {
		s.LastProbeAt = time.Unix(0, t)
	}
	if x := u.exit.Load(); x != nil {
		s.ExitIP, s.Anonymity = x.ip, x.anonymity
	}
	if r := u.lastErr.Load(); r != nil {
		s.LastError, s.LastErrorAt = r.err, r.at
	}
	return s
}

// UpstreamStatus is one upstream in a status listing.
type UpstreamStatus struct {
	Label  string // redacted, as in logs
	Scheme Scheme
	Stats
}

// Status lists every upstream of the pool, in list order, with its stats:
// the read-only view the admin API and metrics use.
func (p *Pool) Status() []UpstreamStatus {
	p.releaseExpired(p.clock.Now())
	ups := p.Upstreams()
	out := make([]UpstreamStatus, len(ups))
	for i, u := range ups {
		out[i] = UpstreamStatus{Label: u.label, Scheme: u.entry.Scheme, Stats: u.Stats()}
	}
	return out
}
