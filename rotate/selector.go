package rotate

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/hopper-proxy/hopper/dial"
)

// Selector hands out upstreams from an immutable snapshot: Next in strict
// round robin, Pick by any Policy. Picks never lock; Next and Pick never
// allocate (PolicyWeighted builds its table once per snapshot and refresh).
// Store publishes a new snapshot without waiting for readers. The zero value
// is an empty selector.
//
// A pool stores only its healthy upstreams, so no pick ever skips an entry:
// skipping at pick time would hand the entry after a quarantined one a
// double share of the round robin.
//
// Concurrent Next calls get distinct upstreams as long as fewer calls are in
// flight than the snapshot holds, since each takes its own cursor position.
type Selector struct {
	snap atomic.Pointer[snapshot]
	// The cursor is written by every pick; keep it off the cache line of the
	// read-mostly snapshot pointer.
	_      [56]byte
	cursor atomic.Uint64
	_      [56]byte
	// randN returns a uniform number in [0, n); nil means math/rand/v2.
	// Tests set a seeded source.
	randN func(n uint64) uint64
}

type snapshot struct {
	ups     []*Upstream
	weights atomic.Pointer[[]uint64] // cumulative, for PolicyWeighted; nil until needed
}

// Next returns the next upstream, wrapping around at the end of the
// snapshot, or dial.ErrNoUpstream when the snapshot is empty.
func (s *Selector) Next() (*Upstream, error) {
	p := s.snap.Load()
	if p == nil || len(p.ups) == 0 {
		return nil, dial.ErrNoUpstream
	}
	ups := p.ups
	return ups[(s.cursor.Add(1)-1)%uint64(len(ups))], nil
}

// Pick returns an upstream chosen by policy (PolicyDefault is round robin),
// or dial.ErrNoUpstream when the snapshot is empty.
func (s *Selector) Pick(policy Policy) (*Upstream, error) {
	p := s.snap.Load()
	if p == nil || len(p.ups) == 0 {
		return nil, dial.ErrNoUpstream
	}
	ups := p.ups
	n := uint64(len(ups))
	switch policy {
	case PolicyRandom:
		return ups[s.rand(n)], nil
	case PolicyLeastLatency:
		if n == 1 {
			return ups[0], nil
		}
		i := s.rand(n)
		j := (i + 1 + s.rand(n-1)) % n // another one
		a, b := ups[i], ups[j]
		la, lb := a.selLatency(), b.selLatency()
		switch {
		case la == 0:
			return a, nil
		case lb == 0 || lb < la:
			return b, nil
		}
		return a, nil
	case PolicyWeighted:
		cum := p.weights.Load()
		if cum == nil {
			w := buildWeights(ups)
			p.weights.CompareAndSwap(nil, &w)
			cum = p.weights.Load()
		}
		c := *cum
		r := s.rand(c[len(c)-1])
		lo, hi := 0, len(c)-1 // first index with c[i] > r
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if c[mid] > r {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		return ups[lo], nil
	default:
		return ups[(s.cursor.Add(1)-1)%n], nil
	}
}

func (s *Selector) rand(n uint64) uint64 {
	if s.randN != nil {
		return s.randN(n)
	}
	return rand.Uint64N(n)
}

// At returns the upstream at position i modulo the snapshot's length, for
// affinity (the same i picks the same upstream while the snapshot stands), or
// dial.ErrNoUpstream when the snapshot is empty.
func (s *Selector) At(i uint64) (*Upstream, error) {
	p := s.snap.Load()
	if p == nil || len(p.ups) == 0 {
		return nil, dial.ErrNoUpstream
	}
	return p.ups[i%uint64(len(p.ups))], nil
}

// Len is the size of the current snapshot.
func (s *Selector) Len() int {
	if p := s.snap.Load(); p != nil {
		return len(p.ups)
	}
	return 0
}

// Snapshot returns the current snapshot. It is shared: do not modify it.
func (s *Selector) Snapshot() []*Upstream {
	if p := s.snap.Load(); p != nil {
		return p.ups
	}
	return nil
}

// Store publishes ups as the new snapshot; the selector keeps the slice, so
// the caller must not modify it afterwards. The cursor carries on, so the
// rotation continues from where it was rather than restarting at the first
// entry.
func (s *Selector) Store(ups []*Upstream) {
	s.snap.Store(&snapshot{ups: ups})
}

// RefreshWeights makes the next PolicyWeighted pick recompute the weights
// from the upstreams' current measurements.
func (s *Selector) RefreshWeights() {
	if p := s.snap.Load(); p != nil {
		p.weights.Store(nil)
	}
}

// weightScale is the integer weight of a perfect upstream.
const weightScale = 1_000_000

// buildWeights returns cumulative weights for ups (see Stats.Score).
func buildWeights(ups []*Upstream) []uint64 {
	var best int64
	for _, u := range ups {
		if l := int64(u.selLatency()); l > 0 && (best == 0 || l < best) {
			best = l
		}
	}
	cum := make([]uint64, len(ups))
	var total uint64
	for i, u := range ups {
		total += uint64(score(u.successRate(), int64(u.selLatency()), best) * weightScale)
		cum[i] = total
	}
	return cum
}

// score is rate² × best/latency, at least 1/100 so that every upstream keeps
// getting some traffic (and so keeps being measured). An unmeasured latency
// counts as the best.
func score(rate float64, latency, best int64) float64 {
	s := rate * rate
	if latency > 0 && best > 0 {
		s *= float64(best) / float64(latency)
	}
	return max(s, 0.01)
}
