package tunnel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// stallWait is the response header timeout of these tests: long enough for
// a loopback origin under the race detector, short enough to wait out.
const stallWait = 250 * time.Millisecond

// stallOrigin reads one request head (and reply, if set, is written after
// it), then never answers. Each connection it saw end is sent on closed.
func stallOrigin(t *testing.T, reply string) (*tcpServer, <-chan struct{}) {
	t.Helper()
	closed := make(chan struct{}, 16)
	s := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if reply != "" {
			_, _ = io.WriteString(c, reply)
		}
		// Reads on (any body, then EOF) without answering.
		_, _ = io.Copy(io.Discard, br)
		closed <- struct{}{}
	})
	return s, closed
}

// waitClosed waits until stallOrigin reports a connection ended on closed.
func waitClosed(t *testing.T, closed <-chan struct{}) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("the stalled connection stayed open")
	}
}

// failureLog is a FailureReporter that remembers what it was told.
type failureLog struct {
	mu      sync.Mutex
	reports []string // upstream: error
	errs    []error
}

func (f *failureLog) ReportFailure(ctx context.Context, upstream string, err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, upstream)
	f.errs = append(f.errs, err)
	return true
}

func (f *failureLog) got() ([]string, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reports...), append([]error(nil), f.errs...)
}

// stallDialer hands out a connection to stall (labelled "http://stall") for
// the first stalls dials, then direct ones. It records how each outbound
// was given back.
type stallDialer struct {
	stall  string
	stalls int64
	calls  atomic.Int64
	mu     sync.Mutex
	// released lists Done's reusable argument per stalled outbound.
	released []bool
}

func (d *stallDialer) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	if d.calls.Add(1) > d.stalls {
		return (&dial.Direct{}).Dial(ctx, req)
	}
	c, err := dial.DialTCP(ctx, nil, d.stall)
	if err != nil {
		return nil, err
	}
	return &dial.Outbound{Conn: c, Upstream: "http://stall", Attempts: []dial.Attempt{{Upstream: "http://stall"}},
		Release: func(o *dial.Outbound, reusable bool) {
			d.mu.Lock()
			d.released = append(d.released, reusable)
			d.mu.Unlock()
			_ = o.Conn.Close()
		}}, nil
}

func (d *stallDialer) releases() []bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bool(nil), d.released...)
}

// A bodiless GET or HEAD whose response head does not come within the
// response header timeout is sent once more through the dialer; the stalled
// connection is closed, never kept, and the upstream is reported.
func TestForwardStallRetried(t *testing.T) {
	o := startOrigin(t)
	for _, method := range []string{"GET", "HEAD", "OPTIONS"} {
		t.Run(method, func(t *testing.T) {
			stall, closed := stallOrigin(t, "")
			d := &stallDialer{stall: stall.Addr(), stalls: 1}
			failures := &failureLog{}
			p := startProxy(t, Config{Dialer: d, ResponseHeaderTimeout: stallWait, Failures: failures})
			client, _ := proxyClient(t, p)
			req, err := http.NewRequest(method, o.URL+"/hello", nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)

			assert.Equal(t, 200, resp.StatusCode)
			if method == "GET" {
				assert.Equal(t, "hello from origin", string(body))
			}
			assert.Equal(t, int64(2), d.calls.Load(), "one more dial after the stall")
			assert.Equal(t, []bool{false}, d.releases(), "the stalled connection is not kept")
			waitClosed(t, closed)
			ups, errs := failures.got()
			assert.Equal(t, []string{"http://stall"}, ups)
			require.Len(t, errs, 1)
			assert.ErrorIs(t, errs[0], dial.ErrTimeout)
			assert.Contains(t, errs[0].Error(), "response header timeout")

			f := fieldsOf(p.waitAccessLines(t, 1)[0])
			assert.Equal(t, "ok", f["result"])
			assert.Equal(t, int64(2), f["attempts"])
			assert.Equal(t, "direct", f["upstream"])
		})
	}
}

// A request that may have changed something at the origin (a body, an
// unsafe method) or whose response had begun is not sent again after a
// stall: the client gets 504 with Hopper-Error: timeout at once.
func TestForwardStallNotRetried(t *testing.T) {
	cases := []struct {
		name, request, reply string
	}{
		{"POST with a body", "POST http://%s/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", ""},
		{"POST without a body", "POST http://%s/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", ""},
		{"DELETE", "DELETE http://%s/x HTTP/1.1\r\n\r\n", ""},
		{"GET with a body", "GET http://%s/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", ""},
		{"GET after part of a head", "GET http://%s/ HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stall, closed := stallOrigin(t, tc.reply)
			d := &stallDialer{stall: stall.Addr(), stalls: 2}
			failures := &failureLog{}
			p := startProxy(t, Config{Dialer: d, ResponseHeaderTimeout: stallWait, Failures: failures})
			c := dialProxy(t, p)
			r := sendHead(t, c, tc.request, stall.Addr())
			body, _ := io.ReadAll(c)

			assert.Equal(t, 504, r.status)
			assert.Equal(t, "timeout", r.header.Get("Hopper-Error"))
			assert.Equal(t, fmt.Sprintf("hopper: no response from %s within %v\n", stall.Addr(), stallWait), string(body))
			assert.Equal(t, strconv.Itoa(len(body)), r.header.Get("Content-Length"))
			assert.Equal(t, int64(1), d.calls.Load(), "not sent again")
			assert.Equal(t, []bool{false}, d.releases())
			waitClosed(t, closed)
			ups, _ := failures.got()
			assert.Equal(t, []string{"http://stall"}, ups)

			f := fieldsOf(p.waitAccessLines(t, 1)[0])
			assert.Equal(t, "timeout", f["result"])
			assert.Equal(t, int64(504), f["status"])
			assert.Equal(t, "http://stall", f["upstream"])
			assert.Contains(t, f["error"], "no response head within "+stallWait.String()+" (response header timeout)")
		})
	}
}

// A request that stalls on its second upstream too gets 504 after two
// attempts, each counted against its upstream.
func TestForwardStallRetriedOnce(t *testing.T) {
	stall, _ := stallOrigin(t, "")
	d := &stallDialer{stall: stall.Addr(), stalls: 10}
	failures := &failureLog{}
	p := startProxy(t, Config{Dialer: d, ResponseHeaderTimeout: stallWait, Failures: failures})
	c := dialProxy(t, p)
	r := sendHead(t, c, "GET http://%s/ HTTP/1.1\r\n\r\n", stall.Addr())
	assert.Equal(t, 504, r.status)
	assert.Equal(t, "timeout", r.header.Get("Hopper-Error"))
	assert.Equal(t, int64(2), d.calls.Load())
	assert.Equal(t, []bool{false, false}, d.releases())
	ups, _ := failures.got()
	assert.Equal(t, []string{"http://stall", "http://stall"}, ups)
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "timeout", f["result"])
	assert.Equal(t, int64(2), f["attempts"])
}

// The response header timeout runs from the end of the request body: a body
// that takes longer than it to arrive is not a stall.
func TestForwardStallTimerStartsAfterBody(t *testing.T) {
	o := startOrigin(t)
	p := startProxy(t, Config{ResponseHeaderTimeout: stallWait})
	c := dialProxy(t, p)
	part := "0123456789"
	_, err := fmt.Fprintf(c, "POST %s/echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n", o.URL, 3*len(part))
	require.NoError(t, err)
	for range 3 {
		time.Sleep(stallWait * 3 / 5)
		_, err := io.WriteString(c, part)
		require.NoError(t, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, sumOf([]byte(strings.Repeat(part, 3))), string(b))
}

// Once the response head came, the response header timeout no longer
// applies, even if the request body is sent after it: a response body that
// streams for longer is relayed whole.
func TestForwardStallTimerStopsAtHead(t *testing.T) {
	const chunks = 4
	origin := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		// Answer at once, before the body, then stream slowly.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(chunks)+"\r\n\r\n")
		go func() { _, _ = io.Copy(io.Discard, req.Body) }()
		for range chunks {
			time.Sleep(stallWait / 2)
			if _, err := io.WriteString(c, "x"); err != nil {
				return
			}
		}
	})
	p := startProxy(t, Config{ResponseHeaderTimeout: stallWait})
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, "POST http://%s/ HTTP/1.1\r\nContent-Length: 2\r\n\r\na", origin.Addr())
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	// The rest of the body, after the head: the header timeout now starts
	// in the body job, and must leave the response alone.
	_, err = io.WriteString(c, "b")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("x", chunks), string(b))
	f := fieldsOf(p.waitAccessLines(t, 1)[0])
	assert.Equal(t, "ok", f["result"])
}
