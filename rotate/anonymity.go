package rotate

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Anonymity is how much an upstream reveals to the sites it connects to,
// as a judge (an echo server such as `hopper judge`) sees it. Higher is more
// anonymous, so a minimum can be compared with >=.
type Anonymity uint8

// Anonymity classes.
const (
	AnonymityUnknown Anonymity = iota // not judged yet, or the judge could not be reached
	// AnonymityTransparent: the client's own address reaches the site, as the
	// exit address or in a forwarding header (X-Forwarded-For, Forwarded,
	// X-Real-IP...).
	AnonymityTransparent
	// AnonymityAnonymous: the site sees proxy headers (Via, X-Forwarded-For,
	// Forwarded...) but not the client's address.
	AnonymityAnonymous
	// AnonymityElite: neither the client's address nor proxy headers.
	AnonymityElite
)

// ErrBadAnonymity is wrapped by ParseAnonymity failures.
var ErrBadAnonymity = errors.New("bad anonymity class")

var anonymityNames = [...]string{"", "transparent", "anonymous", "elite"}

// ParseAnonymity reads "transparent", "anonymous" or "elite" ("" is
// AnonymityUnknown).
func ParseAnonymity(s string) (Anonymity, error) {
	for i, n := range anonymityNames {
		if n == s {
			return Anonymity(i), nil
		}
	}
	return AnonymityUnknown, fmt.Errorf("%w %q: want transparent, anonymous or elite", ErrBadAnonymity, s)
}

func (a Anonymity) String() string {
	if int(a) < len(anonymityNames) {
		if a == AnonymityUnknown {
			return "unknown"
		}
		return anonymityNames[a]
	}
	return "invalid"
}

// MarshalText renders the class name ("" for unknown).
func (a Anonymity) MarshalText() ([]byte, error) {
	if int(a) >= len(anonymityNames) {
		return nil, fmt.Errorf("%w: %d", ErrBadAnonymity, uint8(a))
	}
	return []byte(anonymityNames[a]), nil
}

// UnmarshalText reads a class name, for YAML and flags.
func (a *Anonymity) UnmarshalText(b []byte) error {
	v, err := ParseAnonymity(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// JudgeReport is what a judge answers: the JSON object `hopper judge` serves
// (its schema is documented in package judge; fields this package does not
// use are ignored).
type JudgeReport struct {
	// IP is the address the judge's TCP connection came from: the exit.
	IP string `json:"ip"`
	// Headers are the request headers the judge received, names canonical.
	Headers http.Header `json:"headers"`
	// HeadersUnknown marks a judge that shows the address alone (a bare-IP
	// answer): only a transparent exit can be recognised then.
	HeadersUnknown bool `json:"-"`
}

// Headers through which proxies reveal themselves or their client. The first
// group carries client addresses.
var (
	addressHeaders = []string{
		"X-Forwarded-For", "Forwarded", "X-Real-Ip", "Client-Ip", "X-Client-Ip",
		"X-Originating-Ip", "X-Remote-Ip", "X-Remote-Addr", "True-Client-Ip",
		"X-Cluster-Client-Ip", "Forwarded-For", "X-Proxyuser-Ip", "Cf-Connecting-Ip",
	}
	proxyHeaders = []string{
		"Via", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
		"X-Forwarded-Server", "Proxy-Connection", "X-Proxy-Id", "X-Proxy-Connection",
		"X-Bluecoat-Via", "X-Via",
	}
)

// ClassifyAnonymity judges an upstream from the report a judge gave for a
// request through it. self are this host's own public addresses (what the
// judge reports for a direct request); an exit address among them, or any of
// them in an address header, is transparent. With no self address known, an
// address header carrying any address other than the exit counts as a leak
// too, since it may be ours.
func ClassifyAnonymity(r JudgeReport, self []netip.Addr) Anonymity {
	exit, _ := netip.ParseAddr(strings.TrimSpace(r.IP))
	exit = exit.Unmap()
	if !exit.IsValid() {
		return AnonymityUnknown
	}
	if containsAddr(self, exit) {
		return AnonymityTransparent
	}
	if r.HeadersUnknown {
		return AnonymityUnknown
	}
	revealed := false
	for _, name := range addressHeaders {
		for _, v := range headerValues(r.Headers, name) {
			revealed = true
			for _, a := range addrsIn(v) {
				if containsAddr(self, a) || (len(self) == 0 && a != exit) {
					return AnonymityTransparent
				}
			}
		}
	}
	for _, name := range proxyHeaders {
		if len(headerValues(r.Headers, name)) > 0 {
			revealed = true
		}
	}
	if revealed {
		return AnonymityAnonymous
	}
	return AnonymityElite
}

// headerValues reads a header case-insensitively, since a report may come
// from a judge that does not canonicalise names.
func headerValues(h http.Header, name string) []string {
	if v, ok := h[name]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// addrsIn extracts the IP addresses in a header value: lists
// ("a, b"), Forwarded pairs (for=a;by=b, quoted, bracketed, with ports).
func addrsIn(v string) []netip.Addr {
	var out []netip.Addr
	for _, tok := range strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '=' || r == '"' || r == '\t'
	}) {
		if ap, err := netip.ParseAddrPort(tok); err == nil {
			out = append(out, ap.Addr().Unmap())
			continue
		}
		tok = strings.TrimSuffix(strings.TrimPrefix(tok, "["), "]")
		if a, err := netip.ParseAddr(tok); err == nil {
			out = append(out, a.WithZone("").Unmap())
		}
	}
	return out
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b.Unmap() == a {
			return true
		}
	}
	return false
}
