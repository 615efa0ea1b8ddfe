package mitm

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

// What browsers accept: a cookie whose name and value together are longer
// than maxCookieBytes, or whose path is longer than maxCookiePath, is
// ignored (RFC 6265 §6.1 asks for at least 4096 bytes per cookie).
const (
	maxCookieBytes = 4096
	maxCookiePath  = 1024
	// recordOverhead is a cookie record's JSON field names and numbers.
	recordOverhead = 160
)

// cookieRecord is one cookie as the jar keeps and exports it, with
// absolute expiry. Every string holds only bytes a Set-Cookie field may
// hold (validCookieByte), so its JSON needs no escaping.
type cookieRecord struct {
	// Host is the host it came from; Domain its domain attribute, empty for
	// a host-only cookie.
	Host     string `json:"host"`
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Path     string `json:"path"`
	Expires  int64  `json:"expires,omitempty"` // Unix seconds; 0 for a session cookie
	Secure   bool   `json:"secure,omitempty"`
	HTTPOnly bool   `json:"httpOnly,omitempty"`
	SameSite string `json:"sameSite,omitempty"` // "", default, lax, strict, none
	// Set is when it was set (Unix nanoseconds, unique within a jar); of
	// two records of one cookie the later wins.
	Set int64 `json:"set"`
	// Deleted marks a cookie the origin deleted (or that expired).
	Deleted bool `json:"deleted,omitempty"`
}

func (r *cookieRecord) id() cookieID {
	if r.Domain == "" {
		return cookieID{domain: r.Host, path: r.Path, name: r.Name, hostOnly: true}
	}
	return cookieID{domain: r.Domain, path: r.Path, name: r.Name}
}

func (r *cookieRecord) size() int {
	return len(r.Host) + len(r.Name) + len(r.Value) + len(r.Domain) + len(r.Path) + recordOverhead
}

func (r *cookieRecord) expired(now time.Time) bool {
	return r.Expires != 0 && r.Expires <= now.Unix()
}

// cookie is r as cookiejar takes it, with the URL it is set from.
func (r *cookieRecord) cookie() (*url.URL, *http.Cookie) {
	c := &http.Cookie{Name: r.Name, Value: r.Value, Domain: r.Domain, Path: r.Path, Secure: r.Secure, HttpOnly: r.HTTPOnly}
	switch {
	case r.Deleted:
		c.MaxAge = -1
	case r.Expires != 0:
		c.Expires = time.Unix(r.Expires, 0)
	}
	c.SameSite = sameSiteModes[r.SameSite]
	// With a port, cookiejar reads an IPv6 host out of its brackets.
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(r.Host, "443"), Path: "/"}, c
}

var (
	sameSiteModes = map[string]http.SameSite{"default": http.SameSiteDefaultMode, "lax": http.SameSiteLaxMode,
		"strict": http.SameSiteStrictMode, "none": http.SameSiteNoneMode}
	sameSiteNames = map[http.SameSite]string{http.SameSiteDefaultMode: "default", http.SameSiteLaxMode: "lax",
		http.SameSiteStrictMode: "strict", http.SameSiteNoneMode: "none"}
)

// recordOf is the record of c received from host (canonical) at now, as
// cookiejar would store it (RFC 6265 §5.3): false when cookiejar would
// refuse it or a browser would ignore it. A cookie that deletes (negative
// Max-Age, Expires in the past) gives a deletion record.
func recordOf(host, defPath string, c *http.Cookie, now time.Time) (*cookieRecord, bool) {
	domain, hostOnly, ok := cookieDomain(host, c.Domain)
	if !ok {
		return nil, false
	}
	r := &cookieRecord{Host: host, Name: c.Name, Value: c.Value, Path: c.Path, Secure: c.Secure, HTTPOnly: c.HttpOnly,
		SameSite: sameSiteNames[c.SameSite]}
	if !hostOnly {
		r.Domain = domain
	}
	if r.Path == "" || r.Path[0] != '/' {
		r.Path = defPath
	}
	switch {
	case c.MaxAge < 0:
		r.Deleted = true
	case c.MaxAge > 0:
		r.Expires = now.Add(time.Duration(c.MaxAge) * time.Second).Unix()
	case !c.Expires.IsZero():
		r.Expires = c.Expires.Unix()
		if !c.Expires.After(now) {
			r.Deleted = true
		}
	}
	if r.Deleted {
		*r = r.deletion()
	} else if r.Expires < 0 {
		r.Expires = 0 // before 1970: nonsense, kept as a session cookie
	}
	return r, r.valid()
}

// deletion is the record that deletes r's cookie, stamped as r.
func (r *cookieRecord) deletion() cookieRecord {
	return cookieRecord{Host: r.Host, Name: r.Name, Domain: r.Domain, Path: r.Path, Set: r.Set, Deleted: true}
}

// valid reports a record cookiejar keeps as it is: printable fields, a
// name, an absolute path, sizes a browser takes, and a domain attribute
// the host may set.
func (r *cookieRecord) valid() bool {
	for _, s := range []string{r.Host, r.Name, r.Value, r.Domain, r.Path} {
		for i := 0; i < len(s); i++ {
			if !validCookieByte(s[i]) {
				return false
			}
		}
	}
	if r.Host == "" || len(r.Host) > 253 || r.Name == "" || len(r.Name)+len(r.Value) > maxCookieBytes ||
		r.Path == "" || r.Path[0] != '/' || len(r.Path) > maxCookiePath || r.Expires < 0 || r.Set < 0 {
		return false
	}
	if _, ok := sameSiteModes[r.SameSite]; !ok && r.SameSite != "" {
		return false
	}
	if r.Host != strings.ToLower(r.Host) || r.Host != strings.TrimSuffix(r.Host, ".") {
		return false
	}
	if r.Domain == "" {
		return true
	}
	d, hostOnly, ok := cookieDomain(r.Host, r.Domain)
	return ok && !hostOnly && d == r.Domain
}

// validCookieByte is a byte net/http lets through in a Set-Cookie field.
func validCookieByte(b byte) bool { return 0x20 <= b && b < 0x7f && b != '"' && b != ';' && b != '\\' }

// canonicalCookieHost is u's host as cookiejar keys it: no port, no
// trailing dot, lower case; false for a name that is not ASCII.
func canonicalCookieHost(u *url.URL) (string, bool) {
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return "", false
		}
	}
	return host, host != ""
}

// cookieDomain is cookiejar's reading of a domain attribute set from host
// (RFC 6265 §5.3 steps 4 to 6): the domain the cookie is filed under and
// whether it is host-only, or false when the cookie is refused.
func cookieDomain(host, attr string) (domain string, hostOnly, ok bool) {
	if attr == "" {
		return host, true, true
	}
	if net.ParseIP(host) != nil {
		return host, true, host == attr
	}
	domain = strings.TrimPrefix(attr, ".")
	if domain == "" || domain[0] == '.' || domain[len(domain)-1] == '.' {
		return "", false, false
	}
	for i := 0; i < len(domain); i++ {
		if domain[i] >= 0x80 {
			return "", false, false
		}
	}
	domain = strings.ToLower(domain)
	if ps, _ := publicsuffix.PublicSuffix(domain); ps != "" && !hasDotSuffix(domain, ps) {
		if host == domain {
			return host, true, true // a public suffix setting a cookie for itself
		}
		return "", false, false
	}
	if host != domain && !hasDotSuffix(host, domain) {
		return "", false, false
	}
	return domain, false, true
}

// hasDotSuffix reports whether s ends in "."+suffix.
func hasDotSuffix(s, suffix string) bool {
	return len(s) > len(suffix) && s[len(s)-len(suffix)-1] == '.' && s[len(s)-len(suffix):] == suffix
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
