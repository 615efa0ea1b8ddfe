package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Dialer: &dial.Direct{}}
	require.NoError(t, ok.Validate())
	cases := map[string]Config{
		"no dialer":          {},
		"negative header":    {Dialer: ok.Dialer, HeaderTimeout: -1},
		"negative idle":      {Dialer: ok.Dialer, IdleTimeout: -1},
		"negative connect":   {Dialer: ok.Dialer, ConnectTimeout: -1},
		"negative response":  {Dialer: ok.Dialer, ResponseHeaderTimeout: -1},
		"negative max conns": {Dialer: ok.Dialer, MaxConns: -1},
		"head too small":     {Dialer: ok.Dialer, MaxHeadBytes: 100},
		"head too large":     {Dialer: ok.Dialer, MaxHeadBytes: 2 << 20},
	}
	for name, cfg := range cases {
		err := cfg.Validate()
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
		_, err = New(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	s, err := New(Config{Dialer: &dial.Direct{}})
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, s.cfg.HeaderTimeout)
	assert.Equal(t, 5*time.Minute, s.cfg.IdleTimeout)
	assert.Equal(t, 30*time.Second, s.cfg.ResponseHeaderTimeout)
	assert.Equal(t, 10*time.Second, s.cfg.ConnectTimeout)
	assert.Equal(t, 8192, s.cfg.MaxConns)
	assert.Equal(t, 64<<10, s.cfg.MaxHeadBytes)
	assert.NotNil(t, s.log)
}

// sendRaw writes data to the proxy and returns the response head and body
// it answers with before closing.
func sendRaw(t *testing.T, p *proxy, data string) (response, string) {
	t.Helper()
	c := dialProxy(t, p)
	go func() { _, _ = io.WriteString(c, data) }()
	r, err := readResponseHead(c)
	require.NoError(t, err, "partial: %q", r.raw)
	body, err := io.ReadAll(c)
	require.NoError(t, err)
	return r, string(body)
}

func TestGarbageFirstBytes(t *testing.T) {
	p := startProxy(t, Config{})
	for _, garbage := range []string{
		"hello world\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
		"GET http://x/ HTTP/2.0\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nBad Header\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\n folded: x\r\n\r\n",
	} {
		r, body := sendRaw(t, p, garbage)
		assert.Equal(t, 400, r.status, "%q", garbage)
		assert.Equal(t, "close", r.header.Get("Connection"))
		assert.Regexp(t, `^hopper: [^\n]+\n$`, body)
	}
	lines := p.waitAccessLines(t, 5)
	assert.Equal(t, "bad-request", fieldsOf(lines[0])["result"])
}

func TestOversizedHead(t *testing.T) {
	p := startProxy(t, Config{})
	head := "GET http://example.com/ HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"
	r, body := sendRaw(t, p, head)
	assert.Equal(t, 400, r.status)
	assert.Contains(t, body, "head too large")

	// MaxHeadBytes is configurable.
	small := startProxy(t, Config{MaxHeadBytes: 1 << 10})
	r, _ = sendRaw(t, small, "GET http://example.com/ HTTP/1.1\r\nX-Big: "+strings.Repeat("a", 2<<10)+"\r\n\r\n")
	assert.Equal(t, 400, r.status)
}

func TestSlowHeadIsClosed(t *testing.T) {
	p := startProxy(t, Config{HeaderTimeout: 100 * time.Millisecond})
	for _, partial := range []string{"", "G", "GET http://example.com/ HTTP/1.1\r\nHost: x\r\n"} {
		c := dialProxy(t, p)
		_, err := io.WriteString(c, partial)
		require.NoError(t, err)
		// The proxy closes; our own deadline (testTimeout) would show as a
		// timeout error instead.
		_, err = io.ReadAll(c)
		assert.NoError(t, err, "%q", partial)
	}
}

// The header deadline keeps running while the head trickles in: a client
// sending a byte at a time cannot hold the connection past it.
func TestTrickledHeadIsClosed(t *testing.T) {
	p := startProxy(t, Config{HeaderTimeout: 200 * time.Millisecond})
	c := dialProxy(t, p)
	closed := make(chan struct{})
	go func() {
		_, _ = io.ReadAll(c)
		close(closed)
	}()
	for i := 0; ; i++ {
		select {
		case <-closed:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if i > 400 {
			t.Fatal("connection still open after 8s of trickling")
		}
		_, _ = c.Write([]byte("X"))
	}
}

// On a kept-alive connection the next head is due within HeaderTimeout of
// its first byte, however it arrives: in part, or as a trickle of the empty
// lines that may precede it.
func TestKeptAliveSlowHeadIsClosed(t *testing.T) {
	o := startOrigin(t)
	// Idle outlasts the test's own deadline: only the header deadline can
	// close these connections in time.
	p := startProxy(t, Config{HeaderTimeout: 200 * time.Millisecond, IdleTimeout: 3 * testTimeout})
	for _, next := range []string{"GET http://example.com/ HTTP/1.1\r\n", "\r\n", "\r\n\r\n", "trickle"} {
		c := dialProxy(t, p)
		_, err := fmt.Fprintf(c, "GET %s/hello HTTP/1.1\r\n\r\n", o.URL)
		require.NoError(t, err)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		closed := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, br)
			closed <- err
		}()
		if next != "trickle" {
			_, err = io.WriteString(c, next)
			require.NoError(t, err)
			assert.NoError(t, <-closed, "%q", next)
			continue
		}
		for i := 0; ; i++ {
			select {
			case err := <-closed:
				assert.NoError(t, err)
			case <-time.After(20 * time.Millisecond):
				require.Less(t, i, 400, "connection still open after 8s of trickling")
				_, _ = io.WriteString(c, "\r\n")
				continue
			}
			break
		}
	}
}

func TestMaxConns(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{MaxConns: 2})
	t1 := connect(t, p, origin.Addr())
	t2 := connect(t, p, origin.Addr())

	// A third connection is closed at once, without an answer.
	c3 := dialProxy(t, p)
	_, _ = fmt.Fprintf(c3, "CONNECT %s HTTP/1.1\r\n\r\n", origin.Addr())
	testnet.RequireClosed(t, c3)

	// The existing tunnels keep flowing.
	for _, c := range []net.Conn{t1, t2} {
		testnet.EchoRoundTrip(t, c, "still here")
	}
	// Once one ends, a new connection is served again.
	require.NoError(t, t1.Close())
	require.Eventually(t, func() bool { return connects("", p.addr, origin.Addr()) },
		testTimeout, 10*time.Millisecond)
}

func TestSOCKSHandoff(t *testing.T) {
	type call struct {
		first    byte
		raw      bool
		deadline bool
		rest     string
	}
	calls := make(chan call, 2)
	handler := StreamHandlerFunc(func(ctx context.Context, conn net.Conn, first byte, done func()) {
		defer done()
		_, raw := conn.(*net.TCPConn)
		// The header deadline is still set: a read with nothing to read
		// ends by it rather than blocking forever.
		buf := make([]byte, 3)
		n, _ := io.ReadFull(conn, buf)
		_, err := conn.Read(make([]byte, 1))
		calls <- call{first: first, raw: raw, deadline: errors.Is(err, os.ErrDeadlineExceeded), rest: string(buf[:n])}
		// As a SOCKS handler does after its handshake.
		_ = conn.SetDeadline(time.Time{})
		_, _ = conn.Write([]byte{0x05, 0x00})
	})
	p := startProxy(t, Config{SOCKS: handler, HeaderTimeout: 200 * time.Millisecond})
	for _, first := range []byte{0x05, 0x04} {
		c := dialProxy(t, p)
		_, err := c.Write([]byte{first, 1, 2, 3})
		require.NoError(t, err)
		reply, err := io.ReadAll(c)
		require.NoError(t, err, "conn closed after ServeStream")
		assert.Equal(t, []byte{0x05, 0x00}, reply)
		got := <-calls
		assert.Equal(t, call{first: first, raw: true, deadline: true, rest: "\x01\x02\x03"}, got)
	}
}

func TestSOCKSDoneAfterReturn(t *testing.T) {
	// A handler may return at once and finish with the connection later,
	// from another goroutine: the connection stays open until done.
	returned := make(chan struct{})
	release := make(chan struct{})
	handler := StreamHandlerFunc(func(_ context.Context, conn net.Conn, _ byte, done func()) {
		_ = conn.SetDeadline(time.Time{})
		go func() {
			defer done()
			<-release
			_, _ = conn.Write([]byte("late reply"))
		}()
		close(returned)
	})
	p := startProxy(t, Config{SOCKS: handler})
	c := dialProxy(t, p)
	_, err := c.Write([]byte{0x05})
	require.NoError(t, err)
	<-returned
	require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "conn closed before done")

	close(release)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
	reply, err := io.ReadAll(c)
	require.NoError(t, err, "conn closed after done")
	assert.Equal(t, "late reply", string(reply))
}

func TestSOCKSRefusedWhenOff(t *testing.T) {
	p := startProxy(t, Config{})
	c := dialProxy(t, p)
	_, err := c.Write([]byte{0x05, 0x01, 0x00})
	require.NoError(t, err)
	testnet.RequireClosed(t, c)
}
