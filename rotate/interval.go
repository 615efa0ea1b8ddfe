package rotate

import (
	"sync"
	"time"
)

// intervals keeps, per (upstream, target host), the earliest time the
// upstream may next be used for that host under a rule's min-interval. A
// request reserves a slot under the lock and then sleeps until it, so waiters
// never poll and are served in the order they reserved.
type intervals struct {
	mu      sync.Mutex
	next    map[intervalKey]time.Time
	sweepAt int
}

type intervalKey struct {
	u    *Upstream
	host string
}

const minIntervalSweep = 4096

// reserve chooses the upstream among cands (in preference order) that is free
// soonest for host, books it from then on for interval, and returns it with
// the time it may be used. ok is false when even the soonest is further off
// than maxWait; nothing is booked then.
func (iv *intervals) reserve(cands []*Upstream, host string, interval, maxWait time.Duration, now time.Time) (best *Upstream, at time.Time, ok bool) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.next == nil {
		iv.next = make(map[intervalKey]time.Time)
	}
	for _, u := range cands {
		free := iv.next[intervalKey{u, host}]
		if free.Before(now) {
			free = now
		}
		if best == nil || free.Before(at) {
			best, at = u, free
			if !at.After(now) {
				break
			}
		}
	}
	if best == nil || at.Sub(now) > maxWait {
		return nil, time.Time{}, false
	}
	iv.next[intervalKey{best, host}] = at.Add(interval)
	iv.sweepLocked(now)
	return best, at, true
}

// sweepLocked drops bookings that have passed once the map has doubled since
// the last sweep, so its size follows the request rate times the interval.
func (iv *intervals) sweepLocked(now time.Time) {
	if len(iv.next) < max(iv.sweepAt, minIntervalSweep) {
		return
	}
	for k, t := range iv.next {
		if !t.After(now) {
			delete(iv.next, k)
		}
	}
	iv.sweepAt = 2 * len(iv.next)
}
