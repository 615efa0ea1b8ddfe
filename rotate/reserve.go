package rotate

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// lease is one connection's reservation of an exit for a target host (a
// rule with reserve: true): a key held in a store with an owner token that
// is unique to the connection. It is released when the connection's
// Outbound is done, renewed by Pool.Sync while the connection lives, and
// expires by its TTL if the instance dies.
type lease struct {
	store      Store // where it is held: the pool's store, or the local fallback
	key, owner string
	ctx        context.Context // the request's values, without its cancellation
	set        *leaseSet
	done       atomic.Bool
}

// leaseSet is the pool's live leases, for renewal.
type leaseSet struct {
	mu sync.Mutex
	m  map[*lease]struct{}
}

func (s *leaseSet) add(l *lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[*lease]struct{})
	}
	s.m[l] = struct{}{}
}

func (s *leaseSet) remove(l *lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, l)
}

func (s *leaseSet) list() []*lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*lease, 0, len(s.m))
	for l := range s.m {
		out = append(out, l)
	}
	return out
}

// release frees the reservation once; nil-safe.
func (l *lease) release() {
	if l == nil || l.done.Swap(true) {
		return
	}
	l.set.remove(l)
	_ = l.store.Release(l.ctx, l.key, l.owner)
}

// attach makes out's Done release the lease before giving the connection
// back as it would have been (to an idle pool, or closed). The connection
// itself is not wrapped, so relaying it keeps the splice path.
func (l *lease) attach(out *dial.Outbound) {
	if l == nil {
		return
	}
	prev := out.Release
	out.Release = func(o *dial.Outbound, reusable bool) {
		l.release()
		if prev != nil {
			prev(o, reusable)
			return
		}
		_ = o.Conn.Close()
	}
}

// Polling bounds while waiting for a reserved exit to free up: releases
// are not announced, so a waiter checks again soon, then less often.
const (
	reservePollMin = 20 * time.Millisecond
	reservePollMax = 500 * time.Millisecond
)

// reserve takes, for host, the first exit among cands (preference order)
// that no connection of any instance holds, waiting up to the maximum queue
// wait for one to free up; then it fails with ErrQueueWait (503). While the
// shared store is unreachable, reservations are held in the local fallback:
// exclusive within this instance only.
func (p *Pool) reserve(ctx context.Context, cands []*Upstream, host string) (*Upstream, *lease, error) {
	cands = cands[:min(len(cands), maxStoreCandidates)]
	keys := make([]string, len(cands))
	for i, c := range cands {
		keys[i] = "reserve:" + host + ":" + c.id
	}
	owner := p.instance + "-" + strconv.FormatUint(p.leaseSeq.Add(1), 36)
	sctx := storeCtx(ctx)
	deadline := p.clock.Now().Add(p.maxWait)
	poll := reservePollMin
	for {
		store := p.store
		i, wait, err := store.Acquire(sctx, keys, owner, p.reserveTTL)
		if err != nil && store != p.local {
			store = p.local
			i, wait, err = store.Acquire(sctx, keys, owner, p.reserveTTL)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: reserving an exit: %w", dial.ErrNoUpstream, err)
		}
		if i >= 0 {
			l := &lease{store: store, key: keys[i], owner: owner, ctx: sctx, set: &p.leases}
			p.leases.add(l)
			return cands[i], l, nil
		}
		now := p.clock.Now()
		if !now.Before(deadline) {
			return nil, nil, ErrReserved
		}
		d := min(wait, poll, deadline.Sub(now))
		poll = min(2*poll, reservePollMax)
		if err := p.clock.Sleep(ctx, max(d, time.Millisecond)); err != nil {
			return nil, nil, fmt.Errorf("%w: waiting for a free exit: %w", ErrReserved, err)
		}
	}
}

// ErrReserved: every exit of the pool is reserved for this target host by
// other connections for longer than Config.MaxQueueWait. It wraps
// ErrQueueWait (503 no-upstream).
var ErrReserved = fmt.Errorf("%w (every exit is reserved for this host)", ErrQueueWait)

// renewLeases extends every live reservation; one that another owner took
// meanwhile (after a long store outage) is logged and left to its tunnel.
func (p *Pool) renewLeases(ctx context.Context) {
	for _, l := range p.leases.list() {
		if l.done.Load() {
			continue
		}
		ok, err := l.store.Renew(ctx, l.key, l.owner, p.reserveTTL)
		if err == nil && !ok {
			p.log.Debug("reservation lost to another connection while held", zap.String("key", l.key))
		}
	}
}
