package rotate

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"

	"github.com/hopper-proxy/hopper/dial"
)

// SOCKS5 protocol constants (RFC 1928, RFC 1929).
const (
	socksVersion    = 0x05
	socksAuthNone   = 0x00
	socksAuthPass   = 0x02
	socksNoMethod   = 0xff
	socksCmdConnect = 0x01
	socksAtypIPv4   = 0x01
	socksAtypDomain = 0x03
	socksAtypIPv6   = 0x04
	socksPassVer    = 0x01
)

// socksReplyErr maps a SOCKS5 reply code (RFC 1928 §6) to a dial sentinel.
func socksReplyErr(code byte) error {
	switch code {
	case 0x02: // connection not allowed by ruleset
		return dial.ErrDenied
	case 0x03, 0x04: // network unreachable, host unreachable
		return dial.ErrTargetUnreachable
	case 0x05: // connection refused
		return dial.ErrTargetRefused
	case 0x06: // TTL expired
		return dial.ErrTimeout
	default: // 0x01 general failure, 0x07 command, 0x08 address type, unassigned
		return dial.ErrUpstream
	}
}

var socksReplyText = [...]string{
	1: "general failure", 2: "not allowed by ruleset", 3: "network unreachable",
	4: "host unreachable", 5: "connection refused", 6: "TTL expired",
	7: "command not supported", 8: "address type not supported",
}

// socksTarget is the address a CONNECT names: an IP, or a host name the
// upstream resolves (socks5h).
type socksTarget struct {
	ip   netip.Addr // valid unless name is set
	name string
	port uint16
}

// resolveSOCKSTarget prepares target for a SOCKS5 upstream. With remoteDNS
// (socks5h) a name is passed on as is; otherwise it is resolved here,
// preferring an IPv4 address as most SOCKS exits have IPv4.
func resolveSOCKSTarget(ctx context.Context, r *net.Resolver, target string, remoteDNS bool) (socksTarget, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return socksTarget{}, errBadTarget
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return socksTarget{}, errBadTarget
	}
	t := socksTarget{port: uint16(port)}
	if a, err := netip.ParseAddr(host); err == nil {
		t.ip = a.Unmap()
		return t, nil
	}
	if remoteDNS {
		if len(host) > 255 {
			return socksTarget{}, errBadTarget
		}
		t.name = host
		return t, nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return socksTarget{}, err
	}
	if len(addrs) == 0 {
		return socksTarget{}, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	t.ip = addrs[0].Unmap()
	for _, a := range addrs {
		if a.Unmap().Is4() {
			t.ip = a.Unmap()
			break
		}
	}
	return t, nil
}

// connectSOCKS5 runs a SOCKS5 CONNECT handshake on c, offering
// username/password authentication (RFC 1929) when user is set. It reads
// exactly the reply's length, so c is returned as is with nothing read ahead.
// It does not close c.
func connectSOCKS5(ctx context.Context, c net.Conn, t socksTarget, user, pass string) (net.Conn, error) {
	if len(user) > 255 || len(pass) > 255 {
		return nil, &ProxyError{Op: "auth", Reason: "credentials longer than 255 bytes", Err: ErrProxyAuth}
	}
	err := withDeadline(ctx, c, func() error {
		if err := socksAuthenticate(c, user, pass); err != nil {
			return err
		}
		return socksConnect(c, t)
	})
	if err != nil {
		var pe *ProxyError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, proxyFailure("handshake", err)
	}
	return c, nil
}

func socksAuthenticate(c net.Conn, user, pass string) error {
	greeting := []byte{socksVersion, 1, socksAuthNone}
	if user != "" {
		greeting = []byte{socksVersion, 2, socksAuthNone, socksAuthPass}
	}
	if _, err := c.Write(greeting); err != nil {
		return err
	}
	var choice [2]byte
	if _, err := io.ReadFull(c, choice[:]); err != nil {
		return err
	}
	if choice[0] != socksVersion {
		return &ProxyError{Op: "handshake", Reason: "not a SOCKS5 server", Err: dial.ErrUpstream}
	}
	switch choice[1] {
	case socksAuthNone:
		return nil
	case socksAuthPass:
		if user == "" {
			return &ProxyError{Op: "auth", Reason: "server demands credentials", Err: ErrProxyAuth}
		}
	case socksNoMethod:
		return &ProxyError{Op: "auth", Reason: "no acceptable authentication method", Err: ErrProxyAuth}
	default:
		return &ProxyError{Op: "handshake", Reason: "server chose a method not offered", Err: dial.ErrUpstream}
	}
	msg := make([]byte, 0, 3+len(user)+len(pass))
	msg = append(msg, socksPassVer, byte(len(user)))
	msg = append(msg, user...)
	msg = append(msg, byte(len(pass)))
	msg = append(msg, pass...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	var status [2]byte
	if _, err := io.ReadFull(c, status[:]); err != nil {
		return err
	}
	if status[1] != 0 {
		return &ProxyError{Op: "auth", Code: int(status[1]), Reason: "credentials refused", Err: ErrProxyAuth}
	}
	return nil
}

func socksConnect(c net.Conn, t socksTarget) error {
	req := make([]byte, 0, 6+256)
	req = append(req, socksVersion, socksCmdConnect, 0)
	switch {
	case t.name != "":
		req = append(req, socksAtypDomain, byte(len(t.name)))
		req = append(req, t.name...)
	case t.ip.Is4():
		ip := t.ip.As4()
		req = append(req, socksAtypIPv4)
		req = append(req, ip[:]...)
	default:
		ip := t.ip.As16()
		req = append(req, socksAtypIPv6)
		req = append(req, ip[:]...)
	}
	req = append(req, byte(t.port>>8), byte(t.port))
	if _, err := c.Write(req); err != nil {
		return err
	}
	// Reply: VER REP RSV ATYP BND.ADDR BND.PORT, read to its exact end.
	var buf [4 + 1 + 255 + 2]byte
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		return err
	}
	if buf[0] != socksVersion {
		return &ProxyError{Op: "reply", Reason: "bad SOCKS version in reply", Err: dial.ErrUpstream}
	}
	if rep := buf[1]; rep != 0 {
		pe := &ProxyError{Op: "reply", Code: int(rep), Err: socksReplyErr(rep)}
		if int(rep) < len(socksReplyText) {
			pe.Reason = socksReplyText[rep]
		}
		return pe
	}
	var n int
	switch buf[3] {
	case socksAtypIPv4:
		n = 4
	case socksAtypIPv6:
		n = 16
	case socksAtypDomain:
		if _, err := io.ReadFull(c, buf[4:5]); err != nil {
			return err
		}
		n = int(buf[4])
	default:
		return &ProxyError{Op: "reply", Reason: "bad address type in reply", Err: dial.ErrUpstream}
	}
	_, err := io.ReadFull(c, buf[5:5+n+2])
	return err
}
