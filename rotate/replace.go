package rotate

import (
	"slices"

	"go.uber.org/zap"
)

// ReplaceStats says what a Replace changed.
type ReplaceStats struct {
	Added, Removed, Kept int
	Duplicates           int // entries dropped because an earlier one had the same key
}

// Changed reports whether the set of upstreams changed.
func (s ReplaceStats) Changed() bool { return s.Added != 0 || s.Removed != 0 }

// Replace publishes ups as the pool's upstreams, in order, without duplicates
// (same canonical entry). An entry already in the pool keeps its *Upstream,
// and so its counters and health; new entries use the given ones, healthy.
// Picks in progress finish on the old snapshot, established connections are
// not touched, and Next never waits. Replacing with an empty list empties the
// pool (callers that want to keep the previous pool on an empty reload, as
// Updater does, check first).
func (p *Pool) Replace(ups []*Upstream) ReplaceStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.upstreamsLocked()
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
			u.retired.Store(false)
			next = append(next, u)
			st.Added++
		}
	}
	st.Removed = len(old) - st.Kept
	if p.all.Load() != nil && slices.Equal(old, next) {
		return st
	}
	for _, u := range old {
		if _, kept := seen[u.key]; !kept {
			u.retired.Store(true)
		}
	}
	p.all.Store(&next)
	ids := make(map[string]*Upstream, len(next))
	for _, u := range next {
		ids[u.id] = u
	}
	p.ids.Store(&ids)
	p.publishLocked()
	if st.Added > 0 {
		p.askResync()
	}
	if st.Changed() {
		p.log.Debug("upstreams replaced", zap.Int("total", len(next)), zap.Int("added", st.Added),
			zap.Int("removed", st.Removed), zap.Int("duplicates", st.Duplicates))
	}
	return st
}

// publishLocked gives the selector a snapshot of the healthy upstreams: the
// full list itself while all are healthy.
func (p *Pool) publishLocked() {
	all := p.upstreamsLocked()
	healthy := all
	for i, u := range all {
		if !u.healthy() {
			healthy = make([]*Upstream, 0, len(all))
			healthy = append(healthy, all[:i]...)
			for _, v := range all[i+1:] {
				if v.healthy() {
					healthy = append(healthy, v)
				}
			}
			break
		}
	}
	p.sel.Store(healthy)
}

func (p *Pool) upstreamsLocked() []*Upstream {
	if o := p.all.Load(); o != nil {
		return *o
	}
	return nil
}

// Upstreams returns every upstream of the pool in list order, quarantined
// ones included. The slice is shared: do not modify it.
func (p *Pool) Upstreams() []*Upstream { return p.upstreamsLocked() }

// Healthy returns the upstreams in service now, in list order. The slice is
// shared: do not modify it.
func (p *Pool) Healthy() []*Upstream { return p.sel.Snapshot() }

// Len is the number of upstreams in the pool, quarantined ones included.
func (p *Pool) Len() int { return len(p.Upstreams()) }

// RefreshWeights makes PolicyWeighted use the upstreams' latest measurements
// from the next pick on (the prober calls it after each round).
func (p *Pool) RefreshWeights() {
	p.weightsAt.Store(p.clock.Now().UnixNano())
	p.sel.RefreshWeights()
}
