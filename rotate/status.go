package rotate

import (
	"net/netip"
	"time"
)

// Stats is a point-in-time copy of an upstream's health and counters, read
// without locking (fields may be a moment apart from each other).
type Stats struct {
	State State
	// QuarantinedUntil is when the quarantine ends (zero while healthy).
	QuarantinedUntil time.Time
	// Quarantines counts how often the upstream was put out of service.
	Quarantines uint64
	// ConsecutiveFailures counts failures of its own since its last success.
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
	// the first.
	SuccessRate float64

	// Probes and ProbeFailures count the prober's checks; ProbeLatency is
	// their moving average time (1/8 weight), zero before the first success.
	Probes        uint64
	ProbeFailures uint64
	ProbeLatency  time.Duration
	LastProbeAt   time.Time
	// ExitIP and Anonymity are what the judge saw through the upstream last;
	// invalid and AnonymityUnknown without a judge.
	ExitIP    netip.Addr
	Anonymity Anonymity

	LastError   error // most recent failed attempt or probe, nil if none
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
