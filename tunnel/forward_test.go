package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

// testOrigin is an HTTP origin with the handlers the forward tests use.
type testOrigin struct {
	*httptest.Server
	newConns atomic.Int64
}

func startOrigin(t *testing.T) *testOrigin {
	t.Helper()
	o := &testOrigin{}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from origin")
	})
	mux.HandleFunc("/cl", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(pattern(n))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		b := pattern(n)
		for len(b) > 0 {
			k := min(len(b), 7000)
			_, _ = w.Write(b[:k])
			w.(http.Flusher).Flush()
			b = b[k:]
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		_, _ = fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	})
	o.Server = httptest.NewUnstartedServer(mux)
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.newConns.Add(1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

// pattern returns n deterministic bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func sumOf(b []byte) string {
	return fmt.Sprintf("%d %x", len(b), sha256.Sum256(b))
}

// proxyClient returns an http.Client that uses p as its HTTP proxy.
func proxyClient(t *testing.T, p *proxy) (*http.Client, *http.Transport) {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: p.addr})}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}, tr
}

func getBody(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestForwardCurl(t *testing.T) {
	requireCurl(t)
	o := startOrigin(t)
	p := startProxy(t, Config{})
	assert.Equal(t, "hello from origin", runCurl(t, "-x", "http://"+p.addr, o.URL+"/hello"))

	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "http", f["proto"])
	assert.Equal(t, o.Listener.Addr().String(), f["target"])
	assert.Equal(t, "ok", f["result"])
	assert.Equal(t, int64(200), f["status"])
	assert.Equal(t, "direct", f["upstream"])
}

func TestForwardGoTransport(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{})
	client, _ := proxyClient(t, p)
	resp, body := getBody(t, client, o.URL+"/hello")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "hello from origin", body)

	resp, err := client.Post(o.URL+"/echo", "text/plain", strings.NewReader("posted"))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, sumOf([]byte("posted")), string(b))
}

func TestForwardKeepAlive(t *testing.T) {
	o := startOrigin(t)
	idle := &dial.IdlePool{}
	t.Cleanup(func() { idle.Close() })
	rec := &dialtest.Recorder{Next: &dial.Direct{Idle: idle}}
	p := startProxy(t, Config{Dialer: rec})
	client, _ := proxyClient(t, p)

	const requests = 5
	reused := 0
	for i := 0; i < requests; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodGet, o.URL+"/cl?n=100", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, pattern(100), b)
	}
	assert.Equal(t, requests-1, reused, "client connection to hopper reused")
	assert.Equal(t, int64(1), o.newConns.Load(), "one origin connection")

	reqs := rec.Requests()
	require.Len(t, reqs, requests)
	for i, r := range reqs {
		assert.Equal(t, reqs[0].ConnID, r.ConnID)
		assert.Equal(t, i, r.Seq)
		assert.True(t, r.Forward)
		assert.Equal(t, dial.ProtocolHTTPForward, r.Protocol)
	}
}

func TestForwardBodies(t *testing.T) {
	o := startOrigin(t)
	// A raw origin: chunked with one huge chunk, and close-delimited.
	raw := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		n, _ := strconv.Atoi(req.URL.Query().Get("n"))
		switch req.URL.Path {
		case "/bigchunk":
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", n)
			_, _ = c.Write(pattern(n))
			_, _ = io.WriteString(c, "\r\n0\r\nX-Trailer: t\r\n\r\n")
		case "/close":
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
			_, _ = c.Write(pattern(n))
		}
	})
	p := startProxy(t, Config{})
	client, _ := proxyClient(t, p)

	for _, n := range []int{0, 1, 5000, 300 << 10, 4 << 20} {
		for _, path := range []string{"/cl", "/chunked"} {
			_, body := getBody(t, client, fmt.Sprintf("%s%s?n=%d", o.URL, path, n))
			assert.Equal(t, sumOf(pattern(n)), sumOf([]byte(body)), "%s n=%d", path, n)
		}
		for _, path := range []string{"/bigchunk", "/close"} {
			resp, body := getBody(t, client, fmt.Sprintf("http://%s%s?n=%d", raw.Addr(), path, n))
			assert.Equal(t, sumOf(pattern(n)), sumOf([]byte(body)), "%s n=%d", path, n)
			if path == "/bigchunk" && n > 0 {
				assert.Equal(t, "t", resp.Trailer.Get("X-Trailer"))
			}
		}
		// Request bodies: Content-Length and chunked (unknown length).
		resp, err := client.Post(o.URL+"/echo", "", bytes.NewReader(pattern(n)))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, sumOf(pattern(n)), string(b), "content-length n=%d", n)

		resp, err = client.Post(o.URL+"/echo", "", io.MultiReader(bytes.NewReader(pattern(n))))
		require.NoError(t, err)
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, sumOf(pattern(n)), string(b), "chunked n=%d", n)
	}
}

// Bodies are streamed: the client sees the first part of a response before
// the origin sends the rest, and the origin sees the first part of a request
// body before the client sends the rest.
func TestForwardStreaming(t *testing.T) {
	release := make(chan struct{})
	gotFirst := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "part1")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "part2")
	})
	mux.HandleFunc("/up", func(w http.ResponseWriter, r *http.Request) {
		first := make([]byte, 6)
		if _, err := io.ReadFull(r.Body, first); err != nil {
			return
		}
		close(gotFirst)
		rest, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s+%s", first, rest)
	})
	o := httptest.NewServer(mux)
	t.Cleanup(o.Close)
	p := startProxy(t, Config{})
	client, _ := proxyClient(t, p)

	resp, err := client.Get(o.URL + "/down")
	require.NoError(t, err)
	first := make([]byte, 5)
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	assert.Equal(t, "part1", string(first))
	close(release)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "part2", string(rest))

	pr, pw := io.Pipe()
	done := make(chan string, 1)
	go func() {
		resp, err := client.Post(o.URL+"/up", "", pr)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	_, err = io.WriteString(pw, "chunk1")
	require.NoError(t, err)
	<-gotFirst
	_, err = io.WriteString(pw, "chunk2")
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	assert.Equal(t, "chunk1+chunk2", <-done)
}

func TestForwardExpectContinue(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{})
	host := o.Listener.Addr().String()

	// The 100 Continue arrives before the client sends its body.
	c := dialProxy(t, p)
	r := sendHead(t, c, "POST http://%s/echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", host, host)
	require.Equal(t, 100, r.status, r.raw)
	r = sendHead(t, c, "hello")
	require.Equal(t, 200, r.status, r.raw)
	n, _ := strconv.Atoi(r.header.Get("Content-Length"))
	body := make([]byte, n)
	_, err := io.ReadFull(c, body)
	require.NoError(t, err)
	assert.Equal(t, sumOf([]byte("hello")), string(body))

	// An origin that refuses without reading: the final answer arrives
	// although the body never does, and the connection closes after it.
	c = dialProxy(t, p)
	r = sendHead(t, c, "POST http://%s/status?code=417 HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", host, host)
	assert.Equal(t, 417, r.status, r.raw)
	rest, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Empty(t, rest)

	// curl as a real client.
	requireCurl(t)
	out := runCurl(t, "-x", "http://"+p.addr, "-H", "Expect: 100-continue", "--data-binary", "curl-body", o.URL+"/echo")
	assert.Equal(t, sumOf([]byte("curl-body")), out)
}

func TestForwardNoBodyResponses(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{})
	client, tr := proxyClient(t, p)
	var conns atomic.Int64
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	resp, err := client.Head(o.URL + "/cl?n=1000")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int64(1000), resp.ContentLength)
	for _, code := range []int{204, 304} {
		resp, body := getBody(t, client, fmt.Sprintf("%s/status?code=%d", o.URL, code))
		assert.Equal(t, code, resp.StatusCode)
		assert.Empty(t, body)
	}
	_, body := getBody(t, client, o.URL+"/hello")
	assert.Equal(t, "hello from origin", body)
	assert.Equal(t, int64(1), conns.Load(), "framing kept the connection usable")
}

// Every dial gets (nearly) the whole ConnectTimeout, also when the requests
// of a kept-alive connection share a dial context, and that context is
// released with the connection.
func TestForwardDialBudget(t *testing.T) {
	o := startOrigin(t)
	const budget = 2 * time.Second
	const window = budget / dialShareFraction
	var mu sync.Mutex
	var deadlines []time.Time
	var ctxs []context.Context
	dialer := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, fmt.Errorf("a dial without a deadline")
		}
		mu.Lock()
		deadlines = append(deadlines, dl)
		ctxs = append(ctxs, ctx)
		mu.Unlock()
		return (&dial.Direct{}).Dial(ctx, req)
	})
	p := startProxy(t, Config{Dialer: dialer, ConnectTimeout: budget})
	c := dialProxy(t, p)
	br := bufio.NewReader(c)
	var before, after []time.Time
	for i := range 5 {
		if i == 3 {
			time.Sleep(2 * window)
		}
		before = append(before, time.Now())
		_, err := fmt.Fprintf(c, "GET %s/hello HTTP/1.1\r\n\r\n", o.URL)
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		after = append(after, time.Now())
	}
	require.NoError(t, c.Close())
	p.waitAccessLines(t, 5)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, deadlines, 5)
	for i, dl := range deadlines {
		// A shared context was made at most window before this dial began.
		assert.False(t, dl.Before(before[i].Add(budget-window)), "dial %d", i)
		assert.False(t, dl.After(after[i].Add(budget)), "dial %d", i)
	}
	assert.NotSame(t, ctxs[2], ctxs[3], "a dial after the window gets a context of its own")
	require.Eventually(t, func() bool { return ctxs[4].Err() != nil }, testTimeout, 5*time.Millisecond,
		"the dial context is released with the connection")
	assert.ErrorIs(t, ctxs[4].Err(), context.Canceled)
}
