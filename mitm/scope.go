package mitm

import (
	"fmt"
	"net"

	"github.com/hopper-proxy/hopper/dial"
)

// ErrBadPattern is wrapped when a host pattern does not compile; it is
// dial.ErrBadHostPattern, the error of the syntax rules share.
var ErrBadPattern = dial.ErrBadHostPattern

// hostPattern matches host names with the syntax rules use (see
// dial.HostPattern); hosts are normalized (no port, lower case, no final
// dot) before matching.
type hostPattern = dial.HostPattern

func parsePattern(s string) (hostPattern, error) { return dial.ParseHostPattern(s) }

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
		if p.Match(host) {
			return false
		}
	}
	if len(s.hosts) == 0 {
		return true
	}
	for _, p := range s.hosts {
		if p.Match(host) {
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
