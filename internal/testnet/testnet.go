// Package testnet holds the loopback fixtures that hopper's tests share, so
// that each package's tests keep only the behaviour they inject:
//
//   - addresses: RefusingAddr, a port that refuses for the whole test;
//     NoDNS, a resolver that never leaves the machine;
//   - servers: Listen, Server (an accept loop that tracks and closes its
//     connections), Echo (its simplest handler), Go (a background
//     Serve/Run stopped and checked at the end of the test), TCPPair;
//   - clients: Dial and DialFrom (connections bounded in time), and the
//     checks EchoRoundTrip, BulkEcho and RequireClosed;
//   - protocol pieces of test proxies and origins: the server side of a
//     SOCKS5 handshake (RFC 1928/1929), one HTTP forwarding exchange, and a
//     raw HTTP/2 client that shows a chosen fingerprint.
//
// It owns no proxy or origin of its own: what a fixture does with a
// connection stays in the test that needs it. It is imported only from
// _test.go files, and imports nothing of hopper's but the leaf package
// fingerprint, so that the tests of every package but fingerprint may use
// it (deps_test.go keeps both so). Fakes of dial's contracts live apart,
// in dialtest.
package testnet

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// RefusingAddr returns ip:port (ip a loopback IPv4 address) where every
// connection is refused for the rest of the test. The port stays bound but
// never listens, so no other listener or outgoing connection of a test
// running in parallel can take it over, as can happen with a port that was
// merely listened on and closed.
func RefusingAddr(t testing.TB, ip string) string {
	t.Helper()
	addr, _ := RefusingAddrUntil(t, ip)
	return addr
}

// RefusingAddrUntil is RefusingAddr with a function that frees the port
// early, for a test whose upstream "comes back" on the same address.
func RefusingAddrUntil(t testing.TB, ip string) (addr string, free func()) {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		t.Fatalf("testnet: %q is not an IPv4 address", ip)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testnet: socket: %v", err)
	}
	var once sync.Once
	free = func() { once.Do(func() { _ = syscall.Close(fd) }) }
	t.Cleanup(free)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: a.As4()}); err != nil {
		t.Fatalf("testnet: bind %s: %v", ip, err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("testnet: getsockname: %v", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort(ip, strconv.Itoa(port)), free
}
