package rotate

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// sticky is one request's view of its sticky session.
type sticky struct {
	on      bool // the request names a session
	key     sessionKey
	prev    *Upstream // the session's upstream before this request, if any
	current *Upstream // prev, if it may still be used
	gen     uint32    // generation of the attempt in progress
	now     time.Time
	reshare bool // the shared store lacks the binding: write it again
}

// stickyState looks the request's session up. A session whose upstream was
// quarantined or removed moves: its generation advances so that a templated
// upstream gets a new provider session (a new exit) too.
//
// With a shared store the store's binding wins, so a session keeps its
// upstream whichever instance its connections land on; while the store is
// unreachable the local table answers.
func (p *Pool) stickyState(ctx context.Context, req *dial.Request, now time.Time) sticky {
	st := sticky{on: req.Session != "", now: now}
	if !st.on {
		return st
	}
	st.key = sessionKey{user: req.User, id: req.Session, country: req.Country}
	if p.sessions == nil {
		return st
	}
	var u *Upstream
	var gen uint32
	found := false
	if p.shared {
		var look sessionLookup
		u, gen, look = p.sharedSession(ctx, st.key)
		switch look {
		case sessionFound:
			found = true
		case sessionForeign:
			st.gen = gen + 1 // its upstream left this pool: it moves
			return st
		case sessionMissing:
			st.reshare = true
		}
	}
	if !found {
		u, gen, found = p.sessions.get(st.key, now)
	}
	if !found {
		return st
	}
	st.prev, st.gen = u, gen
	if u.healthy() && !u.retired.Load() {
		st.current = u
	} else {
		st.gen++
	}
	return st
}

// seed is the template seed for an attempt: fresh for requests without a
// session, derived from the session otherwise. A retry is a move to another
// exit (even through the same templated upstream), so it advances the
// generation.
func (st *sticky) seed(retry bool) uint64 {
	if !st.on {
		return 0
	}
	if retry {
		st.gen++
	}
	return stickySeed(st.key, st.gen)
}

// usable reports that the session's upstream may serve the first attempt:
// it has one and the request does not avoid it (tried holds only avoided
// upstreams then).
func (st *sticky) usable(tried []*Upstream) bool {
	return st.current != nil && !slices.Contains(tried, st.current)
}

// moves reports that a first attempt through u, for a request that avoids
// the upstreams in avoid, is a retry: it goes back through an avoided
// upstream (which needs another exit), or the session's own upstream is
// avoided (the session moves, as after a failed dial).
func (st *sticky) moves(avoid []*Upstream, u *Upstream) bool {
	if len(avoid) == 0 {
		return false
	}
	return slices.Contains(avoid, u) || (st.current != nil && slices.Contains(avoid, st.current))
}

// bind records that the session's connection succeeded through u.
func (st *sticky) bind(ctx context.Context, p *Pool, u *Upstream) {
	if !st.on || p.sessions == nil {
		return
	}
	share := p.sessions.put(st.key, u, st.gen, st.now)
	if p.shared && (share || st.reshare) {
		p.shareSession(ctx, st.key, u, st.gen)
	}
	if st.prev != nil && st.prev != u {
		p.log.Debug("sticky session moved", zap.String("from", st.prev.label), zap.String("to", u.label))
	}
}
