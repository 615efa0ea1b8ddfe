package auth

import (
	"sync"
	"time"
)

// limiter counts failed logins per client address and locks an address out
// after too many in a window. Its table is bounded: expired entries are swept
// when it grows past maxEntries, and if that frees nothing the oldest half of
// the information is dropped by starting afresh.
type limiter struct {
	max     int
	window  time.Duration
	lockout time.Duration

	mu      sync.Mutex
	entries map[string]*failures
}

const maxEntries = 65536

type failures struct {
	count  int
	since  time.Time // start of the counting window
	locked time.Time // locked out until
}

func (l *limiter) locked(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.entries[ip]
	return ok && now.Before(f.locked)
}

// fail records a failure and reports whether it just locked ip out.
func (l *limiter) fail(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.entries[ip]
	if !ok {
		if len(l.entries) >= maxEntries {
			l.sweep(now)
		}
		f = &failures{since: now}
		l.entries[ip] = f
	}
	if now.Sub(f.since) > l.window {
		f.count, f.since = 0, now
	}
	f.count++
	if f.count >= l.max {
		f.count, f.since = 0, now
		f.locked = now.Add(l.lockout)
		return true
	}
	return false
}

func (l *limiter) sweep(now time.Time) {
	for ip, f := range l.entries {
		if now.Sub(f.since) > l.window && !now.Before(f.locked) {
			delete(l.entries, ip)
		}
	}
	if len(l.entries) >= maxEntries {
		l.entries = make(map[string]*failures)
	}
}
