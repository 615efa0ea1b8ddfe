package rotate

import (
	"sync/atomic"

	"github.com/hopper-proxy/hopper/dial"
)

// Selector hands out upstreams in strict round robin from an immutable
// snapshot. Next never locks and never allocates; Store publishes a new
// snapshot without waiting for readers. The zero value is an empty selector.
//
// Concurrent Next calls get distinct upstreams as long as fewer calls are in
// flight than the snapshot holds, since each takes its own cursor position.
type Selector struct {
	snap atomic.Pointer[[]*Upstream]
	// The cursor is written by every pick; keep it off the cache line of the
	// read-mostly snapshot pointer.
	_      [56]byte
	cursor atomic.Uint64
	_      [56]byte
}

// Next returns the next upstream, wrapping around at the end of the
// snapshot, or dial.ErrNoUpstream when the snapshot is empty.
func (s *Selector) Next() (*Upstream, error) {
	p := s.snap.Load()
	if p == nil || len(*p) == 0 {
		return nil, dial.ErrNoUpstream
	}
	ups := *p
	return ups[(s.cursor.Add(1)-1)%uint64(len(ups))], nil
}

// At returns the upstream at position i modulo the snapshot's length, for
// affinity (the same i picks the same upstream while the snapshot stands), or
// dial.ErrNoUpstream when the snapshot is empty.
func (s *Selector) At(i uint64) (*Upstream, error) {
	p := s.snap.Load()
	if p == nil || len(*p) == 0 {
		return nil, dial.ErrNoUpstream
	}
	ups := *p
	return ups[i%uint64(len(ups))], nil
}

// Len is the size of the current snapshot.
func (s *Selector) Len() int {
	if p := s.snap.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// Snapshot returns the current snapshot. It is shared: do not modify it.
func (s *Selector) Snapshot() []*Upstream {
	if p := s.snap.Load(); p != nil {
		return *p
	}
	return nil
}

// Store publishes ups as the new snapshot; the selector keeps the slice, so
// the caller must not modify it afterwards. The cursor carries on, so the
// rotation continues from where it was rather than restarting at the first
// entry.
func (s *Selector) Store(ups []*Upstream) {
	s.snap.Store(&ups)
}
