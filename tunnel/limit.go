package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// clientKey is the address a connection counts against for
// Config.MaxConnsPerClient: the client's IPv4 address, or the /64 an IPv6
// client's address lies in (one host commonly holds a whole /64). ok is
// false for connections not limited per client: from the machine itself
// (127.0.0.1, ::1), and from addresses that are not IP (a unix socket, an
// in-memory pipe).
func clientKey(a net.Addr) (key netip.Addr, ok bool) {
	var ip netip.Addr
	switch t := a.(type) {
	case *net.TCPAddr:
		ip, ok = netip.AddrFromSlice(t.IP)
	case nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		ip, ok = ap.Addr(), err == nil
	}
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip == localhost4 || ip == netip.IPv6Loopback() {
		return netip.Addr{}, false
	}
	if ip.Is6() {
		ip = netip.PrefixFrom(ip.WithZone(""), 64).Masked().Addr()
	}
	return ip, true
}

var localhost4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// admitClient counts one more connection from a, or reports false when a's
// address already holds MaxConnsPerClient connections. Called with s.mu held.
func (s *Server) admitClient(a net.Addr) bool {
	key, ok := clientKey(a)
	if !ok {
		return true
	}
	if s.perClient == nil {
		s.perClient = make(map[netip.Addr]int)
	}
	n := s.perClient[key]
	if n >= s.cfg.MaxConnsPerClient {
		return false
	}
	s.perClient[key] = n + 1
	return true
}

// releaseClient uncounts a connection admitted by admitClient. Called with
// s.mu held.
func (s *Server) releaseClient(a net.Addr) {
	key, ok := clientKey(a)
	if !ok {
		return
	}
	if n := s.perClient[key]; n > 1 {
		s.perClient[key] = n - 1
	} else {
		delete(s.perClient, key)
	}
}

// deadlinePassed reports whether ctx's deadline has passed. A dialer that
// gave up on a connection deadline set from ctx's may return a moment before
// ctx's own timer marks it done, so ctx.Err() alone would miss the timeout.
func deadlinePassed(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
