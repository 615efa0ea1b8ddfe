package rotate

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func TestUpstreamCredentialsSent(t *testing.T) {
	origin := startEchoOrigin(t)
	auth := func(user, pass string) bool { return user == "alice" && pass == "s3:cr@t" }
	h := startHTTPProxy(t, "127.0.0.61", proxyOpts{auth: auth})
	s := startSOCKSProxy(t, "127.0.0.62", proxyOpts{auth: auth})
	pass := url.PathEscape("s3:cr@t")
	p := newTestPool(t, Config{}, "http://alice:"+pass+"@"+h.addr, "socks5://alice:"+pass+"@"+s.addr)
	for _, want := range []string{"127.0.0.61", "127.0.0.62"} {
		src, out := dialSource(t, p, &dial.Request{Target: origin.addr})
		assert.Equal(t, want, src)
		assert.Len(t, out.Attempts, 1)
	}
	assert.Equal(t, []string{"alice"}, h.seenUsers())
	assert.Equal(t, []string{"alice"}, s.seenUsers())

	for _, entry := range []string{"http://alice:wrong@" + h.addr, "socks5://alice:wrong@" + s.addr, "socks5://" + s.addr} {
		wrong := newTestPool(t, Config{Retries: -1}, entry)
		_, err := wrong.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.Error(t, err, entry)
		assert.True(t, errors.Is(err, ErrProxyAuth), "%s: %v", entry, err)
		assert.True(t, errors.Is(err, dial.ErrUpstream), entry)
		assert.Equal(t, dial.KindFailed, dial.Classify(err), entry)
		assert.NotContains(t, err.Error(), "wrong", "the password stays out of errors")
	}
	var pe *ProxyError
	_, err := newTestPool(t, Config{Retries: -1}, "http://alice:wrong@"+h.addr).
		Dial(context.Background(), &dial.Request{Target: origin.addr})
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, 407, pe.Code)
}

func TestSOCKS5ResolvesLocallySOCKS5HRemotely(t *testing.T) {
	origin := startEchoOrigin(t)
	_, port, _ := net.SplitHostPort(origin.addr)
	s5 := startSOCKSProxy(t, "127.0.0.63", proxyOpts{})
	s5h := startSOCKSProxy(t, "127.0.0.64", proxyOpts{})
	p := newTestPool(t, Config{}, "socks5://"+s5.addr, "socks5h://"+s5h.addr)
	target := net.JoinHostPort("localhost", port)
	for _, want := range []string{"127.0.0.63", "127.0.0.64"} {
		src, _ := dialSource(t, p, &dial.Request{Target: target})
		assert.Equal(t, want, src)
	}
	assert.Equal(t, []byte{socksAtypIPv4}, s5.atyps, "socks5 sends the address it resolved")
	assert.Equal(t, []string{"127.0.0.1"}, s5.hosts)
	assert.Equal(t, []byte{socksAtypDomain}, s5h.atyps, "socks5h hands the name over")
	assert.Equal(t, []string{"localhost"}, s5h.hosts)
}

func TestTemplatesFilledPerConnection(t *testing.T) {
	origin := startEchoOrigin(t)
	h := startHTTPProxy(t, "127.0.0.65", proxyOpts{auth: func(user, pass string) bool {
		return strings.HasPrefix(user, "u-session-") && pass == "pw"
	}})
	s := startSOCKSProxy(t, "127.0.0.66", proxyOpts{auth: func(user, pass string) bool { return pass == "pw-de" }})
	p := newTestPool(t, Config{Rotate: Rotation{Mode: RotatePerConnection}},
		"http://u-session-{session}-country-{country}:pw@"+h.addr,
		"socks5://s-{session}:pw-{country}@"+s.addr)
	dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: 2, Session: "abc", Country: "de"})
	dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: 2})
	dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: 2})
	dialSource(t, p, &dial.Request{Target: origin.addr, ConnID: 1, Session: "xyz", Country: "de"})
	users := h.seenUsers()
	require.Len(t, users, 3)
	abc := sessionAlnum(stickySeed(sessionKey{id: "abc", country: "de"}, 0))
	assert.Equal(t, "u-session-"+abc+"-country-de", users[0], "a sticky session's provider id derives from it")
	for _, u := range users[1:] {
		assert.Regexp(t, `^u-session-[a-z0-9]{12}$`, u, "no country: the -country- key goes with the placeholder")
	}
	assert.NotEqual(t, users[1], users[2], "a fresh session per connection without one")
	xyz := sessionAlnum(stickySeed(sessionKey{id: "xyz", country: "de"}, 0))
	assert.Equal(t, []string{"s-" + xyz}, s.seenUsers())
}

func TestBytesAfterReplyAreKept(t *testing.T) {
	origin := startEchoOrigin(t)
	early := []byte("EARLY-BYTES")
	h := startHTTPProxy(t, "127.0.0.67", proxyOpts{greeting: early})
	s := startSOCKSProxy(t, "127.0.0.68", proxyOpts{greeting: early})
	for _, entry := range []string{"http://" + h.addr, "socks5://" + s.addr} {
		p := newTestPool(t, Config{}, entry)
		out, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.NoError(t, err, entry)
		got := make([]byte, len(early))
		_, err = io.ReadFull(out.Conn, got)
		require.NoError(t, err)
		assert.Equal(t, early, got, entry)
		assert.NotEmpty(t, readFrom(t, out.Conn), entry)
		_, isCW := out.Conn.(interface{ CloseWrite() error })
		assert.True(t, isCW, "half-close stays available")
		out.Done(false)
	}
}

func TestTunnelIsRawTCPConn(t *testing.T) {
	origin := startQuietOrigin(t)
	h := startHTTPProxy(t, "127.0.0.69", proxyOpts{})
	s := startSOCKSProxy(t, "127.0.0.70", proxyOpts{})
	p := newTestPool(t, Config{}, "http://"+h.addr, "socks5://"+s.addr, "direct")
	for range 3 {
		out, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.NoError(t, err)
		assert.IsType(t, &net.TCPConn{}, out.Conn, "%s keeps the splice path", out.Upstream)
		_, err = io.WriteString(out.Conn, "ping")
		require.NoError(t, err)
		got := make([]byte, 4)
		_, err = io.ReadFull(out.Conn, got)
		require.NoError(t, err)
		assert.Equal(t, "ping", string(got))
		out.Done(false)
	}
}

func TestHTTPReplyMapping(t *testing.T) {
	cases := []struct {
		head string
		want error
		code int
		kind dial.Kind
	}{
		{"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", ErrProxyAuth, 407, dial.KindFailed},
		{"HTTP/1.1 403 Forbidden\r\n\r\n", dial.ErrUpstream, 403, dial.KindFailed},
		{"HTTP/1.1 500 Internal\r\n\r\n", dial.ErrUpstream, 500, dial.KindFailed},
		{"HTTP/1.1 502 Bad Gateway\r\n\r\n", dial.ErrUpstream, 502, dial.KindFailed},
		{"HTTP/1.0 503 Service Unavailable\r\nHopper-Error: no-upstream\r\n\r\n", dial.ErrUpstream, 503, dial.KindFailed},
		{"HTTP/1.1 504 Gateway Timeout\r\n\r\n", dial.ErrTimeout, 504, dial.KindTimeout},
		{"HTTP/1.1 502 Bad Gateway\r\nhopper-error: refused\r\n\r\n", dial.ErrTargetRefused, 502, dial.KindRefused},
		{"HTTP/1.1 502 Bad Gateway\r\nHopper-Error: unreachable\r\n\r\n", dial.ErrTargetUnreachable, 502, dial.KindUnreachable},
		{"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n\r\n", dial.ErrTargetRefused, 503, dial.KindRefused},
		{"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_DNS_FAIL 0\r\n\r\n", dial.ErrTargetUnreachable, 503, dial.KindUnreachable},
		{"HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n\r\n", dial.ErrDenied, 403, dial.KindDenied},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n", dial.ErrUpstream, 404, dial.KindFailed},
		{"SSH-2.0-OpenSSH\r\n", dial.ErrUpstream, 0, dial.KindFailed},
		{"HTTP/1.1 200", dial.ErrUpstream, 0, dial.KindFailed},
	}
	for _, c := range cases {
		err := replyErr(c.head)
		require.Error(t, err, c.head)
		assert.True(t, errors.Is(err, c.want), "%q: %v", c.head, err)
		assert.Equal(t, c.kind, dial.Classify(err), "%q", c.head)
		var pe *ProxyError
		if c.code != 0 {
			require.True(t, errors.As(err, &pe), c.head)
			assert.Equal(t, c.code, pe.Code)
		}
	}
	assert.NoError(t, replyErr("HTTP/1.1 200 Connection established\r\nX: y\r\n\r\n"))
	assert.NoError(t, replyErr("HTTP/1.0 204\n\n"))
}

// replyErr runs the reply parser over head as the CONNECT client would.
func replyErr(head string) error {
	server, client := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		buf := make([]byte, 512)
		_, _ = server.Read(buf) // the CONNECT request
		_, _ = io.WriteString(server, head)
	}()
	_, err := connectHTTP(context.Background(), client, "example.test:443", "")
	return err
}

func TestSOCKSReplyMapping(t *testing.T) {
	origin := startEchoOrigin(t)
	cases := []struct {
		code     byte
		want     error
		kind     dial.Kind
		attempts int
	}{
		{0x01, dial.ErrUpstream, dial.KindFailed, 2},
		{0x02, dial.ErrDenied, dial.KindDenied, 2},
		{0x03, dial.ErrTargetUnreachable, dial.KindUnreachable, 1},
		{0x04, dial.ErrTargetUnreachable, dial.KindUnreachable, 1},
		{0x05, dial.ErrTargetRefused, dial.KindRefused, 1},
		{0x06, dial.ErrTimeout, dial.KindTimeout, 2},
		{0x07, dial.ErrUpstream, dial.KindFailed, 2},
	}
	for _, c := range cases {
		a := startSOCKSProxy(t, "127.0.0.71", proxyOpts{socksReply: c.code})
		b := startSOCKSProxy(t, "127.0.0.72", proxyOpts{socksReply: c.code})
		p := newTestPool(t, Config{Retries: 1}, "socks5://"+a.addr, "socks5://"+b.addr)
		_, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.Error(t, err)
		assert.True(t, errors.Is(err, c.want), "0x%02x: %v", c.code, err)
		assert.Equal(t, c.kind, dial.Classify(err), "0x%02x", c.code)
		var de *dial.Error
		require.True(t, errors.As(err, &de))
		assert.Equal(t, c.attempts, de.Attempt, "0x%02x", c.code)
	}
}

func TestDirectEgress(t *testing.T) {
	origin := startEchoOrigin(t)
	p := newTestPool(t, Config{}, "direct://127.0.0.73")
	src, out := dialSource(t, p, &dial.Request{Target: origin.addr})
	assert.Equal(t, "127.0.0.73", src)
	assert.Equal(t, "direct@127.0.0.73", out.Upstream)

	prefix := netip.MustParsePrefix("127.0.0.80/29")
	p = newTestPool(t, Config{}, "direct://"+prefix.String())
	seen := make(map[string]bool)
	for range 12 {
		src, _ := dialSource(t, p, &dial.Request{Target: origin.addr})
		a := netip.MustParseAddr(src)
		assert.True(t, prefix.Contains(a), src)
		assert.NotEqual(t, "127.0.0.80", src, "network address avoided")
		assert.NotEqual(t, "127.0.0.87", src, "broadcast address avoided")
		seen[src] = true
	}
	assert.Greater(t, len(seen), 1, "a random address per connection")
}

func TestPickAddr(t *testing.T) {
	zero := func() uint64 { return 0 }
	ones := func() uint64 { return ^uint64(0) }
	var n uint64
	counter := func() uint64 { n++; return n * 0x9e3779b97f4a7c15 }
	cases := []struct {
		prefix string
		random func() uint64
		want   string
	}{
		{"10.0.0.5/32", counter, "10.0.0.5"},
		{"2001:db8::7/128", counter, "2001:db8::7"},
		{"10.0.0.0/31", zero, "10.0.0.0"},
		{"10.0.0.0/31", ones, "10.0.0.1"},
		{"2001:db8::/64", ones, "2001:db8::ffff:ffff:ffff:ffff"},
		{"10.1.0.0/16", ones, ""}, // only the broadcast address comes up: given up after bounded tries
	}
	for _, c := range cases {
		p := netip.MustParsePrefix(c.prefix)
		got := pickAddr(p, c.random)
		if c.want == "" {
			assert.True(t, p.Contains(got), c.prefix)
			continue
		}
		assert.Equal(t, c.want, got.String(), c.prefix)
	}
	p := netip.MustParsePrefix("2001:db8:1:2::/64")
	for range 100 {
		a := pickAddr(p, counter)
		assert.True(t, p.Contains(a), a.String())
		assert.NotEqual(t, p.Addr(), a)
	}
	p = netip.MustParsePrefix("192.0.2.0/30")
	for range 100 {
		a := pickAddr(p, counter).String()
		assert.Contains(t, []string{"192.0.2.1", "192.0.2.2"}, a)
	}
}
