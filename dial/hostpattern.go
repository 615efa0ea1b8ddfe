package dial

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrBadHostPattern is wrapped by ParseHostPattern failures.
var ErrBadHostPattern = errors.New("bad host pattern")

// HostPattern matches target host names. Rules (which pool, policy or
// reservation a target gets) and the interception scope (--mitm-hosts,
// --mitm-skip, profile rules) share its syntax, so it lives with the
// Request whose Target it matches. It is either a glob or, between slashes,
// a regular expression:
//
//   - glob: '*' matches any run of characters, dots included, '?' any one
//     character, everything else itself, case-insensitively, against the
//     whole host. "*" matches every host; "*.shop.example" matches
//     "a.shop.example" and "a.b.shop.example" but not "shop.example".
//   - /regex/: Go regexp syntax, case-insensitive, unanchored (use ^ and $),
//     e.g. /^(www\.)?example\.(com|net)$/.
//
// Hosts are matched without port, without a final dot; IPv6 addresses
// without brackets.
type HostPattern struct {
	raw  string
	glob string // lower case; "" for a regex
	re   *regexp.Regexp
}

// ParseHostPattern compiles a host pattern.
func ParseHostPattern(s string) (HostPattern, error) {
	if s == "" {
		return HostPattern{}, fmt.Errorf("%w: empty", ErrBadHostPattern)
	}
	if len(s) >= 2 && s[0] == '/' && s[len(s)-1] == '/' {
		re, err := regexp.Compile("(?i)" + s[1:len(s)-1])
		if err != nil {
			return HostPattern{}, fmt.Errorf("%w %q: %w", ErrBadHostPattern, s, err)
		}
		return HostPattern{raw: s, re: re}, nil
	}
	if strings.HasPrefix(s, "/") {
		return HostPattern{}, fmt.Errorf("%w %q: a regular expression goes between two slashes", ErrBadHostPattern, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '/' {
			return HostPattern{}, fmt.Errorf("%w %q: white space, control character or slash in a glob (a regular expression goes between two slashes)", ErrBadHostPattern, s)
		}
	}
	return HostPattern{raw: s, glob: strings.ToLower(s)}, nil
}

// String is the pattern as written.
func (p HostPattern) String() string { return p.raw }

// MatchesAll reports whether the pattern is a catch-all glob ("*", "**").
func (p HostPattern) MatchesAll() bool {
	return p.re == nil && strings.Trim(p.glob, "*") == "" && p.glob != ""
}

// Match reports whether host matches, ignoring case.
func (p HostPattern) Match(host string) bool {
	if p.re != nil {
		return p.re.MatchString(host)
	}
	return globMatch(p.glob, lowerASCII(host))
}

// lowerASCII lower-cases host without allocating when it already is, which
// it nearly always is (targets are normalized before matching).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
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
