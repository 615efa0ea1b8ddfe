package rotate

import (
	"container/list"
	"sync"
	"time"
)

// Defaults for sticky sessions.
const (
	DefaultSessionTTL  = 10 * time.Minute
	DefaultMaxSessions = 65536
)

// sessionKey names a sticky session: the same ID under another account, or
// asking for another country, is another session.
type sessionKey struct {
	user, id, country string
}

type sessionEntry struct {
	key    sessionKey
	u      *Upstream
	gen    uint32 // how often the session moved; part of its template seed
	last   time.Time
	shared time.Time // when this binding was last written to a shared store
}

// sessions is a pool's sticky-session table: bounded in age (TTL since last
// use) and in size (least recently used entries go first). Expired entries
// are dropped lazily from the old end on every access, so the table needs no
// goroutine.
type sessions struct {
	ttl time.Duration
	max int

	mu  sync.Mutex
	m   map[sessionKey]*list.Element
	lru list.List // front: most recently used; values are *sessionEntry
}

func newSessions(ttl time.Duration, max int) *sessions {
	return &sessions{ttl: ttl, max: max, m: make(map[sessionKey]*list.Element)}
}

// get returns the session's upstream and generation, if it has a live entry.
// It does not refresh the entry's age: only a successful connection does.
func (s *sessions) get(k sessionKey, now time.Time) (u *Upstream, gen uint32, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	el, found := s.m[k]
	if !found {
		return nil, 0, false
	}
	e := el.Value.(*sessionEntry)
	return e.u, e.gen, true
}

// put binds the session to u (a connection through it just succeeded). It
// reports whether a shared store should hear of it: a new or changed
// binding, or one whose shared copy is older than an eighth of the TTL (so
// a busy session costs a store write a minute or so, not one per
// connection, and never expires in the store while in use).
func (s *sessions) put(k sessionKey, u *Upstream, gen uint32, now time.Time) (share bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if el, found := s.m[k]; found {
		e := el.Value.(*sessionEntry)
		share = e.u != u || e.gen != gen || now.Sub(e.shared) >= s.ttl/8
		e.u, e.gen, e.last = u, gen, now
		if share {
			e.shared = now
		}
		s.lru.MoveToFront(el)
		return share
	}
	for len(s.m) >= s.max {
		s.removeLocked(s.lru.Back())
	}
	s.m[k] = s.lru.PushFront(&sessionEntry{key: k, u: u, gen: gen, last: now, shared: now})
	return true
}

// forget drops the session's entry, if any.
func (s *sessions) forget(k sessionKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, found := s.m[k]; found {
		s.removeLocked(el)
	}
}

func (s *sessions) expireLocked(now time.Time) {
	for el := s.lru.Back(); el != nil; el = s.lru.Back() {
		if now.Sub(el.Value.(*sessionEntry).last) < s.ttl {
			return
		}
		s.removeLocked(el)
	}
}

func (s *sessions) removeLocked(el *list.Element) {
	delete(s.m, el.Value.(*sessionEntry).key)
	s.lru.Remove(el)
}

// len is the number of entries, live or not yet swept.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
