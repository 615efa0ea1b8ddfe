package mitm

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/hopper-proxy/hopper/dial"
)

// ErrBadPattern is wrapped when a host pattern does not compile.
var ErrBadPattern = errors.New("bad host pattern")

// hostPattern matches host names: a glob ('*' any run of characters, dots
// included, '?' one character, case-insensitive, against the whole host) or
// a /regex/ (Go syntax, case-insensitive, unanchored). "*.example.com"
// matches "a.example.com" but not "example.com". Hosts are matched without
// port, lower case, without a final dot. The syntax is the one rules use.
type hostPattern struct {
	raw  string
	glob string
	re   *regexp.Regexp
}

func parsePattern(s string) (hostPattern, error) {
	if s == "" {
		return hostPattern{}, fmt.Errorf("%w: empty", ErrBadPattern)
	}
	if len(s) >= 2 && s[0] == '/' && s[len(s)-1] == '/' {
		re, err := regexp.Compile("(?i)" + s[1:len(s)-1])
		if err != nil {
			return hostPattern{}, fmt.Errorf("%w %q: %w", ErrBadPattern, s, err)
		}
		return hostPattern{raw: s, re: re}, nil
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '/' {
			return hostPattern{}, fmt.Errorf("%w %q: white space, control character or slash in a glob (a regular expression goes between two slashes)", ErrBadPattern, s)
		}
	}
	return hostPattern{raw: s, glob: strings.ToLower(s)}, nil
}

func (p hostPattern) match(host string) bool {
	if p.re != nil {
		return p.re.MatchString(host)
	}
	return globMatch(p.glob, host)
}

// globMatch matches s against a glob of '*' and '?' in linear space,
// backtracking only to the last star.
func globMatch(p, s string) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for sx < len(s) || px < len(p) {
		if px < len(p) {
			switch c := p[px]; {
			case c == '*':
				starPx, starSx = px, sx
				px++
				continue
			case sx < len(s) && (c == '?' || c == s[sx]):
				px++
				sx++
				continue
			}
		}
		if starPx >= 0 && starSx < len(s) {
			starSx++
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	return true
}

// scope decides which streams are intercepted.
type scope struct {
	hosts []hostPattern // empty: every host
	skip  []hostPattern
}

func newScope(hosts, skip []string) (scope, error) {
	var s scope
	for _, h := range hosts {
		p, err := parsePattern(h)
		if err != nil {
			return s, fmt.Errorf("mitm-hosts: %w", err)
		}
		s.hosts = append(s.hosts, p)
	}
	for _, h := range skip {
		p, err := parsePattern(h)
		if err != nil {
			return s, fmt.Errorf("mitm-skip: %w", err)
		}
		s.skip = append(s.skip, p)
	}
	return s, nil
}

// contains reports whether host (normalized) is in scope.
func (s *scope) contains(host string) bool {
	for _, p := range s.skip {
		if p.match(host) {
			return false
		}
	}
	if len(s.hosts) == 0 {
		return true
	}
	for _, p := range s.hosts {
		if p.match(host) {
			return true
		}
	}
	return false
}

// interceptable reports whether a stream the front end describes with req
// is in scope: its host must match, and a SOCKS stream must go to port 443
// (a SOCKS client gets its reply before hopper can see whether it speaks
// TLS, so only the HTTPS port is taken over). CONNECT streams to any port
// qualify; those that turn out not to speak TLS are spliced.
func (s *scope) interceptable(req *dial.Request) bool {
	host, port, err := net.SplitHostPort(req.Target)
	if err != nil {
		return false
	}
	switch req.Protocol {
	case dial.ProtocolHTTPConnect:
	case dial.ProtocolSOCKS5, dial.ProtocolSOCKS4:
		if port != "443" {
			return false
		}
	default:
		return false
	}
	return s.contains(normalizeHost(host))
}
