package rotate

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// Pool dials through a rotating set of upstreams: it implements dial.Dialer
// for the front ends. Picking is lock-free (Selector) over a snapshot of the
// healthy upstreams, republished whenever one is quarantined or released;
// Replace swaps the set at any time without disturbing picks in progress or
// established connections. A Pool starts no goroutines (quarantines end
// lazily, on the next Dial or probe round after their time); Close releases
// kept connections.
type Pool struct {
	cfg      Config
	log      *zap.Logger
	env      dialEnv
	clock    Clock
	attempts int
	timeout  time.Duration
	maxWait  time.Duration

	threshold   int32 // consecutive failures that quarantine; 0: never
	qBase, qMax time.Duration

	sel       Selector
	all       atomic.Pointer[[]*Upstream] // every upstream, as listed; sel holds the healthy ones
	mu        sync.Mutex                  // serialises Replace and health transitions
	sessions  *sessions                   // nil: sticky table off
	intervals intervals

	nextRelease atomic.Int64 // earliest quarantine end, unix nanoseconds; noRelease if none
	weightsAt   atomic.Int64 // last weight refresh, unix nanoseconds
}

var _ dial.Dialer = (*Pool)(nil)

// New returns a pool over ups (see Replace), or an error from cfg.Validate.
func New(cfg Config, ups []*Upstream) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg: cfg, log: cfg.Logger, clock: clockOr(cfg.Clock),
		attempts: cfg.attempts(), timeout: cfg.connectTimeout(), maxWait: cfg.maxQueueWait(),
		threshold: cfg.threshold(), sessions: cfg.sessionTable(),
	}
	p.qBase, p.qMax = cfg.quarantine()
	p.nextRelease.Store(noRelease)
	if p.log == nil {
		p.log = zap.NewNop()
	}
	base := &tls.Config{}
	if cfg.TLS != nil {
		base = cfg.TLS.Clone()
	}
	if base.ClientSessionCache == nil {
		base.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	p.env = dialEnv{tls: base, resolver: cfg.Resolver}
	if p.env.resolver == nil {
		p.env.resolver = net.DefaultResolver
	}
	if cfg.MaxIdlePerUpstream >= 0 {
		p.env.idle = &dial.IdlePool{MaxPerKey: cfg.MaxIdlePerUpstream, MaxAge: cfg.IdleTimeout}
	}
	p.Replace(ups)
	return p, nil
}

// dialOpts are what a rule may change for one request.
type dialOpts struct {
	policy      Policy
	attempts    int
	minInterval time.Duration // per (upstream, target host); 0: none
}

func (p *Pool) defaultOpts() dialOpts {
	return dialOpts{policy: p.cfg.Policy.or(PolicyRoundRobin), attempts: p.attempts}
}

// Dial opens a connection for req through the pool's healthy upstreams,
// chosen by Config.Policy. ctx bounds establishment only;
// Config.ConnectTimeout bounds it further across all attempts. When an
// attempt fails through the upstream's fault (it cannot be reached, breaks TLS
// or its handshake, refuses our credentials, answers 5xx, denies the target by
// its ruleset, or times out), Dial tries another upstream, up to
// Config.Retries more. It stops early when the target itself answered
// (refused, unreachable, name not found), since another exit would get the
// same answer, and when the caller's ctx ends or the request is unusable (bad
// target, bad country for a template).
//
// A request with a Session sticks to the upstream that last served that
// session while it is healthy and the session is younger than
// Config.SessionTTL; if that upstream fails, the session moves to the one
// that succeeds instead.
//
// On success Outbound.Attempts lists every try, the successful one last. On
// failure the error is a *dial.Error naming the last upstream and wrapping
// the last attempt's error, through an *AttemptsError listing all of them
// when there were several. With nothing to pick it wraps dial.ErrNoUpstream
// (ErrAllQuarantined when the pool has upstreams but all are quarantined).
func (p *Pool) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	return p.dial(ctx, req, p.defaultOpts())
}

func (p *Pool) dial(ctx context.Context, req *dial.Request, o dialOpts) (*dial.Outbound, error) {
	if err := checkTarget(req.Target); err != nil {
		return nil, &dial.Error{Target: req.Target, Err: err}
	}
	now := p.clock.Now()
	p.releaseExpired(now)
	if o.policy == PolicyWeighted {
		p.refreshWeightsEvery(now, 10*time.Second)
	}
	var host string
	if o.minInterval > 0 {
		host = targetHost(req.Target)
	}
	st := p.stickyState(req, now)

	caller := ctx
	timeout := p.timeout
	if o.minInterval > 0 {
		timeout += p.maxWait
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var triedBuf [4]*Upstream
	tried := triedBuf[:0]
	attempts := make([]dial.Attempt, 0, o.attempts)
	var last *Upstream
	for i := range o.attempts {
		u, err := p.choose(ctx, req, i, tried, o, host, &st)
		if err != nil {
			if i == 0 || caller.Err() != nil {
				if caller.Err() != nil {
					err = fmt.Errorf("%w: %w", context.Cause(caller), err)
				}
				return nil, &dial.Error{Target: req.Target, Err: err, Attempts: attempts}
			}
			break
		}
		tried = append(tried, u)
		seed := st.seed(u, i)
		actx, acancel := attemptContext(ctx, o.attempts-i)
		start := time.Now()
		out, err := u.dial(actx, req, &p.env, seed)
		elapsed := time.Since(start)
		acancel()
		if err == nil {
			u.recordSuccess(elapsed, !out.Reused)
			st.bind(p, u)
			out.Upstream = u.label
			out.Attempts = append(attempts, dial.Attempt{Upstream: u.label, Elapsed: elapsed})
			return out, nil
		}
		f := blame(err)
		if callerDone(caller) {
			f = faultCaller
		}
		if u.recordFailure(err, f, p.clock.Now()) {
			p.charge(u, err)
		}
		attempts = append(attempts, dial.Attempt{Upstream: u.label, Err: err, Elapsed: elapsed})
		last = u
		if !retryable(f) || ctx.Err() != nil {
			break
		}
	}
	var cause error = &AttemptsError{Attempts: attempts}
	if len(attempts) == 1 {
		cause = attempts[0].Err
	}
	if caller.Err() != nil {
		cause = fmt.Errorf("%w: %w", context.Cause(caller), cause)
	}
	return nil, &dial.Error{Upstream: last.label, Target: req.Target, Attempt: len(attempts), Err: cause}
}

// choose returns the upstream for attempt i, waiting for a min-interval slot
// if the rule has one.
func (p *Pool) choose(ctx context.Context, req *dial.Request, i int, tried []*Upstream, o dialOpts, host string, st *sticky) (*Upstream, error) {
	if o.minInterval <= 0 {
		if i == 0 && st.current != nil {
			return st.current, nil
		}
		u, err := p.pick(req, i, tried, o.policy)
		if err != nil {
			return nil, p.noUpstream()
		}
		return u, nil
	}
	var cands []*Upstream
	if i == 0 && st.current != nil {
		cands = []*Upstream{st.current} // the session's exit, or none
	} else {
		cands = p.candidates(req, i, tried, o.policy)
	}
	if len(cands) == 0 {
		return nil, p.noUpstream()
	}
	now := p.clock.Now()
	u, at, ok := p.intervals.reserve(cands, host, o.minInterval, p.maxWait, now)
	if !ok {
		return nil, ErrQueueWait
	}
	if err := p.clock.Sleep(ctx, at.Sub(now)); err != nil {
		return nil, fmt.Errorf("%w: waiting for a min-interval slot: %w", ErrQueueWait, err)
	}
	return u, nil
}

// pick chooses the upstream for attempt i (0-based) from the healthy
// snapshot. The first attempt follows the rotation mode and the policy;
// retries take another upstream not yet tried for this request, or any once
// all have been.
//
// Per-connection and every-N affinity map the client connection onto the
// snapshot (ConnID, plus Seq/N), so consecutive connections spread like round
// robin and no per-connection state is kept; a reload or a health change may
// move a connection to another upstream. ConnID 0 means unknown and rotates
// per request.
func (p *Pool) pick(req *dial.Request, i int, tried []*Upstream, policy Policy) (*Upstream, error) {
	if i == 0 {
		switch r := p.cfg.Rotate; {
		case req.ConnID == 0:
		case r.Mode == RotatePerConnection:
			return p.sel.At(req.ConnID)
		case r.Mode == RotateEveryN:
			return p.sel.At(req.ConnID + uint64(max(req.Seq, 0)/r.Every))
		}
		return p.sel.Pick(policy)
	}
	for range p.sel.Len() {
		u, err := p.sel.Pick(policy)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(tried, u) {
			return u, nil
		}
	}
	for _, u := range p.sel.Snapshot() {
		if !slices.Contains(tried, u) {
			return u, nil
		}
	}
	return p.sel.Pick(policy)
}

// candidates lists the healthy upstreams not yet tried, the policy's choice
// first and the rest in snapshot order after it.
func (p *Pool) candidates(req *dial.Request, i int, tried []*Upstream, policy Policy) []*Upstream {
	ups := p.sel.Snapshot()
	first, err := p.pick(req, i, tried, policy)
	if err != nil {
		return nil
	}
	at := slices.Index(ups, first)
	out := make([]*Upstream, 0, len(ups))
	out = append(out, first)
	for k := 1; k < len(ups); k++ {
		if u := ups[(max(at, 0)+k)%len(ups)]; u != first && !slices.Contains(tried, u) {
			out = append(out, u)
		}
	}
	return out
}

// callerDone reports that the caller's context has ended or reached its
// deadline (a connection deadline taken from it may fire a moment before the
// context itself reports it).
func callerDone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// targetHost is the host part of target, lower case, without a final dot.
func targetHost(target string) string {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// attemptContext bounds one attempt to its share of what remains of ctx,
// with left attempts (this one included) to go.
func attemptContext(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok || left <= 1 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Until(dl)/time.Duration(left))
}

// refreshWeightsEvery makes PolicyWeighted recompute its weights when they
// are older than every.
func (p *Pool) refreshWeightsEvery(now time.Time, every time.Duration) {
	last := p.weightsAt.Load()
	if now.UnixNano()-last < int64(every) {
		return
	}
	if p.weightsAt.CompareAndSwap(last, now.UnixNano()) {
		p.sel.RefreshWeights()
	}
}

// Close closes the keep-alive connections kept for forward requests; those
// handed back later are closed at once. Established connections are the
// caller's. Dial keeps working, without keeping connections.
func (p *Pool) Close() error {
	if p.env.idle != nil {
		return p.env.idle.Close()
	}
	return nil
}
