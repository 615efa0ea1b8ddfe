package mitm

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// jar is an identity's cookie jar: net/http/cookiejar semantics with the
// public suffix list, bounded to max cookies. When a new cookie would pass
// the bound the oldest one is deleted from the jar (by storing it expired,
// which is how cookiejar forgets a cookie).
type jar struct {
	mu    sync.Mutex
	j     *cookiejar.Jar
	max   int
	order []cookieID // oldest first
	known map[cookieID]*url.URL
	now   func() time.Time
}

// cookieID names a cookie as the jar keys it: domain attribute (or the host
// for host-only cookies), path and name.
type cookieID struct {
	domain, path, name string
	hostOnly           bool
}

var _ http.CookieJar = (*jar)(nil)

func newJar(max int) *jar {
	// cookiejar.New fails only for a nil-safe options bug; with the public
	// suffix list it cannot.
	j, _ := cookiejar.New(&cookiejar.Options{PublicSuffixList: publicsuffix.List})
	return &jar{j: j, max: max, known: make(map[cookieID]*url.URL), now: time.Now}
}

// SetCookies stores cookies received from u, evicting the oldest beyond the
// bound.
func (j *jar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.now()
	keep := cookies[:0:0]
	for _, c := range cookies {
		id := makeCookieID(u, c)
		if c.MaxAge < 0 || (!c.Expires.IsZero() && !c.Expires.After(now)) {
			j.forget(id)
			keep = append(keep, c)
			continue
		}
		if _, ok := j.known[id]; !ok {
			for len(j.order) >= j.max && len(j.order) > 0 {
				j.evictOldest()
			}
			j.order = append(j.order, id)
		}
		j.known[id] = u
		keep = append(keep, c)
	}
	j.j.SetCookies(u, keep)
}

// Cookies returns the cookies to send to u.
func (j *jar) Cookies(u *url.URL) []*http.Cookie { return j.j.Cookies(u) }

// len is how many cookies the jar may hold now (expired ones it has not
// seen deleted included).
func (j *jar) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.order)
}

func (j *jar) evictOldest() {
	id := j.order[0]
	j.order = j.order[1:]
	u := j.known[id]
	delete(j.known, id)
	del := &http.Cookie{Name: id.name, Path: id.path, MaxAge: -1}
	if !id.hostOnly {
		del.Domain = id.domain
	}
	j.j.SetCookies(u, []*http.Cookie{del})
}

func (j *jar) forget(id cookieID) {
	if _, ok := j.known[id]; !ok {
		return
	}
	delete(j.known, id)
	for i, o := range j.order {
		if o == id {
			j.order = append(j.order[:i], j.order[i+1:]...)
			break
		}
	}
}

// makeCookieID computes the key cookiejar files c under when received from u
// (RFC 6265 §5.3): the Domain attribute without its leading dot, or the host
// for a host-only cookie; the Path attribute, or the default path.
func makeCookieID(u *url.URL, c *http.Cookie) cookieID {
	id := cookieID{name: c.Name, path: c.Path}
	if d := strings.TrimPrefix(strings.ToLower(c.Domain), "."); d != "" {
		id.domain = d
	} else {
		id.domain, id.hostOnly = strings.ToLower(u.Hostname()), true
	}
	if id.path == "" || id.path[0] != '/' {
		id.path = defaultCookiePath(u.Path)
	}
	return id
}

// defaultCookiePath is RFC 6265 §5.1.4's default-path of a request path.
func defaultCookiePath(p string) string {
	if p == "" || p[0] != '/' {
		return "/"
	}
	i := strings.LastIndex(p, "/")
	if i == 0 {
		return "/"
	}
	return p[:i]
}
