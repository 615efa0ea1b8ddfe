package tunnel

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestConnectEcho(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{})

	c := connect(t, p, origin.Addr())
	_, err := c.Write([]byte("hello"))
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))
	require.NoError(t, c.Close())

	lines := p.waitAccessLines(t, 1)
	f := fieldsOf(lines[0])
	assert.Equal(t, "connect", f["proto"])
	assert.Equal(t, origin.Addr(), f["target"])
	assert.Equal(t, "direct", f["upstream"])
	assert.Equal(t, int64(1), f["attempts"])
	assert.Equal(t, int64(5), f["up"])
	assert.Equal(t, int64(5), f["down"])
	assert.Equal(t, "ok", f["result"])
	assert.Contains(t, f, "duration")
	assert.Contains(t, f, "client")
}

// Bytes a client sends right after its CONNECT head, before the 200 (as
// clients doing TLS False Start-like optimistic sends do), reach the target
// first.
func TestConnectEarlyBytes(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{})
	c := dialProxy(t, p)
	r := sendHead(t, c, "CONNECT %s HTTP/1.1\r\n\r\nearly-bytes", origin.Addr())
	require.Equal(t, 200, r.status)
	assert.Equal(t, "HTTP/1.1 200 Connection established\r\n\r\n", r.raw)
	got := make([]byte, len("early-bytes"))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "early-bytes", string(got))
}

func TestConnectHalfClose(t *testing.T) {
	// The origin reads the whole request, then answers and closes.
	origin := serveTCP(t, func(c net.Conn) {
		req, err := io.ReadAll(c)
		if err != nil {
			return
		}
		_, _ = fmt.Fprintf(c, "got %d bytes", len(req))
	})
	p := startProxy(t, Config{})
	c := connect(t, p, origin.Addr())
	_, err := c.Write([]byte("0123456789"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "got 10 bytes", string(reply))
}

func TestConnectLargeTransfer(t *testing.T) {
	const blocks = 100 // of 1 MiB: 100 MiB each way
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	want := sha256.New()
	for i := 0; i < blocks; i++ {
		want.Write(block)
	}
	wantSum := want.Sum(nil)

	// The origin hashes what it receives while sending the same stream back.
	upSum := make(chan []byte, 1)
	origin := serveTCP(t, func(c net.Conn) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			_, _ = io.Copy(h, c)
			upSum <- h.Sum(nil)
		}()
		for i := 0; i < blocks; i++ {
			if _, err := c.Write(block); err != nil {
				break
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
		wg.Wait()
	})
	p := startProxy(t, Config{})
	c := connect(t, p, origin.Addr())
	require.NoError(t, c.SetDeadline(time.Now().Add(60*time.Second)))

	sendErr := make(chan error, 1)
	go func() {
		for i := 0; i < blocks; i++ {
			if _, err := c.Write(block); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- c.CloseWrite()
	}()
	down := sha256.New()
	n, err := io.Copy(down, c)
	require.NoError(t, err)
	require.NoError(t, <-sendErr)
	assert.Equal(t, int64(blocks<<20), n)
	assert.Equal(t, wantSum, down.Sum(nil), "download checksum")
	assert.Equal(t, wantSum, <-upSum, "upload checksum")

	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, int64(blocks<<20), f["up"])
	assert.Equal(t, int64(blocks<<20), f["down"])
}

func TestConnectManyTunnels(t *testing.T) {
	const tunnels = 1000
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{})

	conns := make([]*net.TCPConn, tunnels)
	var wg sync.WaitGroup
	errs := make(chan error, tunnels)
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < tunnels; i += workers {
				c, err := net.DialTimeout("tcp", p.addr, testTimeout)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c.(*net.TCPConn)
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", origin.Addr()); err != nil {
					errs <- err
					return
				}
				r, err := readResponseHead(c)
				if err != nil || r.status != 200 {
					errs <- fmt.Errorf("tunnel %d: %d %v", i, r.status, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// All tunnels are open at once; each echoes its own message.
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < tunnels; i += workers {
				msg := fmt.Sprintf("tunnel-%04d", i)
				got := make([]byte, len(msg))
				if _, err := conns[i].Write([]byte(msg)); err != nil {
					t.Error(err)
					return
				}
				if _, err := io.ReadFull(conns[i], got); err != nil || string(got) != msg {
					t.Errorf("tunnel %d: %q %v", i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, tunnels, origin.count())
}

func TestConnectSourceIP(t *testing.T) {
	origin := serveTCP(t, func(c net.Conn) {
		_, _ = io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
	})
	p := startProxy(t, Config{Dialer: &dial.Direct{LocalIP: net.ParseIP("127.0.0.2")}})
	c := connect(t, p, origin.Addr())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.2", string(got))
	require.NoError(t, c.Close())
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "direct@127.0.0.2", f["upstream"])
}

func TestConnectGoTransportHTTPS(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "secure %s", r.URL.Path)
	}))
	t.Cleanup(origin.Close)
	p := startProxy(t, Config{})

	tr := origin.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: p.addr})
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: testTimeout}
	for i := 0; i < 3; i++ {
		resp, err := client.Get(origin.URL + "/x")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, "secure /x", string(body))
		assert.Equal(t, 200, resp.StatusCode)
	}
	// The TLS connection is kept alive inside one tunnel.
	tr.CloseIdleConnections()
	lines := p.waitAccessLines(t, 1)
	assert.Len(t, lines, 1)
}

func TestConnectErrors(t *testing.T) {
	blocking := dial.DialerFunc(func(ctx context.Context, _ *dial.Request) (*dial.Outbound, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	sentinel := func(err error) dial.Dialer {
		return dial.DialerFunc(func(context.Context, *dial.Request) (*dial.Outbound, error) {
			return nil, fmt.Errorf("pool: %w", err)
		})
	}
	cases := []struct {
		name        string
		dialer      dial.Dialer
		target      string
		status      int
		hopperError string
		body        string
		result      string
	}{
		{"closed port", &dial.Direct{}, testnet.RefusingAddr(t, "127.0.0.1"), 502, "upstream-failed", "connection refused", "refused"},
		{"unresolvable", &dial.Direct{Resolver: testnet.NoDNS()}, "nonexistent.invalid:443", 502, "upstream-failed", "nonexistent.invalid:443", "unreachable"},
		{"timeout", blocking, "example.com:443", 504, "timeout", "timed out", "timeout"},
		{"no upstream", sentinel(dial.ErrNoUpstream), "example.com:443", 503, "no-upstream", "no upstream", "no-upstream"},
		{"denied", sentinel(dial.ErrDenied), "example.com:443", 403, "", "denied", "denied"},
		{"no port", &dial.Direct{}, "example.com", 400, "", "port", "bad-request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, Config{Dialer: tc.dialer, ConnectTimeout: 200 * time.Millisecond})
			r, body := connectStatus(t, p, tc.target, "")
			assert.Equal(t, tc.status, r.status, r.raw)
			assert.Equal(t, tc.hopperError, r.header.Get("Hopper-Error"))
			assert.Equal(t, "close", r.header.Get("Connection"))
			assert.Contains(t, body, tc.body)
			assert.Regexp(t, `^hopper: [^\n]+\n$`, body)
			f := fieldsOf(p.waitAccessLines(t, 1)[0])
			assert.Equal(t, tc.result, f["result"])
		})
	}
}

func TestConnectCurlTLS(t *testing.T) {
	requireCurl(t)
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello over tls")
	}))
	t.Cleanup(origin.Close)
	p := startProxy(t, Config{})
	out := runCurl(t, "-k", "-x", "http://"+p.addr, origin.URL+"/")
	assert.Equal(t, "hello over tls", out)
}

func TestConnectCurlProxytunnel(t *testing.T) {
	requireCurl(t)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "tunnelled %s", r.URL.Path)
	}))
	t.Cleanup(origin.Close)
	p := startProxy(t, Config{})
	out := runCurl(t, "-p", "-x", "http://"+p.addr, origin.URL+"/p")
	assert.Equal(t, "tunnelled /p", out)
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "connect", f["proto"])
}

// A tunnel nothing moves through for IdleTimeout is closed.
func TestConnectIdleTimeout(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{IdleTimeout: 100 * time.Millisecond})
	c := connect(t, p, origin.Addr())
	testnet.EchoRoundTrip(t, c, "then silence")
	_, err := io.ReadAll(c)
	require.NoError(t, err, "closed by the proxy, not by our deadline")
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "idle-timeout", f["result"])
}

func TestIdleTunnelHoldsOnlyTheRelay(t *testing.T) {
	// Once a CONNECT tunnel is up the goroutine that read its head has
	// ended: an idle tunnel holds the relay's two goroutines and nothing of
	// the handshake (its grown stack, its buffers).
	p := startProxy(t, Config{})
	// The origin holds its ends without goroutines, and closes them before
	// the proxy's cleanup waits for the tunnels to end.
	origin := holdConns(t)
	const tunnels = 20
	for range tunnels {
		connect(t, p, origin)
	}
	// The handshake goroutines end just after their 200 went out.
	var relays, handshakes int
	for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		relays, handshakes = goroutinesIn("relay.(*started).run"), goroutinesIn("tunnel.(*conn).serve")
		if relays == 2*tunnels && handshakes == 0 {
			break
		}
	}
	assert.Equal(t, 2*tunnels, relays, "relay goroutines for %d idle tunnels", tunnels)
	assert.Zero(t, handshakes, "handshake goroutines outlived their handshakes")
}

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}
