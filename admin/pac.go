package admin

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// pacMIME is the media type browsers expect of a proxy auto-config file.
const pacMIME = "application/x-ns-proxy-autoconfig"

// PAC renders a proxy auto-config file that sends every URL through hopper
// at proxy (host:port), as an HTTP proxy first and as SOCKS5 on the same
// port next, except loopback hosts, which go direct (through a proxy they
// would mean the proxy's machine). It names no DIRECT fallback: when hopper
// is down, traffic stops rather than leaving unproxied.
func PAC(proxy string) string {
	q := strconv.Quote("PROXY " + proxy + "; SOCKS5 " + proxy)
	return `// hopper proxy auto-config
function FindProxyForURL(url, host) {
  if (host === "localhost" || host === "::1" || host === "[::1]" || shExpMatch(host, "127.*")) {
    return "DIRECT";
  }
  return ` + q + `;
}
`
}

// pacProxy is the address /proxy.pac names: the proxy's listen address, with
// an unspecified host (0.0.0.0, ::, "") replaced by the host the client used
// to reach this admin server, since the proxy listens there too.
func pacProxy(listen string, r *http.Request) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("proxy address %q: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		reqHost := r.Host
		if h, _, err := net.SplitHostPort(reqHost); err == nil {
			reqHost = h
		}
		reqHost = strings.Trim(reqHost, "[]")
		if !plainHost(reqHost) {
			reqHost = "127.0.0.1"
		}
		host = reqHost
	}
	return net.JoinHostPort(host, port), nil
}

func (s *Server) servePAC(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ProxyAddr == "" {
		http.NotFound(w, r)
		return
	}
	proxy, err := pacProxy(s.cfg.ProxyAddr, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", pacMIME)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(PAC(proxy)))
}

// plainHost reports a non-empty host name or IP literal of letters, digits,
// '.', '-' and ':' only: safe to name in the PAC file.
func plainHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}
