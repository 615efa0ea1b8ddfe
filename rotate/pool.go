package rotate

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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

	// Shared state (shared.go, health_shared.go, reserve.go, sync.go).
	store      Store
	shared     bool  // store is seen by other instances
	local      Store // reservations while a shared store is unreachable; store itself otherwise
	name       string
	cursorKey  string
	instance   string // tags this pool's events and lease owners
	reserveTTL time.Duration
	syncEvery  time.Duration
	cursor     blockCursor
	ids        atomic.Pointer[map[string]*Upstream] // by Upstream.id
	leases     leaseSet
	leaseSeq   atomic.Uint64
	dirty      chan *Upstream // health changes for Sync to push
	resyncNow  chan struct{}
}

var _ dial.Dialer = (*Pool)(nil)

// New returns a pool over ups (see Replace), or an error from cfg.Validate.
func New(cfg Config, ups []*Upstream) (*Pool, error) {
	return newPool(cfg, ups, nil)
}

// newPool builds a pool whose reservations fall back to local (a store
// Router shares among its pools) while a shared store is unreachable; nil
// local means a store of the pool's own.
func newPool(cfg Config, ups []*Upstream, local Store) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg: cfg, log: cfg.Logger, clock: clockOr(cfg.Clock),
		attempts: cfg.attempts(), timeout: cfg.connectTimeout(), maxWait: cfg.maxQueueWait(),
		threshold: cfg.threshold(), sessions: cfg.sessionTable(),
	}
	p.qBase, p.qMax = cfg.quarantine()
	p.initShared(cfg, local)
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

// initShared sets up the pool's use of its store.
func (p *Pool) initShared(cfg Config, local Store) {
	p.store = cfg.Store
	if local == nil {
		local = NewMemoryStore(p.clock)
	}
	if p.store == nil {
		p.store = local
	}
	p.local = local
	p.shared = p.store.Health().Shared
	if !p.shared {
		p.local = p.store
	}
	p.name = cfg.Name
	if p.name == "" {
		p.name = DefaultPoolName
	}
	p.cursorKey = p.key("cursor")
	p.instance = newInstanceID()
	p.reserveTTL = cfg.ReserveTTL
	if p.reserveTTL == 0 {
		p.reserveTTL = DefaultReserveTTL
	}
	p.syncEvery = cfg.SyncInterval
	if p.syncEvery == 0 {
		p.syncEvery = DefaultSyncInterval
	}
	p.cursor.max = int64(cfg.CursorBlock)
	if p.cursor.max == 0 {
		p.cursor.max = DefaultCursorBlock
	}
	p.dirty = make(chan *Upstream, dirtyQueue)
	p.resyncNow = make(chan struct{}, 1)
}

// dialOpts are what a rule may change for one request.
type dialOpts struct {
	policy      Policy
	attempts    int
	minInterval time.Duration // per (upstream, target host); 0: none
	reserve     bool          // one connection per (exit, target host) at a time
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
// A request sent again after an upstream failed it past the dial
// (dial.Request.Avoid, e.g. a forward request it never answered) is dialled
// as a retry after that upstream's attempt: through another healthy
// upstream of the pool its rule picks, with the rule's policy and queues,
// even when per-connection rotation or a sticky session would have pinned
// it to the avoided one; through the avoided one only when no other is in
// service. A sticky session bound to it moves as above, and a templated
// upstream used again for it gets a new provider session (a new exit).
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
	queued := o.minInterval > 0 || o.reserve
	if queued {
		host = targetHost(req.Target)
	}
	st := p.stickyState(ctx, req, now)

	caller := ctx
	timeout := p.timeout
	if queued {
		timeout += p.maxWait
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var triedBuf [4]*Upstream
	// A request sent again after its upstream failed it past the dial
	// (req.Avoid) starts with that upstream counted as tried, so that the
	// retry mechanism below steers away from it.
	tried := p.appendAvoided(triedBuf[:0], req.Avoid)
	avoid := tried[:len(tried):len(tried)]
	attempts := make([]dial.Attempt, 0, o.attempts)
	var last *Upstream
	for i := range o.attempts {
		u, resv, err := p.choose(ctx, req, i, tried, o, host, &st)
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
		seed := st.seed(i > 0 || st.moves(avoid, u))
		actx, acancel := attemptContext(ctx, o.attempts-i)
		start := time.Now()
		out, err := u.dial(actx, req, &p.env, seed)
		elapsed := time.Since(start)
		acancel()
		if err == nil {
			p.sharedSuccess(ctx, u, u.recordSuccess(elapsed, !out.Reused))
			st.bind(ctx, p, u)
			resv.attach(out)
			out.Upstream = u.label
			out.Attempts = append(attempts, dial.Attempt{Upstream: u.label, Elapsed: elapsed})
			return out, nil
		}
		resv.release()
		f := blame(err)
		if callerDone(caller) {
			f = faultCaller
		}
		if u.recordFailure(err, f, p.clock.Now()) {
			p.sharedFailure(ctx, u)
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
	return nil, &dial.Error{Upstream: last.label, Target: req.Target, Attempt: len(attempts), Err: cause, Attempts: attempts}
}

// appendAvoided appends to tried every upstream of the pool labelled label
// (labels are redacted, so entries that differ only in credentials share
// one); none when label is "".
func (p *Pool) appendAvoided(tried []*Upstream, label string) []*Upstream {
	if label == "" {
		return tried
	}
	for _, u := range p.Upstreams() {
		if u.label == label {
			tried = append(tried, u)
		}
	}
	return tried
}

// ReportFailure charges the upstream labelled label (Upstream.Label) with a
// failure of its own that a later stage observed, such as an origin banning
// its exit (repeated 403s seen by the MITM stage). It counts towards
// quarantine like a failed dial. It reports whether the pool holds such an
// upstream.
func (p *Pool) ReportFailure(ctx context.Context, label string, err error) bool {
	for _, u := range p.Upstreams() {
		if u.label != label {
			continue
		}
		now := p.clock.Now()
		if u.recordFailure(err, faultUpstream, now) {
			p.sharedFailure(ctx, u)
			p.charge(u, err)
			p.chargeReported(u, now, err)
		}
		return true
	}
	return false
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
