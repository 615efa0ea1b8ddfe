package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func TestMaxConnsPerClientConfig(t *testing.T) {
	err := Config{Dialer: &dial.Direct{}, MaxConnsPerClient: -1}.Validate()
	assert.ErrorIs(t, err, ErrInvalidConfig)
	s, err := New(Config{Dialer: &dial.Direct{}})
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxConnsPerClient, s.cfg.MaxConnsPerClient)
}

func TestClientKey(t *testing.T) {
	cases := []struct {
		addr net.Addr
		want string // "" for not limited
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 1}, "127.0.0.2"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 1}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::"},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, ""},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}, ""},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, ""},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		key, ok := clientKey(c.addr)
		if c.want == "" {
			assert.False(t, ok, "%v", c.addr)
			continue
		}
		require.True(t, ok, "%v", c.addr)
		assert.Equal(t, netip.MustParseAddr(c.want), key, "%v", c.addr)
	}
}

// dialFrom connects to addr from the loopback address src, so that tests can
// play several clients.
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testTimeout}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	return c.(*net.TCPConn)
}

// connectFrom opens a CONNECT tunnel to target through p from src.
func connectFrom(t *testing.T, p *proxy, src, target string) *net.TCPConn {
	t.Helper()
	c := dialFrom(t, src, p.addr)
	_, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", target)
	require.NoError(t, err)
	r, err := readResponseHead(c)
	require.NoError(t, err)
	require.Equal(t, 200, r.status, r.raw)
	return c
}

// requireClosedWithoutReply checks that the proxy closed c without a byte.
func requireClosedWithoutReply(t *testing.T, c net.Conn) {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		require.ErrorIs(t, err, syscall.ECONNRESET)
	}
	require.Empty(t, b)
}

func (p *proxy) openConns() int {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	return len(p.srv.conns)
}

// One address may hold MaxConnsPerClient connections; the next is closed at
// once, while other addresses and the address's existing tunnels carry on.
func TestMaxConnsPerClient(t *testing.T) {
	origin := serveTCP(t, "127.0.0.1:0", echo)
	p := startProxy(t, Config{MaxConnsPerClient: 3})

	tun := connectFrom(t, p, "127.0.0.2", origin.addr())
	silent := []*net.TCPConn{dialFrom(t, "127.0.0.2", p.addr), dialFrom(t, "127.0.0.2", p.addr)}
	over := dialFrom(t, "127.0.0.2", p.addr)
	_, _ = fmt.Fprintf(over, "CONNECT %s HTTP/1.1\r\n\r\n", origin.addr())
	requireClosedWithoutReply(t, over)

	// Another address is served; the limited address's tunnel flows.
	other := connectFrom(t, p, "127.0.0.3", origin.addr())
	echoOnce(t, other, "other client")
	require.NoError(t, other.Close())
	echoOnce(t, tun, "still flowing")

	// A slot freed is a slot available again.
	require.NoError(t, silent[0].Close())
	require.Eventually(t, func() bool {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", p.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		_, _ = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", origin.addr())
		r, err := readResponseHead(c)
		return err == nil && r.status == 200
	}, testTimeout, 10*time.Millisecond)

	// The machine's own address is not limited.
	var local []net.Conn
	for i := 0; i < 5; i++ {
		local = append(local, connectFrom(t, p, "127.0.0.1", origin.addr()))
	}
	for _, c := range local {
		echoOnce(t, c, "local")
		require.NoError(t, c.Close())
	}

	// Every count is released once the connections end.
	require.NoError(t, tun.Close())
	require.NoError(t, silent[1].Close())
	require.Eventually(t, func() bool {
		p.srv.mu.Lock()
		defer p.srv.mu.Unlock()
		return len(p.srv.perClient) == 0 && len(p.srv.conns) == 0
	}, testTimeout, 5*time.Millisecond)
}

// A flood from one address takes at most MaxConnsPerClient slots, each
// refused connection closed at once, and a well-behaved client from another
// address is served throughout.
func TestConnectionFloodFromOneAddress(t *testing.T) {
	origin := serveTCP(t, "127.0.0.1:0", echo)
	p := startProxy(t, Config{HeaderTimeout: testTimeout})
	const flood = DefaultMaxConnsPerClient + 100
	conns := make([]*net.TCPConn, flood)
	for i := range conns {
		conns[i] = dialFrom(t, "127.0.0.40", p.addr)
	}
	// The refused ones end with no reply while the admitted ones stay open.
	// One shared deadline, read from every connection at once.
	var closed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			_, err := c.Read(make([]byte, 1))
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				closed.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(flood-DefaultMaxConnsPerClient), closed.Load())
	assert.Equal(t, DefaultMaxConnsPerClient, p.openConns())
	echoOnce(t, connectFrom(t, p, "127.0.0.41", origin.addr()), "served during a flood")
}

// slowClient is one slowloris connection and how it misbehaves.
type slowClient struct {
	conn  *net.TCPConn
	first string // bytes sent at once
	drip  bool   // then one more byte now and then, forever
}

// TestSlowloris holds 2,000 connections that never finish their head (some
// silent, some a partial HTTP head that keeps trickling, some a SOCKS
// greeting cut short) against a proxy with a short header timeout. While they
// hang on, an established tunnel keeps flowing and a new client is served;
// each slow connection is closed by the header deadline, however it drips.
func TestSlowloris(t *testing.T) {
	const (
		perAddr       = 100
		addrs         = 20
		headerTimeout = 3 * time.Second
	)
	origin := serveTCP(t, "127.0.0.1:0", echo)
	// A SOCKS handler reads its greeting under the header deadline tunnel
	// leaves set, as the real one does.
	socksH := StreamHandlerFunc(func(ctx context.Context, conn net.Conn, first byte, done func()) {
		defer done()
		_, _ = io.ReadFull(conn, make([]byte, 2))
	})
	p := startProxy(t, Config{HeaderTimeout: headerTimeout, SOCKS: socksH})

	established := connectFrom(t, p, "127.0.0.1", origin.addr())
	require.NoError(t, established.SetDeadline(time.Time{}))
	stopPing := make(chan struct{})
	var pings atomic.Int64
	pingErr := make(chan error, 1)
	go func() { pingErr <- pingLoop(established, stopPing, &pings) }()

	// The flood comes from 127.0.0.10-29 so that no one address reaches
	// the per-client limit: this is about the header deadline.
	start := time.Now()
	kinds := []slowClient{
		{first: ""},
		{first: "GET http://" + origin.addr() + "/ HTTP/1.1\r\nHost: x\r\n", drip: true},
		{first: "CONNECT " + origin.addr() + " HTTP/1.1\r\n"},
		{first: "\x05\x02", drip: false},
		{first: "G", drip: true},
	}
	slow := make([]slowClient, 0, perAddr*addrs)
	for a := 0; a < addrs; a++ {
		src := fmt.Sprintf("127.0.0.%d", 10+a)
		for i := 0; i < perAddr; i++ {
			sc := kinds[len(slow)%len(kinds)]
			sc.conn = dialFrom(t, src, p.addr)
			if sc.first != "" {
				_, err := io.WriteString(sc.conn, sc.first)
				require.NoError(t, err)
			}
			slow = append(slow, sc)
		}
	}
	stopDrip := make(chan struct{})
	var dripWG sync.WaitGroup
	dripWG.Add(1)
	go func() {
		defer dripWG.Done()
		drip(slow, stopDrip)
	}()
	defer func() {
		close(stopDrip)
		dripWG.Wait()
	}()

	// While every slow connection is still held (they were all opened
	// well within the header timeout), the proxy serves a newcomer and
	// the established tunnel flows.
	require.Eventually(t, func() bool { return p.openConns() >= len(slow)+1 }, headerTimeout, 5*time.Millisecond)
	require.Less(t, time.Since(start), headerTimeout, "flood took longer to open than the header timeout; the test proves nothing")
	newcomer := connectFrom(t, p, "127.0.0.1", origin.addr())
	echoOnce(t, newcomer, "served under slowloris")
	before := pings.Load()
	require.Eventually(t, func() bool { return pings.Load() > before+3 }, testTimeout, time.Millisecond,
		"the established tunnel keeps flowing")

	// Each slow connection is closed by the proxy (EOF, or a reset when
	// our drip hit the closed socket), not by our own read deadline.
	bound := time.Now().Add(headerTimeout + testTimeout)
	for i, sc := range slow {
		require.NoError(t, sc.conn.SetReadDeadline(bound))
		_, err := io.Copy(io.Discard, sc.conn)
		if err != nil {
			require.ErrorIs(t, err, syscall.ECONNRESET, "slow client %d (%q) was not closed by the proxy", i, sc.first)
		}
	}
	require.Eventually(t, func() bool { return p.openConns() == 2 }, testTimeout, 10*time.Millisecond,
		"only the two tunnels remain")
	echoOnce(t, newcomer, "still here")

	close(stopPing)
	require.NoError(t, <-pingErr)
	assert.Greater(t, pings.Load(), int64(3))
}

// pingLoop does echo round trips on c until stop is closed, counting them.
func pingLoop(c net.Conn, stop <-chan struct{}, n *atomic.Int64) error {
	msg := []byte("ping")
	got := make([]byte, len(msg))
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		n.Add(1)
		time.Sleep(5 * time.Millisecond)
	}
}

// drip writes one byte to every dripping slow client every 250ms until stop
// is closed, ignoring errors: the proxy closes them one after another.
func drip(slow []slowClient, stop <-chan struct{}) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for _, sc := range slow {
			if sc.drip {
				_ = sc.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = sc.conn.Write([]byte("X"))
			}
		}
	}
}

// A dialer that gives up at the connect deadline on a timer of its own,
// maybe a moment before ctx is done, still yields 504: establishment timed
// out, whatever the dialer's error says.
func TestConnectDeadlineIsTimeout(t *testing.T) {
	stalled := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		dl, _ := ctx.Deadline()
		time.Sleep(time.Until(dl))
		return nil, &dial.Error{Upstream: "http://stalled", Target: req.Target, Attempt: 1,
			Err: fmt.Errorf("%w: upstream handshake: i/o timeout", dial.ErrUpstream)}
	})
	p := startProxy(t, Config{Dialer: stalled, ConnectTimeout: 50 * time.Millisecond})
	for i := 0; i < 5; i++ {
		r, _ := connectStatus(t, p, "example.com:443", "")
		assert.Equal(t, 504, r.status)
		assert.Equal(t, "timeout", r.header.Get("Hopper-Error"))
	}
}
