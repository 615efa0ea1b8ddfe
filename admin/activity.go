package admin

import (
	"sync"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// The status page's history: SeriesStep-wide buckets over the last
// seriesLen×SeriesStep, and the last maxRecentErrors failures.
const (
	SeriesStep      = 2 * time.Second
	seriesLen       = 90
	maxRecentErrors = 50
)

// Sample is one bucket of the throughput series: tunnels that ended in it
// and the bytes they moved.
type Sample struct {
	At      time.Time `json:"at"` // start of the bucket
	Up      int64     `json:"up"`
	Down    int64     `json:"down"`
	Tunnels int       `json:"tunnels"`
	Errors  int       `json:"errors"`
}

// RecentError is one failed tunnel or request.
type RecentError struct {
	At       time.Time `json:"at"`
	Proto    string    `json:"proto"`
	Result   string    `json:"result"`
	Target   string    `json:"target"`
	Upstream string    `json:"upstream"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
}

// activity keeps the series and the recent errors behind one mutex, held
// for a few field updates per tunnel.
type activity struct {
	mu    sync.Mutex
	ring  [seriesLen]bucket
	errs  [maxRecentErrors]RecentError
	nErrs uint64 // errors ever recorded; errs[(nErrs-1)%len] is the newest
}

type bucket struct {
	slot     int64 // unix time / SeriesStep; 0 marks an unused bucket
	up, down int64
	tunnels  int
	errors   int
}

func slotOf(t time.Time) int64 { return t.UnixNano() / int64(SeriesStep) }

// add accounts r, which ended at now, and keeps it as a recent error when
// failed. The error text is rendered only for failures.
func (a *activity) add(now time.Time, r *dial.Record, failed bool) {
	var e RecentError
	if failed {
		e = RecentError{At: now, Proto: r.Protocol.String(), Result: r.Result, Target: r.Target,
			Upstream: r.Upstream, Attempts: r.Attempts}
		if r.Err != nil {
			e.Error = r.Err.Error()
		}
	}
	slot := slotOf(now)
	a.mu.Lock()
	defer a.mu.Unlock()
	b := &a.ring[slot%seriesLen]
	if b.slot != slot {
		*b = bucket{slot: slot}
	}
	b.up += r.Up
	b.down += r.Down
	b.tunnels++
	if failed {
		b.errors++
		a.errs[a.nErrs%maxRecentErrors] = e
		a.nErrs++
	}
}

// series returns the buckets of the last seriesLen steps up to now, oldest
// first, zero where nothing ended.
func (a *activity) series(now time.Time) []Sample {
	last := slotOf(now)
	out := make([]Sample, seriesLen)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range out {
		slot := last - int64(seriesLen-1-i)
		out[i].At = time.Unix(0, slot*int64(SeriesStep)).UTC()
		if b := &a.ring[slot%seriesLen]; b.slot == slot {
			out[i].Up, out[i].Down, out[i].Tunnels, out[i].Errors = b.up, b.down, b.tunnels, b.errors
		}
	}
	return out
}

// recentErrors returns the kept errors, newest first.
func (a *activity) recentErrors() []RecentError {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := min(a.nErrs, maxRecentErrors)
	out := make([]RecentError, 0, n)
	for i := uint64(1); i <= n; i++ {
		out = append(out, a.errs[(a.nErrs-i)%maxRecentErrors])
	}
	return out
}
