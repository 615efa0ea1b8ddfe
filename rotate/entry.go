package rotate

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Scheme is how an upstream is spoken to.
type Scheme uint8

// Upstream schemes. The zero value is invalid.
const (
	SchemeHTTP    Scheme = iota + 1 // HTTP proxy: CONNECT, or absolute-form forward requests
	SchemeHTTPS                     // HTTP proxy behind TLS
	SchemeSOCKS5                    // SOCKS5, target names resolved locally
	SchemeSOCKS5H                   // SOCKS5, target names resolved by the upstream
	SchemeDirect                    // no proxy: egress from a local address
	SchemeSOCKS4                    // SOCKS4, IPv4 targets resolved locally
	SchemeSOCKS4A                   // SOCKS4a, target names resolved by the upstream
)

// socks reports whether s is a SOCKS scheme (credentials go in the
// handshake, not in a Proxy-Authorization header).
func (s Scheme) socks() bool {
	return s == SchemeSOCKS5 || s == SchemeSOCKS5H || s == SchemeSOCKS4 || s == SchemeSOCKS4A
}

func (s Scheme) String() string {
	switch s {
	case SchemeHTTP:
		return "http"
	case SchemeHTTPS:
		return "https"
	case SchemeSOCKS5:
		return "socks5"
	case SchemeSOCKS5H:
		return "socks5h"
	case SchemeDirect:
		return "direct"
	case SchemeSOCKS4:
		return "socks4"
	case SchemeSOCKS4A:
		return "socks4a"
	default:
		return "invalid"
	}
}

func (s Scheme) defaultPort() uint16 {
	switch s {
	case SchemeHTTP:
		return 80
	case SchemeHTTPS:
		return 443
	default:
		return 1080
	}
}

// Entry is one parsed list line. It is a comparable value: two entries are the
// same upstream exactly when they are ==, and ParseEntry(e.String()) == e.
type Entry struct {
	Scheme Scheme
	// Host is a lower-case host name (possibly with placeholders) or an IP
	// address without brackets. Empty for direct entries.
	Host string
	Port uint16
	// User and Pass are the decoded credentials; User == "" means none.
	// Either may contain placeholders.
	User, Pass string
	// Local is the egress of a direct entry: invalid for the system's
	// choice, a full-length prefix for one fixed address, or a shorter prefix
	// from which every connection takes a random address.
	Local netip.Prefix
}

// Templated reports whether the entry has placeholders to fill per connection.
func (e Entry) Templated() bool {
	return hasPlaceholder(e.User) || hasPlaceholder(e.Pass) || hasPlaceholder(e.Host)
}

// hostPort is the upstream's address as host:port, brackets added for IPv6.
func (e Entry) hostPort() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// String is the canonical form of the entry, credentials included: it is the
// upstream's identity and must never be logged. Use Redacted for logs.
func (e Entry) String() string {
	if e.Scheme == SchemeDirect {
		if !e.Local.IsValid() {
			return "direct"
		}
		return "direct://" + e.localString()
	}
	var b strings.Builder
	b.WriteString(e.Scheme.String())
	b.WriteString("://")
	if e.User != "" {
		b.WriteString(escapeUserinfo(e.User))
		if e.Pass != "" {
			b.WriteByte(':')
			b.WriteString(escapeUserinfo(e.Pass))
		}
		b.WriteByte('@')
	}
	b.WriteString(e.hostPort())
	return b.String()
}

// Redacted is the entry's label for logs, metrics and errors: the canonical
// form with the password replaced by "***" ("http://user:***@host:port"), and
// "direct", "direct@ADDR" or "direct@PREFIX" for direct entries.
func (e Entry) Redacted() string {
	if e.Scheme == SchemeDirect {
		if !e.Local.IsValid() {
			return "direct"
		}
		return "direct@" + e.localString()
	}
	var b strings.Builder
	b.WriteString(e.Scheme.String())
	b.WriteString("://")
	if e.User != "" {
		b.WriteString(escapeUserinfo(e.User))
		if e.Pass != "" {
			b.WriteString(":***")
		}
		b.WriteByte('@')
	}
	b.WriteString(e.hostPort())
	return b.String()
}

func (e Entry) localString() string {
	if e.Local.Bits() == e.Local.Addr().BitLen() {
		return e.Local.Addr().String()
	}
	return e.Local.String()
}

// escapeUserinfo percent-encodes everything in s but RFC 3986 unreserved
// characters, sub-delimiters other than those a list line gives meaning to,
// and the braces of placeholders, so that the canonical form parses back to
// the same entry.
func escapeUserinfo(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !keepInUserinfo(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	buf := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keepInUserinfo(c) {
			buf = append(buf, c)
			continue
		}
		buf = append(buf, '%', hex[c>>4], hex[c&15])
	}
	return string(buf)
}

func keepInUserinfo(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', '{', '}':
		return true
	}
	return false
}
