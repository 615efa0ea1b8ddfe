package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

func TestForwardHopByHop(t *testing.T) {
	origin, heads := rawOrigin(t, "HTTP/1.1 200 OK\r\n"+
		"Connection: X-Bar\r\nX-Bar: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n"+
		"Proxy-Connection: keep-alive\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-End: 2\r\nContent-Length: 2\r\n\r\nok")
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec})
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, "GET http://user:pw@%s/path?q=1#frag HTTP/1.1\r\n"+
		"Host: wrong.example\r\nConnection: X-Foo, keep-alive\r\nX-Foo: 1\r\nKeep-Alive: 300\r\n"+
		"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic %s\r\nProxy-Anything: x\r\n"+
		"TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nHopper-Session: s9\r\nHopper-Country: DE\r\nhopper-debug: 1\r\n"+
		"X-Keep: kept\r\nUser-Agent: test\r\n\r\n", origin.Addr(), basic("carol-session-s1", "pw"))
	require.NoError(t, err)

	got := <-heads
	assert.Equal(t, "GET /path?q=1 HTTP/1.1\r\nHost: "+origin.Addr()+"\r\nX-Keep: kept\r\nUser-Agent: test\r\n\r\n", got)

	r, err := readResponseHead(c)
	require.NoError(t, err)
	assert.Equal(t, 200, r.status)
	for _, h := range []string{"Connection", "X-Bar", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Trailer", "Upgrade"} {
		assert.Empty(t, r.header.Get(h), h)
	}
	assert.Equal(t, "2", r.header.Get("X-End"))
	body := make([]byte, 2)
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(body))

	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "carol", reqs[0].User)
	assert.Equal(t, "s9", reqs[0].Session, "header overrides username")
	assert.Equal(t, "de", reqs[0].Country)
	assert.Equal(t, origin.Addr(), reqs[0].Target)
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// When the dialer leads to an upstream HTTP proxy, the request keeps its
// absolute form and carries the upstream's credentials, never the client's.
func TestForwardThroughUpstreamProxy(t *testing.T) {
	upstream, heads := rawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nvia")
	dialer := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		c, err := dial.DialTCP(ctx, nil, upstream.Addr())
		if err != nil {
			return nil, err
		}
		return &dial.Outbound{Conn: c, Upstream: "http://upstream", Proxy: true, ProxyAuthorization: "Basic dXA6cHc="}, nil
	})
	p := startProxy(t, Config{Dialer: dialer})
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, "GET http://example.test/a?b HTTP/1.1\r\nHost: example.test\r\nProxy-Authorization: Basic %s\r\n\r\n", basic("client", "secret"))
	require.NoError(t, err)
	assert.Equal(t, "GET http://example.test/a?b HTTP/1.1\r\nHost: example.test\r\nProxy-Authorization: Basic dXA6cHc=\r\n\r\n", <-heads)
	r, err := readResponseHead(c)
	require.NoError(t, err)
	assert.Equal(t, 200, r.status)
}

// A request that fails before any response byte on a connection the dialer
// kept idle is sent again on the next one.
func TestForwardRetryReused(t *testing.T) {
	o := startOrigin(t)
	// A stale keep-alive connection: the peer reads the request and closes.
	stale := serveTCP(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 1024))
	})
	for _, reused := range []bool{true, false} {
		t.Run(fmt.Sprintf("reused=%v", reused), func(t *testing.T) {
			var calls atomic.Int64
			dialer := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
				if calls.Add(1) == 1 {
					c, err := dial.DialTCP(ctx, nil, stale.Addr())
					if err != nil {
						return nil, err
					}
					return &dial.Outbound{Conn: c, Upstream: "direct", Reused: reused,
						Attempts: []dial.Attempt{{Upstream: "direct"}}}, nil
				}
				return (&dial.Direct{}).Dial(ctx, req)
			})
			p := startProxy(t, Config{Dialer: dialer})
			client, _ := proxyClient(t, p)
			resp, body := getBody(t, client, o.URL+"/hello")
			if reused {
				assert.Equal(t, 200, resp.StatusCode)
				assert.Equal(t, "hello from origin", body)
				assert.Equal(t, int64(2), calls.Load())
				f := fieldsOf(p.waitAccessLines(t, 1)[0])
				assert.Equal(t, int64(2), f["attempts"])
			} else {
				assert.Equal(t, 502, resp.StatusCode)
				assert.Equal(t, "upstream-failed", resp.Header.Get("Hopper-Error"))
				assert.Contains(t, body, "no response from")
				assert.Equal(t, int64(1), calls.Load())
			}
		})
	}
}

func TestForwardErrors(t *testing.T) {
	p := startProxy(t, Config{})
	cases := []struct {
		request     string
		status      int
		hopperError string
		body        string
	}{
		{"GET http://" + testnet.RefusingAddr(t, "127.0.0.1") + "/ HTTP/1.1\r\n\r\n", 502, "upstream-failed", "connection refused"},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "", "this is a proxy"},
		{"GET https://example.com/ HTTP/1.1\r\n\r\n", 400, "", "CONNECT"},
		{"POST http://example.com/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "", "Transfer-Encoding"},
		{"GET http://example.com:99999/ HTTP/1.1\r\n\r\n", 400, "", "port"},
	}
	for _, tc := range cases {
		c := dialProxy(t, p)
		r := sendHead(t, c, "%s", tc.request)
		body, _ := io.ReadAll(c)
		assert.Equal(t, tc.status, r.status, tc.request)
		assert.Equal(t, tc.hopperError, r.header.Get("Hopper-Error"), tc.request)
		assert.Contains(t, string(body), tc.body, tc.request)
		assert.Equal(t, strconv.Itoa(len(body)), r.header.Get("Content-Length"))
	}
}

// A client that pipelines requests gets the responses in order.
func TestForwardPipelined(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{})
	c := dialProxy(t, p)
	var reqs strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&reqs, "GET %s/cl?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", o.URL, i*10)
	}
	_, err := io.WriteString(c, reqs.String())
	require.NoError(t, err)
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, pattern(i*10), b)
	}
}

// rawOrigin records each request head it receives and answers with reply.
func rawOrigin(t *testing.T, reply string) (*tcpServer, <-chan string) {
	t.Helper()
	heads := make(chan string, 16)
	s := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			heads <- head.String()
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
	})
	return s, heads
}

func TestForwardHTTP10Client(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{})
	_, body := responseBeforeClose(t, p, "GET %s/hello HTTP/1.0\r\n\r\n", o.URL)
	assert.Equal(t, "hello from origin", body)
}

// responseBeforeClose sends a request (format and args as for fmt.Fprintf)
// to p on a new connection, requires p to close the connection after one
// response, and returns that response and its body.
func responseBeforeClose(t *testing.T, p *proxy, format string, args ...any) (*http.Response, string) {
	t.Helper()
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, format, args...)
	require.NoError(t, err)
	all, err := io.ReadAll(c)
	require.NoError(t, err, "connection closed after the response")
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// "Connection: close" from the client is honoured and announced.
func TestForwardConnectionClose(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{})
	resp, body := responseBeforeClose(t, p, "GET %s/hello HTTP/1.1\r\nConnection: close\r\n\r\n", o.URL)
	assert.True(t, resp.Close, "Connection: close in the response")
	assert.Equal(t, "hello from origin", body)
}

// An origin that accepts a request but never answers gets 504 after the
// idle timeout.
func TestForwardOriginTimeout(t *testing.T) {
	silent := serveTCP(t, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c)
	})
	p := startProxy(t, Config{IdleTimeout: 200 * time.Millisecond})
	c := dialProxy(t, p)
	r := sendHead(t, c, "GET http://%s/ HTTP/1.1\r\n\r\n", silent.Addr())
	assert.Equal(t, 504, r.status)
	assert.Equal(t, "timeout", r.header.Get("Hopper-Error"))
}

// A client that goes away in the middle of its request body is logged as
// such, and the origin connection is not kept.
func TestForwardClientAbortsBody(t *testing.T) {
	gotPart := make(chan struct{})
	origin := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if _, err := io.ReadFull(br, make([]byte, 4)); err != nil {
			return
		}
		close(gotPart)
		_, _ = io.Copy(io.Discard, br)
	})
	p := startProxy(t, Config{})
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, "POST http://%s/ HTTP/1.1\r\nContent-Length: 100\r\n\r\npart", origin.Addr())
	require.NoError(t, err)
	<-gotPart
	require.NoError(t, c.Close())
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "client-closed", f["result"])
	assert.Equal(t, int64(4), f["up"].(int64)-int64(len(fmt.Sprintf("POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n", origin.Addr()))))
}
