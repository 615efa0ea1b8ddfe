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
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
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

func (p *proxy) openConns() int {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	return len(p.srv.conns)
}

// One address may hold MaxConnsPerClient connections; the next is closed at
// once, while other addresses and the address's existing tunnels carry on.
func TestMaxConnsPerClient(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{MaxConnsPerClient: 3})

	tun := connectVia(t, "127.0.0.2", p.addr, origin.Addr())
	silent := []*net.TCPConn{testnet.DialFrom(t, "127.0.0.2", p.addr), testnet.DialFrom(t, "127.0.0.2", p.addr)}
	over := testnet.DialFrom(t, "127.0.0.2", p.addr)
	_, _ = fmt.Fprintf(over, "CONNECT %s HTTP/1.1\r\n\r\n", origin.Addr())
	testnet.RequireClosed(t, over)

	// Another address is served; the limited address's tunnel flows.
	other := connectVia(t, "127.0.0.3", p.addr, origin.Addr())
	testnet.EchoRoundTrip(t, other, "other client")
	require.NoError(t, other.Close())
	testnet.EchoRoundTrip(t, tun, "still flowing")

	// A slot freed is a slot available again.
	require.NoError(t, silent[0].Close())
	require.Eventually(t, func() bool { return connects("127.0.0.2", p.addr, origin.Addr()) },
		testTimeout, 10*time.Millisecond)

	// The machine's own address is not limited.
	var local []net.Conn
	for i := 0; i < 5; i++ {
		local = append(local, connectVia(t, "127.0.0.1", p.addr, origin.Addr()))
	}
	for _, c := range local {
		testnet.EchoRoundTrip(t, c, "local")
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
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{HeaderTimeout: testTimeout})
	const flood = DefaultMaxConnsPerClient + 100
	conns := make([]*net.TCPConn, flood)
	for i := range conns {
		conns[i] = testnet.DialFrom(t, "127.0.0.40", p.addr)
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
	testnet.EchoRoundTrip(t, connectVia(t, "127.0.0.41", p.addr, origin.Addr()), "served during a flood")
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
	origin := serveTCP(t, testnet.Echo)
	// A SOCKS handler reads its greeting under the header deadline tunnel
	// leaves set, as the real one does.
	socksH := StreamHandlerFunc(func(ctx context.Context, conn net.Conn, first byte, done func()) {
		defer done()
		_, _ = io.ReadFull(conn, make([]byte, 2))
	})
	p := startProxy(t, Config{HeaderTimeout: headerTimeout, SOCKS: socksH})

	established := connectVia(t, "127.0.0.1", p.addr, origin.Addr())
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
		{first: "GET http://" + origin.Addr() + "/ HTTP/1.1\r\nHost: x\r\n", drip: true},
		{first: "CONNECT " + origin.Addr() + " HTTP/1.1\r\n"},
		{first: "\x05\x02", drip: false},
		{first: "G", drip: true},
	}
	slow := make([]slowClient, 0, perAddr*addrs)
	for a := 0; a < addrs; a++ {
		src := fmt.Sprintf("127.0.0.%d", 10+a)
		for i := 0; i < perAddr; i++ {
			sc := kinds[len(slow)%len(kinds)]
			sc.conn = testnet.DialFrom(t, src, p.addr)
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
	newcomer := connectVia(t, "127.0.0.1", p.addr, origin.Addr())
	testnet.EchoRoundTrip(t, newcomer, "served under slowloris")
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
	testnet.EchoRoundTrip(t, newcomer, "still here")

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
	p := startProxy(t, Config{Dialer: dialtest.MissesDeadline(), ConnectTimeout: 50 * time.Millisecond})
	for i := 0; i < 5; i++ {
		r, _ := connectStatus(t, p, "example.com:443", "")
		assert.Equal(t, 504, r.status)
		assert.Equal(t, "timeout", r.header.Get("Hopper-Error"))
	}
}
