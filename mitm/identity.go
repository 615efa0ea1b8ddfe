package mitm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/sync/singleflight"
)

// ErrBanned is reported through Config.OnBan when repeated 403s retired an
// identity.
var ErrBanned = errors.New("origin refused this upstream repeatedly (403)")

// Identity is what one (upstream, site) pair looks like to the origin: a
// browser profile and a cookie jar of its own. It is replaced, never
// changed: rotation retires it and makes a new one with an empty jar.
type Identity struct {
	// Profile is the browser identity; Upstream and Site the pair it
	// belongs to.
	Profile  *Profile
	Upstream string
	Site     string

	jar      *jar
	serial   uint64       // unique per store, for logs and tests
	gen      string       // random: names the identity across instances
	rot      uint64       // rotations of the pair before this identity
	requests atomic.Int64 // requests sent with this identity (by this instance)
	retired  atomic.Bool
}

// Serial numbers identities in creation order, so a rotation is visible.
func (id *Identity) Serial() uint64 { return id.serial }

// Retired reports whether a rotation replaced the identity.
func (id *Identity) Retired() bool { return id.retired.Load() }

type pairKey struct{ upstream, site string }

// pair is the state kept per (upstream, site): the current identity and the
// ban signals counted against the pair, and with Config.Shared where it
// stands with the shared store.
type pair struct {
	id        *Identity
	host      string // the host that created the pair, for profile rules
	forbidden int    // 403s in a row
	coolUntil time.Time

	dirty   bool      // changed here since last written to the shared store
	seen    uint64    // hash of the record last read or written
	written time.Time // when last written (or first read)
}

// identityStore holds one identity per (upstream, site), created on first
// use, bounded by evicting the least recently used pair. With
// Config.Shared it keeps each pair's identity in line with the shared store
// (shared.go): read on every new origin connection, written when it
// changes here.
type identityStore struct {
	mu      sync.Mutex
	pairs   *lru[pairKey, *pair]
	chooser *profileChooser
	cfg     *Config
	serials atomic.Uint64
	now     func() time.Time

	shared  SharedStore // nil: identities stay in this process
	ttl     time.Duration
	flights singleflight.Group
	seed    maphash.Seed
	log     *zap.Logger
}

func newIdentityStore(cfg *Config, chooser *profileChooser) *identityStore {
	s := &identityStore{pairs: newLRU[pairKey, *pair](cfg.MaxIdentities), chooser: chooser, cfg: cfg, now: time.Now,
		shared: cfg.Shared, ttl: cfg.SharedTTL, seed: maphash.MakeSeed(), log: cfg.Logger}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.pairs.onEvict = func(_ pairKey, p *pair) { p.id.retired.Store(true) }
	return s
}

// siteOf is the site an identity belongs to: the registrable domain
// (eTLD+1) of host, or host itself for IP addresses, single labels and
// public suffixes.
func siteOf(host string) string {
	host = normalizeHost(host)
	if net.ParseIP(host) != nil {
		return host
	}
	if site, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return site
	}
	return host
}

// newIdentity makes a fresh identity for (upstream, site): a new profile (not
// prev's, when drawn at random), an empty jar, and the next rotation count.
func (s *identityStore) newIdentity(upstream, site, host string, prev *Identity) *Identity {
	id := &Identity{
		Upstream: upstream,
		Site:     site,
		jar:      newJar(s.cfg.MaxCookiesPerJar),
		serial:   s.serials.Add(1),
		gen:      rand.Text(),
	}
	var prevProfile *Profile
	if prev != nil {
		prevProfile, id.rot = prev.Profile, prev.rot+1
	}
	id.Profile = s.chooser.choose(host, prevProfile)
	return id
}

// acquire returns the identity for (upstream, site) for one more request (a
// new origin connection), creating it on first use and rotating it first
// when it has served RotateAfterRequests here. With Config.Shared it first
// syncs the pair: a pair this instance does not hold is taken from the
// store, and another instance's rotation or cookies are taken up.
func (s *identityStore) acquire(ctx context.Context, upstream, site, host string) *Identity {
	k := pairKey{upstream, site}
	if s.shared != nil {
		s.mu.Lock()
		if p, ok := s.pairs.get(k); ok && s.exhausted(p.id) {
			s.rotateLocked(p, RotationRequests) // written by the sync below
		}
		s.mu.Unlock()
		s.sync(ctx, k, host)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pairs.getOrAdd(k, func() *pair {
		return &pair{id: s.newIdentity(upstream, site, host, nil), host: host, dirty: true}
	})
	if s.exhausted(p.id) {
		s.rotateLocked(p, RotationRequests)
	}
	p.id.requests.Add(1)
	return p.id
}

// use counts one more request for id on a connection it already holds. It
// reports false, and counts nothing, when id is no longer its pair's current
// identity (rotated or evicted) or has served its quota, which rotates it:
// the caller then dials again.
func (s *identityStore) use(id *Identity) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id.retired.Load() {
		return false
	}
	if s.exhausted(id) {
		if p, ok := s.pairs.get(pairKey{id.Upstream, id.Site}); ok && p.id == id {
			s.rotateLocked(p, RotationRequests)
		}
		return false
	}
	id.requests.Add(1)
	return true
}

func (s *identityStore) exhausted(id *Identity) bool {
	n := s.cfg.RotateAfterRequests
	return n > 0 && id.requests.Load() >= int64(n)
}

// rotateLocked retires p's identity and gives the pair a new one: a new
// profile (a different one when chosen at random), an empty cookie jar, and,
// since connections of a retired identity are not reused, new origin
// connections and so a new provider session.
func (s *identityStore) rotateLocked(p *pair, reason string) {
	s.cfg.Observer.IdentityRotated(reason)
	old := p.id
	old.retired.Store(true)
	p.id = s.newIdentity(old.Upstream, old.Site, p.host, old)
	p.forbidden = 0
	p.dirty = true
}

// coolingUntil is when a 429 cool-down of (upstream, site) ends; zero or in
// the past when there is none.
func (s *identityStore) coolingUntil(upstream, site string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pairs.get(pairKey{upstream, site}); ok {
		return p.coolUntil
	}
	return time.Time{}
}

// observe counts an origin's answer to a request made with id: 429 cools
// the pair down for Retry-After (or Config.Cooldown) and, with RotateOn429,
// rotates its identity; ForbiddenUntilRotate 403s in a row rotate it and
// report a ban; any other status clears the 403 count. jarChanged says the
// answer set or deleted cookies. It returns the ban error when one was
// reported. With Config.Shared, a rotation or new cookies are written to
// the store before the answer goes on.
func (s *identityStore) observe(ctx context.Context, id *Identity, status int, retryAfter string, jarChanged bool) error {
	k := pairKey{id.Upstream, id.Site}
	s.mu.Lock()
	dirty, err := s.observeLocked(k, id, status, retryAfter, jarChanged)
	s.mu.Unlock()
	if dirty && s.shared != nil {
		s.sync(ctx, k, "")
	}
	return err
}

func (s *identityStore) observeLocked(k pairKey, id *Identity, status int, retryAfter string, jarChanged bool) (dirty bool, err error) {
	p, ok := s.pairs.get(k)
	if !ok || p.id != id {
		return false, nil // already rotated or evicted: the signal is stale
	}
	if jarChanged {
		p.dirty = true
	}
	err = s.countLocked(p, id, status, retryAfter)
	return p.dirty, err
}

func (s *identityStore) countLocked(p *pair, id *Identity, status int, retryAfter string) error {
	switch status {
	case http.StatusTooManyRequests:
		now := s.now()
		wait := parseRetryAfter(retryAfter, now)
		if wait <= 0 {
			wait = s.cfg.Cooldown
		}
		wait = min(wait, s.cfg.MaxCooldown)
		if until := now.Add(wait); until.After(p.coolUntil) {
			p.coolUntil = until
		}
		if s.cfg.RotateOn429 {
			s.rotateLocked(p, RotationTooMany)
		}
	case http.StatusForbidden:
		p.forbidden++
		if p.forbidden >= s.cfg.ForbiddenUntilRotate {
			n := p.forbidden
			s.rotateLocked(p, RotationForbidden)
			return fmt.Errorf("%w: %d in a row from %s via %s", ErrBanned, n, id.Site, id.Upstream)
		}
	default:
		p.forbidden = 0
	}
	return nil
}

// resetUpstream rotates every identity of upstream (it left quarantine, so
// whatever the sites saw of it before is best forgotten). It returns how
// many it rotated.
func (s *identityStore) resetUpstream(upstream string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	s.pairs.each(func(k pairKey, p *pair) {
		if k.upstream == upstream {
			s.rotateLocked(p, RotationUpstreamUp)
			n++
		}
	})
	return n
}

// current returns the identity (upstream, site) has now, or nil.
func (s *identityStore) current(upstream, site string) *Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pairs.get(pairKey{upstream, site}); ok {
		return p.id
	}
	return nil
}

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay
// seconds or an HTTP date. It returns 0 for an absent, malformed or past
// value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	const maxWait = 365 * 24 * time.Hour // anything longer is nonsense
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxWait/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxWait)
	}
	return 0
}
