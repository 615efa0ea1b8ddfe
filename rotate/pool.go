package rotate

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// Pool dials through a rotating set of upstreams: it implements dial.Dialer
// for the front ends. Picking is lock-free (Selector); Replace swaps the set
// at any time without disturbing picks in progress or established
// connections. A Pool starts no goroutines; Close releases kept connections.
type Pool struct {
	cfg      Config
	log      *zap.Logger
	env      dialEnv
	attempts int
	timeout  time.Duration

	sel Selector
	all atomic.Pointer[[]*Upstream] // every upstream, as listed; sel holds the usable ones
	mu  sync.Mutex                  // serialises Replace
}

var _ dial.Dialer = (*Pool)(nil)

// New returns a pool over ups (see Replace), or an error from cfg.Validate.
func New(cfg Config, ups []*Upstream) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, log: cfg.Logger, attempts: cfg.attempts(), timeout: cfg.connectTimeout()}
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

// Dial opens a connection for req through the pool's upstreams. ctx bounds
// establishment only; Config.ConnectTimeout bounds it further across all
// attempts. When an attempt fails through the upstream's fault (it cannot be
// reached, breaks TLS or its handshake, refuses our credentials, answers
// 5xx, denies the target by its ruleset, or times out), Dial tries another
// upstream, up to Config.Retries more. It stops early when the target itself
// answered (refused, unreachable, name not found), since another exit would
// get the same answer, and when the caller's ctx ends or the request is
// unusable (bad target, bad session or country for a template).
//
// On success Outbound.Attempts lists every try, the successful one last. On
// failure the error is a *dial.Error naming the last upstream and wrapping
// the last attempt's error, through an *AttemptsError listing all of them
// when there were several; an empty pool gives dial.ErrNoUpstream.
func (p *Pool) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	if err := checkTarget(req.Target); err != nil {
		return nil, &dial.Error{Target: req.Target, Err: err}
	}
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	var triedBuf [4]*Upstream
	tried := triedBuf[:0]
	attempts := make([]dial.Attempt, 0, p.attempts)
	var last *Upstream
	for i := range p.attempts {
		u, err := p.pick(req, i, tried)
		if err != nil {
			if i == 0 {
				return nil, &dial.Error{Target: req.Target, Err: err}
			}
			break
		}
		tried = append(tried, u)
		actx, acancel := attemptContext(ctx, p.attempts-i)
		start := time.Now()
		out, err := u.dial(actx, req, &p.env)
		elapsed := time.Since(start)
		acancel()
		if err == nil {
			u.recordSuccess(elapsed, !out.Reused)
			out.Upstream = u.label
			out.Attempts = append(attempts, dial.Attempt{Upstream: u.label, Elapsed: elapsed})
			return out, nil
		}
		f := blame(err)
		if caller.Err() != nil {
			f = faultCaller
		}
		u.recordFailure(err, f)
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

// pick chooses the upstream for attempt i (0-based). The first attempt
// follows the rotation mode; retries take the next upstream not yet tried for
// this request, or any once all have been.
//
// Per-connection and every-N affinity map the client connection onto the
// snapshot (ConnID, plus Seq/N), so consecutive connections spread like round
// robin and no per-connection state is kept; a reload may move a connection
// to another upstream. ConnID 0 means unknown and rotates per request.
func (p *Pool) pick(req *dial.Request, i int, tried []*Upstream) (*Upstream, error) {
	if i == 0 {
		switch r := p.cfg.Rotate; {
		case req.ConnID == 0:
		case r.Mode == RotatePerConnection:
			return p.sel.At(req.ConnID)
		case r.Mode == RotateEveryN:
			return p.sel.At(req.ConnID + uint64(max(req.Seq, 0)/r.Every))
		}
		return p.sel.Next()
	}
	for range p.sel.Len() {
		u, err := p.sel.Next()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(tried, u) {
			return u, nil
		}
	}
	return p.sel.Next()
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

// ReplaceStats says what a Replace changed.
type ReplaceStats struct {
	Added, Removed, Kept int
	Duplicates           int // entries dropped because an earlier one had the same key
}

// Changed reports whether the set of upstreams changed.
func (s ReplaceStats) Changed() bool { return s.Added != 0 || s.Removed != 0 }

// Replace publishes ups as the pool's upstreams, in order, without duplicates
// (same canonical entry). An entry already in the pool keeps its *Upstream,
// and so its counters; new entries use the given ones. Picks in progress
// finish on the old snapshot, established connections are not touched, and
// Next never waits. Replacing with an empty list empties the pool (callers
// that want to keep the previous pool on an empty reload, as Updater does,
// check first).
func (p *Pool) Replace(ups []*Upstream) ReplaceStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var old []*Upstream
	if o := p.all.Load(); o != nil {
		old = *o
	}
	byKey := make(map[string]*Upstream, len(old))
	for _, u := range old {
		byKey[u.key] = u
	}
	next := make([]*Upstream, 0, len(ups))
	seen := make(map[string]struct{}, len(ups))
	var st ReplaceStats
	for _, u := range ups {
		if u == nil {
			continue
		}
		if _, dup := seen[u.key]; dup {
			st.Duplicates++
			continue
		}
		seen[u.key] = struct{}{}
		if prev, ok := byKey[u.key]; ok {
			next = append(next, prev)
			st.Kept++
		} else {
			next = append(next, u)
			st.Added++
		}
	}
	st.Removed = len(old) - st.Kept
	if p.all.Load() != nil && slices.Equal(old, next) {
		return st
	}
	p.publish(next)
	if st.Changed() {
		p.log.Debug("upstreams replaced", zap.Int("total", len(next)), zap.Int("added", st.Added),
			zap.Int("removed", st.Removed), zap.Int("duplicates", st.Duplicates))
	}
	return st
}

// publish stores the full list and the snapshot the selector picks from.
// Every upstream is usable for now; health will publish a filtered one.
func (p *Pool) publish(all []*Upstream) {
	p.all.Store(&all)
	p.sel.Store(all)
}

// Upstreams returns every upstream of the pool in list order. The slice is
// shared: do not modify it.
func (p *Pool) Upstreams() []*Upstream {
	if o := p.all.Load(); o != nil {
		return *o
	}
	return nil
}

// Len is the number of upstreams in the pool.
func (p *Pool) Len() int { return len(p.Upstreams()) }

// Close closes the keep-alive connections kept for forward requests; those
// handed back later are closed at once. Established connections are the
// caller's. Dial keeps working, without keeping connections.
func (p *Pool) Close() error {
	if p.env.idle != nil {
		return p.env.idle.Close()
	}
	return nil
}
