package rotate

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// choose returns the upstream for attempt i, waiting for a reservation or a
// min-interval slot if the rule asks for one. A reservation comes back with
// it, for the caller to attach or release.
func (p *Pool) choose(ctx context.Context, req *dial.Request, i int, tried []*Upstream, o dialOpts, host string, st *sticky) (*Upstream, *lease, error) {
	if o.minInterval <= 0 && !o.reserve {
		if i == 0 && st.usable(tried) {
			return st.current, nil, nil
		}
		u, err := p.pick(ctx, req, i, tried, o.policy)
		if err != nil {
			return nil, nil, p.noUpstream()
		}
		return u, nil, nil
	}
	var cands []*Upstream
	if i == 0 && st.usable(tried) {
		cands = []*Upstream{st.current} // the session's exit, or none
	} else {
		cands = p.candidates(ctx, req, i, tried, o.policy)
	}
	if len(cands) == 0 {
		return nil, nil, p.noUpstream()
	}
	var resv *lease
	if o.reserve {
		u, l, err := p.reserve(ctx, cands, host)
		if err != nil {
			return nil, nil, err
		}
		cands, resv = []*Upstream{u}, l
		if o.minInterval <= 0 {
			return u, resv, nil
		}
	}
	u, err := p.bookInterval(ctx, cands, host, o.minInterval)
	if err != nil {
		resv.release()
		return nil, nil, err
	}
	return u, resv, nil
}

// bookInterval takes the min-interval slot of one of cands for host: from
// the shared store when there is one and it answers, else from the pool's
// own bookings, where waiters are served in the order they booked.
func (p *Pool) bookInterval(ctx context.Context, cands []*Upstream, host string, interval time.Duration) (*Upstream, error) {
	if p.shared {
		if u, err, ok := p.chooseShared(ctx, cands[:min(len(cands), maxStoreCandidates)], host, interval); ok {
			return u, err
		}
	}
	now := p.clock.Now()
	u, at, ok := p.intervals.reserve(cands, host, interval, p.maxWait, now)
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
// all have been. tried is empty for a first attempt unless the request
// avoids an upstream (dial.Request.Avoid): a first choice among tried is
// then replaced the way a retry's would be.
//
// Per-connection and every-N affinity map the client connection onto the
// snapshot (ConnID, plus Seq/N), so consecutive connections spread like round
// robin and no per-connection state is kept; a reload or a health change may
// move a connection to another upstream. ConnID 0 means unknown and rotates
// per request.
//
// With a shared store, round robin takes its position from the cursor all
// instances share (in blocks, see blockCursor), so together they rotate
// through the pool as one.
func (p *Pool) pick(ctx context.Context, req *dial.Request, i int, tried []*Upstream, policy Policy) (*Upstream, error) {
	if i == 0 {
		u, err := p.pickFirst(ctx, req, policy)
		if err != nil || !slices.Contains(tried, u) {
			return u, err
		}
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

// pickFirst is pick's choice for a first attempt.
func (p *Pool) pickFirst(ctx context.Context, req *dial.Request, policy Policy) (*Upstream, error) {
	switch r := p.cfg.Rotate; {
	case req.ConnID == 0:
	case r.Mode == RotatePerConnection:
		return p.sel.At(req.ConnID)
	case r.Mode == RotateEveryN:
		return p.sel.At(req.ConnID + uint64(max(req.Seq, 0)/r.Every))
	}
	if p.shared && (policy == PolicyRoundRobin || policy == PolicyDefault) && p.sel.Len() > 0 {
		return p.sel.At(p.nextPosition(ctx))
	}
	return p.sel.Pick(policy)
}

// candidates lists the healthy upstreams not yet tried, the policy's choice
// first and the rest in snapshot order after it.
func (p *Pool) candidates(ctx context.Context, req *dial.Request, i int, tried []*Upstream, policy Policy) []*Upstream {
	ups := p.sel.Snapshot()
	first, err := p.pick(ctx, req, i, tried, policy)
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
