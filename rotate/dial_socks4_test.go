package rotate

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func startSOCKS4Proxy(t testing.TB, ip string, opts proxyOpts) *testProxy {
	return startProxy(t, ip, opts, (*testProxy).serveSOCKS4)
}

// socks4:// sends the IPv4 address it resolved and the user ID; socks4a://
// hands the name over for the upstream to resolve.
func TestSOCKS4AndSOCKS4a(t *testing.T) {
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	s4 := startSOCKS4Proxy(t, "127.0.0.151", proxyOpts{})
	s4a := startSOCKS4Proxy(t, "127.0.0.152", proxyOpts{})
	p := newTestPool(t, Config{}, "socks4://scraper-1@"+s4.addr, "socks4a://"+s4a.addr)
	target := net.JoinHostPort("localhost", port)
	for _, want := range []string{"127.0.0.151", "127.0.0.152"} {
		src, out := dialSource(t, p, &dial.Request{Target: target})
		assert.Equal(t, want, src)
		assert.Len(t, out.Attempts, 1)
	}
	assert.Equal(t, []byte{1}, s4.atyps, "socks4 sends the address it resolved")
	assert.Equal(t, []string{"127.0.0.1"}, s4.hosts)
	assert.Equal(t, []string{"scraper-1"}, s4.seenUsers(), "the user ID")
	assert.Equal(t, []byte{3}, s4a.atyps, "socks4a hands the name over")
	assert.Equal(t, []string{"localhost"}, s4a.hosts)
	assert.Empty(t, s4a.seenUsers())
}

func TestSOCKS4ReplyMapping(t *testing.T) {
	origin := startEchoOrigin(t)
	for code, c := range map[byte]struct {
		want error
		kind dial.Kind
	}{
		91: {dial.ErrTargetUnreachable, dial.KindUnreachable},
		92: {ErrProxyAuth, dial.KindFailed},
		93: {ErrProxyAuth, dial.KindFailed},
		77: {dial.ErrUpstream, dial.KindFailed},
	} {
		s := startSOCKS4Proxy(t, "127.0.0.153", proxyOpts{socksReply: code})
		_, err := newTestPool(t, Config{Retries: -1}, "socks4://"+s.addr).Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.Error(t, err, code)
		assert.True(t, errors.Is(err, c.want), "%d: %v", code, err)
		assert.Equal(t, c.kind, dial.Classify(err), "%d", code)
		var pe *ProxyError
		require.True(t, errors.As(err, &pe), "%d", code)
		assert.Equal(t, int(code), pe.Code)
	}
	// A target the origin refuses: the proxy answers 91.
	s := startSOCKS4Proxy(t, "127.0.0.154", proxyOpts{})
	_, err := newTestPool(t, Config{Retries: -1}, "socks4://"+s.addr).Dial(context.Background(), &dial.Request{Target: refusingAddr(t, "127.0.0.156")})
	assert.ErrorIs(t, err, dial.ErrTargetUnreachable)
}

// SOCKS4 carries IPv4 addresses only: an IPv6 target fails before any
// connection to the upstream, and is not the upstream's fault.
func TestSOCKS4RefusesIPv6Targets(t *testing.T) {
	s := startSOCKS4Proxy(t, "127.0.0.155", proxyOpts{})
	p := newTestPool(t, Config{Retries: -1}, "socks4://"+s.addr)
	_, err := p.Dial(context.Background(), &dial.Request{Target: "[::1]:80"})
	require.ErrorIs(t, err, dial.ErrTargetUnreachable)
	assert.Contains(t, err.Error(), "IPv4")
	assert.Zero(t, s.accepted.Load())
}

func TestParseSOCKS4Entries(t *testing.T) {
	for in, want := range map[string]Entry{
		"socks4://1.2.3.4":          {Scheme: SchemeSOCKS4, Host: "1.2.3.4", Port: 1080},
		"SOCKS4A://user@proxy:1081": {Scheme: SchemeSOCKS4A, Host: "proxy", Port: 1081, User: "user"},
	} {
		e, err := ParseEntry(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, e)
		back, err := ParseEntry(e.String())
		require.NoError(t, err)
		assert.Equal(t, e, back, "round trip of %s", e)
	}
	for _, bad := range []string{"socks4://u:p@h:1", "socks4a://u:@h:1x"} {
		_, err := ParseEntry(bad)
		assert.ErrorIs(t, err, ErrInvalidEntry, bad)
	}
}
