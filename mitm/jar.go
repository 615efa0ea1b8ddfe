package mitm

import (
	"cmp"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// Bounds of one jar beyond its cookie count, so that its record (what
// Config.Shared keeps) stays far below a shared store's 1 MiB value limit.
const (
	// maxJarBytes bounds the estimated size of a jar's records, deleted
	// cookies' included; the oldest go first beyond it.
	maxJarBytes = 512 << 10
	// tombstoneTTL is how long a jar remembers a deleted cookie, so that
	// merging an older copy from another instance does not bring it back.
	tombstoneTTL = time.Hour
	// maxClockSkew bounds how far ahead of this clock another instance's
	// stamps may be.
	maxClockSkew = time.Hour
)

// jar is an identity's cookie jar: net/http/cookiejar semantics with the
// public suffix list, bounded to max cookies (and maxJarBytes). When a new
// cookie would pass the bound the one set longest ago is deleted from the
// jar (by storing it expired, which is how cookiejar forgets a cookie).
//
// cookiejar cannot list what it holds, so the jar keeps its own record of
// every cookie it stored (and, for a while, of the ones it deleted), each
// stamped with when it was set: that record is what export hands to other
// instances and merge takes from them, newest stamp winning per cookie.
type jar struct {
	mu    sync.Mutex
	j     *cookiejar.Jar
	max   int
	live  map[cookieID]*cookieRecord // what cookiejar holds
	tombs map[cookieID]*cookieRecord // deleted, for merging
	bytes int                        // estimated size of live and tombs
	stamp int64                      // the last Set stamp given
	now   func() time.Time
}

var _ http.CookieJar = (*jar)(nil)

// cookieID names a cookie as the jar keys it: domain attribute (or the host
// for host-only cookies), path and name.
type cookieID struct {
	domain, path, name string
	hostOnly           bool
}

func newJar(max int) *jar {
	// cookiejar.New fails only for a nil-safe options bug; with the public
	// suffix list it cannot.
	j, _ := cookiejar.New(&cookiejar.Options{PublicSuffixList: publicsuffix.List})
	return &jar{j: j, max: max, live: make(map[cookieID]*cookieRecord), tombs: make(map[cookieID]*cookieRecord), now: time.Now}
}

// SetCookies stores cookies received from u, evicting the oldest beyond the
// bound.
func (j *jar) SetCookies(u *url.URL, cookies []*http.Cookie) { j.set(u, cookies) }

// set is SetCookies reporting whether the jar changed. A cookie cookiejar
// would refuse (a domain attribute the host may not set), or one larger
// than a browser takes, is ignored.
func (j *jar) set(u *url.URL, cookies []*http.Cookie) bool {
	host, ok := canonicalCookieHost(u)
	if !ok {
		return false
	}
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	changed := false
	for _, c := range cookies {
		r, ok := recordOf(host, defaultCookiePath(u.Path), c, now)
		if !ok {
			continue
		}
		r.Set = j.nextStamp(now)
		j.applyLocked(r)
		changed = true
	}
	if changed {
		j.boundLocked(now)
	}
	return changed
}

// Cookies returns the cookies to send to u.
func (j *jar) Cookies(u *url.URL) []*http.Cookie { return j.j.Cookies(u) }

// len is how many cookies the jar may hold now (expired ones it has not
// seen deleted included).
func (j *jar) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.live)
}

// export returns the jar's records, live cookies and remembered deletions,
// oldest first.
func (j *jar) export() []cookieRecord {
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	j.boundLocked(now)
	out := make([]cookieRecord, 0, len(j.live)+len(j.tombs))
	for _, m := range []map[cookieID]*cookieRecord{j.live, j.tombs} {
		for _, r := range m {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b cookieRecord) int { return cmp.Compare(a.Set, b.Set) })
	return out
}

// merge takes every record of recs that is newer than what the jar knows of
// the same cookie (a value or a deletion; an expired cookie counts as
// deleted), keeps the jar within its bounds, and reports whether the jar
// knows something recs lack or have older: then recs need the jar's export
// written back. Records stamped more than maxClockSkew ahead are ignored.
func (j *jar) merge(recs []cookieRecord) (newerHere bool) {
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	theirs := make(map[cookieID]int64, len(recs))
	for i := range recs {
		r := recs[i]
		if r.Set > now.UnixNano()+int64(maxClockSkew) {
			continue
		}
		if r.expired(now) {
			r = r.deletion()
		}
		id := r.id()
		if r.Set <= theirs[id] {
			continue // a duplicate; the later one counts
		}
		theirs[id] = r.Set
		if r.Set > j.stampOf(id) {
			j.applyLocked(&r)
		}
		j.stamp = max(j.stamp, r.Set)
	}
	j.boundLocked(now)
	for _, m := range []map[cookieID]*cookieRecord{j.live, j.tombs} {
		for id, r := range m {
			if r.Set > theirs[id] {
				return true
			}
		}
	}
	return false
}

func (j *jar) stampOf(id cookieID) int64 {
	if r, ok := j.live[id]; ok {
		return r.Set
	}
	if r, ok := j.tombs[id]; ok {
		return r.Set
	}
	return 0
}

// nextStamp is now in Unix nanoseconds, after every stamp given before.
func (j *jar) nextStamp(now time.Time) int64 {
	j.stamp = max(j.stamp+1, now.UnixNano())
	return j.stamp
}

// applyLocked stores r (a cookie or a deletion) in cookiejar and the record.
func (j *jar) applyLocked(r *cookieRecord) {
	id := r.id()
	j.dropLocked(id)
	u, c := r.cookie()
	j.j.SetCookies(u, []*http.Cookie{c})
	if r.Deleted {
		j.tombs[id] = r
	} else {
		j.live[id] = r
	}
	j.bytes += r.size()
}

// dropLocked forgets the record of id, live or deleted, without touching
// cookiejar.
func (j *jar) dropLocked(id cookieID) {
	if r, ok := j.live[id]; ok {
		delete(j.live, id)
		j.bytes -= r.size()
	}
	if r, ok := j.tombs[id]; ok {
		delete(j.tombs, id)
		j.bytes -= r.size()
	}
}

// boundLocked records expired cookies as deleted, forgets deletions older
// than tombstoneTTL or beyond max, then deletes the cookies set longest ago
// while the jar holds more than max or maxJarBytes. Eviction leaves no
// deletion record: instances with the same bound evict the same cookies.
func (j *jar) boundLocked(now time.Time) {
	for id, r := range j.live {
		if r.expired(now) { // cookiejar no longer sends it
			j.dropLocked(id)
			d := r.deletion()
			j.tombs[id] = &d
			j.bytes += d.size()
		}
	}
	oldest := func(m map[cookieID]*cookieRecord) *cookieRecord {
		var o *cookieRecord
		for _, r := range m {
			if o == nil || r.Set < o.Set {
				o = r
			}
		}
		return o
	}
	for {
		o := oldest(j.tombs)
		if o == nil || (now.UnixNano()-o.Set < int64(tombstoneTTL) && len(j.tombs) <= j.max && j.bytes <= maxJarBytes) {
			break
		}
		j.dropLocked(o.id())
	}
	for len(j.live) > j.max || (j.bytes > maxJarBytes && len(j.live) > 0) {
		o := oldest(j.live)
		j.dropLocked(o.id())
		d := o.deletion()
		u, c := d.cookie()
		j.j.SetCookies(u, []*http.Cookie{c})
	}
}
