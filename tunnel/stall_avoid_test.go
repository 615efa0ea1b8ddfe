package tunnel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

// exit is one way out of exitDialer: a label and the address it leads to.
type exit struct{ label, addr string }

// exitDialer stands in for a pool pinned to its first exit (per-connection
// rotation, a sticky session): every request leaves through exits[0]
// unless it avoids that one (dial.Request.Avoid), then through the next.
// It records the requests it was given.
type exitDialer struct {
	dialtest.Recorder
	exits []exit
}

func newExitDialer(exits ...exit) *exitDialer {
	d := &exitDialer{exits: exits}
	d.Next = dial.DialerFunc(d.dialExit)
	return d
}

func (d *exitDialer) dialExit(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	e := d.exits[0]
	if req.Avoid == e.label && len(d.exits) > 1 {
		e = d.exits[1]
	}
	c, err := dial.DialTCP(ctx, nil, e.addr)
	if err != nil {
		return nil, &dial.Error{Upstream: e.label, Target: req.Target, Attempt: 1, Err: err}
	}
	return &dial.Outbound{Conn: c, Upstream: e.label, Attempts: []dial.Attempt{{Upstream: e.label}}}, nil
}

// avoided lists the Avoid of every request dialled so far.
func (d *exitDialer) avoided() []string {
	var out []string
	for _, r := range d.Requests() {
		out = append(out, r.Avoid)
	}
	return out
}

// A GET whose upstream stalled is sent again with that upstream in
// dial.Request.Avoid, so a dialer pinned to it lets the retry out
// elsewhere; the next request on the connection starts without it.
func TestForwardStallRetryAvoidsUpstream(t *testing.T) {
	o := startOrigin(t)
	originAddr := mustHost(t, o.URL)
	stall, _ := stallOrigin(t, "")
	d := newExitDialer(exit{"http://stall", stall.Addr()}, exit{"http://good", originAddr})
	failures := &failureLog{}
	p := startProxy(t, Config{Dialer: d, ResponseHeaderTimeout: stallWait, Failures: failures})
	c := dialProxy(t, p)
	br := bufio.NewReader(c)
	for i := range 2 {
		_, err := fmt.Fprintf(c, "GET %s/hello HTTP/1.1\r\nHost: %s\r\n\r\n", o.URL, originAddr)
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "request %d", i)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode, "request %d", i)
		assert.Equal(t, "hello from origin", string(body))
	}
	assert.Equal(t, []string{"", "http://stall", "", "http://stall"}, d.avoided(),
		"each retry avoids the upstream that stalled; each request starts afresh")
	ups, _ := failures.got()
	assert.Equal(t, []string{"http://stall", "http://stall"}, ups, "each stall is charged")
	for _, line := range p.waitAccessLines(t, 2) {
		f := fieldsOf(line)
		assert.Equal(t, "ok", f["result"])
		assert.Equal(t, "http://good", f["upstream"])
		assert.Equal(t, int64(2), f["attempts"])
	}
}

// With no other way out the retry goes back through the stalled upstream
// and, stalling again, ends in 504; a POST is never sent again, even with
// another upstream at hand.
func TestForwardStallRetryNoOtherUpstream(t *testing.T) {
	o := startOrigin(t)
	originAddr := mustHost(t, o.URL)
	cases := []struct {
		name    string
		request string
		exits   int
		avoided []string
	}{
		{"GET, one upstream", "GET http://%s/hello HTTP/1.1\r\n\r\n", 1, []string{"", "http://stall"}},
		{"POST, two upstreams", "POST http://%s/hello HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 2, []string{""}},
		{"bodiless POST, two upstreams", "POST http://%s/hello HTTP/1.1\r\n\r\n", 2, []string{""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stall, _ := stallOrigin(t, "")
			d := newExitDialer([]exit{{"http://stall", stall.Addr()}, {"http://good", originAddr}}[:tc.exits]...)
			failures := &failureLog{}
			p := startProxy(t, Config{Dialer: d, ResponseHeaderTimeout: stallWait, Failures: failures})
			c := dialProxy(t, p)
			r := sendHead(t, c, tc.request, originAddr)
			assert.Equal(t, 504, r.status)
			assert.Equal(t, "timeout", r.header.Get("Hopper-Error"))
			assert.Equal(t, tc.avoided, d.avoided())
			ups, _ := failures.got()
			assert.Len(t, ups, len(tc.avoided), "every stall is charged")
			f := fieldsOf(p.waitAccessLines(t, 1)[0])
			assert.Equal(t, "timeout", f["result"])
			assert.Equal(t, "http://stall", f["upstream"])
		})
	}
}

func mustHost(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	return u.Host
}
