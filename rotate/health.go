package rotate

import (
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// State is whether an upstream is in service.
type State uint8

// Upstream states.
const (
	// StateHealthy: in the selector's snapshot, picked for new connections.
	StateHealthy State = iota
	// StateQuarantined: out of the snapshot until its quarantine ends or a
	// probe finds it working again.
	StateQuarantined
)

func (s State) String() string {
	switch s {
	case StateHealthy:
		return "healthy"
	case StateQuarantined:
		return "quarantined"
	default:
		return "invalid"
	}
}

// MarshalText renders the state's name, for JSON status output.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// quarantineCause says why an upstream was put out of service, which decides
// what may bring it back early.
type quarantineCause uint8

const (
	causeFailures quarantineCause = iota // consecutive failures: a working probe releases it
	causeLeak                            // a judge saw it leak: a clean probe releases it
	causeExitIP                          // its exit IP changed: only the period's end releases it
)

func (c quarantineCause) String() string {
	switch c {
	case causeLeak:
		return "leaks the client address or proxy headers"
	case causeExitIP:
		return "exit IP changed"
	default:
		return "consecutive failures"
	}
}

// Errors wrapping dial.ErrNoUpstream (503 no-upstream) that say why nothing
// could be used.
var (
	// ErrAllQuarantined: the pool has upstreams, but every one is quarantined.
	ErrAllQuarantined = fmt.Errorf("%w: every upstream is quarantined", dial.ErrNoUpstream)
	// ErrQueueWait: a minimum interval keeps every upstream from this target
	// host for longer than Config.MaxQueueWait.
	ErrQueueWait = fmt.Errorf("%w: no upstream free for this host within the maximum queue wait", dial.ErrNoUpstream)
)

const noRelease = math.MaxInt64

// charge quarantines u if a failure just made its consecutive count reach the
// threshold. Only a transition takes the lock and republishes.
func (p *Pool) charge(u *Upstream, err error) {
	if p.threshold <= 0 || u.consec.Load() < p.threshold || !u.healthy() {
		return
	}
	p.quarantine(u, causeFailures, err)
}

// chargeReported counts a failure reported after a successful dial and
// quarantines u when FailuresUntilQuarantine of them came each within the
// base quarantine period of the previous one (successful dials in between
// do not clear them: every one of those failures followed one).
func (p *Pool) chargeReported(u *Upstream, now time.Time, err error) {
	last := u.reportedAt.Swap(now.UnixNano())
	n := u.reported.Add(1)
	if last == 0 || now.Sub(time.Unix(0, last)) > p.qBase {
		n = 1
		u.reported.Store(1)
	}
	if p.threshold > 0 && n >= p.threshold && u.healthy() {
		u.reported.Store(0)
		p.quarantine(u, causeFailures, err)
	}
}

// quarantine takes u out of service for its period: Config.Quarantine,
// doubled for each offence since it last stayed healthy for
// Config.MaxQuarantine, up to Config.MaxQuarantine. It logs the transition
// once and publishes a snapshot without u.
func (p *Pool) quarantine(u *Upstream, cause quarantineCause, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !u.healthy() || u.retired.Load() {
		return
	}
	now := p.clock.Now()
	if !u.releasedAt.IsZero() && now.Sub(u.releasedAt) >= p.qMax {
		u.offences = 0
	}
	period := p.qBase
	for i := 0; i < u.offences && period < p.qMax; i++ {
		period *= 2
	}
	period = min(period, p.qMax)
	u.offences++
	u.cause = cause
	until := now.Add(period)
	u.until.Store(until.UnixNano())
	u.state.Store(uint32(StateQuarantined))
	u.quarantines.Add(1)
	if until.UnixNano() < p.nextRelease.Load() {
		p.nextRelease.Store(until.UnixNano())
	}
	p.markDirtyLocked(u, now)
	p.publishLocked()
	fields := []zap.Field{
		zap.String("upstream", u.label), zap.String("reason", cause.String()),
		zap.Duration("for", period), zap.Time("until", until), zap.Int("offence", u.offences),
		zap.Int("healthy", p.sel.Len()), zap.Int("total", len(p.upstreamsLocked())),
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	p.log.Warn("upstream quarantined", fields...)
}

// release puts u back in service at once (a probe found it working). It
// reports whether u was quarantined.
func (p *Pool) release(u *Upstream, reason string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u.healthy() {
		return false
	}
	now := p.clock.Now()
	p.releaseLocked(u, now)
	p.markDirtyLocked(u, now)
	p.publishLocked()
	p.logReleased(u, reason)
	return true
}

// releaseLocked marks u healthy on probation: one more failure of its own
// puts it back in quarantine, a success clears the count.
func (p *Pool) releaseLocked(u *Upstream, now time.Time) {
	u.state.Store(uint32(StateHealthy))
	u.until.Store(0)
	u.releasedAt = now
	u.consec.Store(max(p.threshold-1, 0))
}

func (p *Pool) logReleased(u *Upstream, reason string) {
	p.log.Info("upstream released", zap.String("upstream", u.label), zap.String("reason", reason),
		zap.Int("healthy", p.sel.Len()))
}

// releaseExpired releases every upstream whose quarantine has ended by now.
// It is called on the dial path and by the prober; it costs one atomic load
// unless a release is due.
func (p *Pool) releaseExpired(now time.Time) {
	if nr := p.nextRelease.Load(); nr == noRelease || now.UnixNano() < nr {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next := int64(noRelease)
	var released []*Upstream
	for _, u := range p.upstreamsLocked() {
		if u.healthy() {
			continue
		}
		if until := u.until.Load(); until <= now.UnixNano() {
			p.releaseLocked(u, now)
			released = append(released, u)
		} else {
			next = min(next, until)
		}
	}
	p.nextRelease.Store(next)
	if len(released) > 0 {
		p.publishLocked()
	}
	for _, u := range released {
		p.logReleased(u, "quarantine ended")
	}
}

// noUpstream explains an empty snapshot.
func (p *Pool) noUpstream() error {
	if p.Len() > 0 {
		return ErrAllQuarantined
	}
	return dial.ErrNoUpstream
}
