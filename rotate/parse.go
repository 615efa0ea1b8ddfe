package rotate

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ErrInvalidEntry is wrapped by every ParseEntry failure. Messages name the
// offending part but never echo credentials.
var ErrInvalidEntry = errors.New("invalid upstream entry")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidEntry, fmt.Sprintf(format, args...))
}

// ParseEntry parses one upstream entry (a list line without its comment):
//
//	http://user:pass@host:port   https://host:port   socks5://host:port
//	socks5h://user:pass@host:port   socks4://userid@host:port   socks4a://host:port
//	host:port   host:port:user:pass   user:pass@host:port
//	direct   direct://ADDR   direct://PREFIX/LEN
//
// URL forms percent-decode their credentials and default the port (http 80,
// https 443, socks 1080); the bare forms are HTTP proxies, take credentials
// literally and need a port. IPv6 hosts go in brackets except after direct://.
// User, password and host may contain placeholders (see PlaceholderSession).
func ParseEntry(s string) (Entry, error) {
	if s == "" {
		return Entry{}, invalid("empty entry")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return Entry{}, invalid("white space or control character at offset %d", i)
		}
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok && isSchemeName(scheme) {
		switch strings.ToLower(scheme) {
		case "http":
			return parseURLForm(SchemeHTTP, rest)
		case "https":
			return parseURLForm(SchemeHTTPS, rest)
		case "socks5":
			return parseURLForm(SchemeSOCKS5, rest)
		case "socks5h":
			return parseURLForm(SchemeSOCKS5H, rest)
		case "socks4":
			return parseURLForm(SchemeSOCKS4, rest)
		case "socks4a":
			return parseURLForm(SchemeSOCKS4A, rest)
		case "direct":
			return parseDirect(rest)
		default:
			return Entry{}, invalid("unsupported scheme %q", scheme)
		}
	}
	if strings.EqualFold(s, "direct") {
		return Entry{Scheme: SchemeDirect}, nil
	}
	return parseBare(s)
}

func isSchemeName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !('a' <= c && c <= 'z' || '0' <= s[i] && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.') {
			return false
		}
	}
	return true
}

func parseURLForm(scheme Scheme, rest string) (Entry, error) {
	rest = strings.TrimSuffix(rest, "/")
	e := Entry{Scheme: scheme}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, pass, _ := strings.Cut(rest[:i], ":")
		var err1, err2 error
		e.User, err1 = url.PathUnescape(user)
		e.Pass, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return Entry{}, invalid("bad percent-encoding in credentials")
		}
		rest = rest[i+1:]
	}
	if strings.ContainsAny(rest, "/?#") {
		return Entry{}, invalid("unexpected path, query or fragment after the address")
	}
	host, port, err := splitHostPort(rest, scheme.defaultPort())
	if err != nil {
		return Entry{}, err
	}
	e.Host, e.Port = host, port
	return e, checkCredentials(e)
}

// parseBare reads host:port, host:port:user:pass and user:pass@host:port.
// A line with an '@' is read as user:pass@host:port first and, failing that,
// as host:port:user:pass with an '@' in the password.
func parseBare(s string) (Entry, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return Entry{}, invalid("IPv6 addresses need brackets and a port")
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		e := Entry{Scheme: SchemeHTTP}
		e.User, e.Pass, _ = strings.Cut(s[:i], ":")
		host, port, err := splitHostPort(s[i+1:], 0)
		if err == nil {
			e.Host, e.Port = host, port
			return e, checkCredentials(e)
		}
		if alt, altErr := parseColonForm(s); altErr == nil {
			return alt, nil
		}
		return Entry{}, err
	}
	return parseColonForm(s)
}

// parseColonForm reads host:port and host:port:user:pass; the password runs
// to the end of the line and may contain ':'.
func parseColonForm(s string) (Entry, error) {
	e := Entry{Scheme: SchemeHTTP}
	hostport, creds := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Entry{}, invalid("missing ']' after IPv6 address")
		}
		if p := strings.IndexByte(s[end:], ':'); p >= 0 {
			if q := strings.IndexByte(s[end+p+1:], ':'); q >= 0 {
				cut := end + p + 1 + q
				hostport, creds = s[:cut], s[cut+1:]
			}
		}
	} else if parts := strings.SplitN(s, ":", 3); len(parts) == 3 {
		hostport, creds = parts[0]+":"+parts[1], parts[2]
	}
	if hostport != s {
		user, pass, ok := strings.Cut(creds, ":")
		if !ok {
			return Entry{}, invalid("expected host:port, host:port:user:pass or user:pass@host:port")
		}
		e.User, e.Pass = user, pass
	}
	host, port, err := splitHostPort(hostport, 0)
	if err != nil {
		return Entry{}, err
	}
	e.Host, e.Port = host, port
	return e, checkCredentials(e)
}

// splitHostPort validates and canonicalises host[:port]; defPort 0 means the
// port is required.
func splitHostPort(s string, defPort uint16) (string, uint16, error) {
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, invalid("missing ']' after IPv6 address")
		}
		host = s[1:end]
		switch after := s[end+1:]; {
		case after == "":
		case after[0] == ':':
			port = after[1:]
			if port == "" {
				return "", 0, invalid("empty port")
			}
		default:
			return "", 0, invalid("unexpected text after ']'")
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return "", 0, invalid("bad IPv6 address in brackets")
		}
		if a.Zone() != "" {
			return "", 0, invalid("zoned IPv6 addresses are not supported")
		}
		host = a.String()
	} else {
		var hasPort bool
		host, port, hasPort = strings.Cut(s, ":")
		if hasPort && port == "" {
			return "", 0, invalid("empty port")
		}
		if strings.Contains(port, ":") {
			return "", 0, invalid("too many colons (IPv6 addresses need brackets)")
		}
		h, err := checkHostName(host)
		if err != nil {
			return "", 0, err
		}
		host = h
	}
	if port == "" {
		if defPort == 0 {
			return "", 0, invalid("missing port")
		}
		return host, defPort, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, invalid("bad port %q", port)
	}
	return host, uint16(n), nil
}

// checkHostName accepts an IPv4 address or a DNS name made of letters,
// digits, '-', '_' and placeholders, and returns it canonical (lower case).
func checkHostName(h string) (string, error) {
	if h == "" {
		return "", invalid("empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !a.Is4() {
			return "", invalid("IPv6 addresses need brackets")
		}
		return a.String(), nil
	}
	if len(h) > 253 {
		return "", invalid("host name longer than 253 bytes")
	}
	lower := strings.ToLower(h)
	plain := withoutPlaceholders(lower, "x")
	for _, label := range strings.Split(plain, ".") {
		if label == "" || len(label) > 63 {
			return "", invalid("bad host name %q", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", invalid("bad host name %q", h)
			}
		}
	}
	return lower, nil
}

func checkCredentials(e Entry) error {
	if e.User == "" && e.Pass != "" {
		return invalid("password without a user name")
	}
	if strings.Contains(e.User, ":") {
		return invalid("user name contains ':'")
	}
	for _, s := range [...]string{e.User, e.Pass} {
		for i := 0; i < len(s); i++ {
			if s[i] < ' ' || s[i] == 0x7f {
				return invalid("control character in credentials")
			}
		}
	}
	if e.Scheme == SchemeSOCKS5 || e.Scheme == SchemeSOCKS5H {
		if len(e.User) > 255 || len(e.Pass) > 255 {
			return invalid("SOCKS5 credentials longer than 255 bytes")
		}
	}
	if e.Scheme == SchemeSOCKS4 || e.Scheme == SchemeSOCKS4A {
		if e.Pass != "" {
			return invalid("SOCKS4 has a user ID but no password")
		}
		if len(e.User) > maxUserID4 {
			return invalid("SOCKS4 user ID longer than %d bytes", maxUserID4)
		}
	}
	return nil
}

// parseDirect reads what follows direct://: an address or a prefix.
func parseDirect(rest string) (Entry, error) {
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return Entry{}, invalid("direct:// needs an address or prefix")
	}
	e := Entry{Scheme: SchemeDirect}
	addrPart, bitsPart, isPrefix := strings.Cut(rest, "/")
	addrPart = strings.TrimSuffix(strings.TrimPrefix(addrPart, "["), "]")
	a, err := netip.ParseAddr(addrPart)
	if err != nil || a.Zone() != "" {
		return Entry{}, invalid("bad local address %q", addrPart)
	}
	if !isPrefix {
		a = a.Unmap()
		e.Local = netip.PrefixFrom(a, a.BitLen())
		return e, nil
	}
	if a.Is4In6() {
		return Entry{}, invalid("use an IPv4 prefix instead of an IPv4-mapped one")
	}
	bits, err := strconv.Atoi(bitsPart)
	if err != nil || bitsPart[0] == '+' || bitsPart[0] == '-' || bits > a.BitLen() {
		return Entry{}, invalid("bad prefix length %q", bitsPart)
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return Entry{}, invalid("bad prefix %q", rest)
	}
	e.Local = p
	return e, nil
}
