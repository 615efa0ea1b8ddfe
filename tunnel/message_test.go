package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func mustRequest(t *testing.T, s string) *head {
	t.Helper()
	var h head
	require.NoError(t, h.parseRequest([]byte(s)))
	return &h
}

func mustResponse(t *testing.T, s string) *head {
	t.Helper()
	var h head
	require.NoError(t, h.parseResponse([]byte(s)))
	return &h
}

func TestAnalyzeRequest(t *testing.T) {
	cases := []struct {
		head string
		want reqInfo
		bad  bool
	}{
		{"GET http://x/ HTTP/1.1\r\n\r\n", reqInfo{}, false},
		{"GET http://x/ HTTP/1.0\r\n\r\n", reqInfo{close: true}, false},
		{"GET http://x/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", reqInfo{}, false},
		{"GET http://x/ HTTP/1.1\r\nConnection: Close\r\n\r\n", reqInfo{close: true}, false},
		{"POST http://x/ HTTP/1.1\r\nContent-Length: 10\r\n\r\n", reqInfo{body: framing{bodyLength, 10}}, false},
		{"POST http://x/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", reqInfo{}, false},
		{"POST http://x/ HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", reqInfo{body: framing{bodyLength, 7}}, false},
		{"POST http://x/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", reqInfo{body: framing{kind: bodyChunked}}, false},
		{"POST http://x/ HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", reqInfo{body: framing{bodyLength, 1}, expectContinue: true}, false},
		{"GET http://x/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", reqInfo{websocket: true}, false},
		{"GET http://x/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", reqInfo{}, false},
		{"POST http://x/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", reqInfo{}, true},
		{"POST http://x/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", reqInfo{}, true},
		{"POST http://x/ HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", reqInfo{}, true},
		{"POST http://x/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", reqInfo{}, true},
		{"POST http://x/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", reqInfo{}, true},
	}
	for _, c := range cases {
		info, err := analyzeRequest(mustRequest(t, c.head))
		if c.bad {
			assert.ErrorIs(t, err, errBadRequest, c.head)
			continue
		}
		require.NoError(t, err, c.head)
		assert.Equal(t, c.want, info, c.head)
	}
}

func TestAnalyzeResponse(t *testing.T) {
	cases := []struct {
		head    string
		headReq bool
		want    respInfo
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, respInfo{body: framing{bodyLength, 5}}},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, respInfo{}},
		{"HTTP/1.1 204 No Content\r\n\r\n", false, respInfo{}},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, respInfo{}},
		{"HTTP/1.1 100 Continue\r\n\r\n", false, respInfo{}},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false, respInfo{body: framing{kind: bodyChunked}}},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, respInfo{body: framing{kind: bodyClose}, close: true}},
		{"HTTP/1.1 200 OK\r\n\r\n", false, respInfo{body: framing{kind: bodyClose}, close: true}},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, respInfo{body: framing{bodyLength, 0}, close: true}},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, respInfo{body: framing{bodyLength, 0}, close: true}},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, respInfo{body: framing{bodyLength, 0}}},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, respInfo{websocket: true}},
	}
	for _, c := range cases {
		info, err := analyzeResponse(mustResponse(t, c.head), c.headReq)
		require.NoError(t, err, c.head)
		assert.Equal(t, c.want, info, c.head)
	}
	_, err := analyzeResponse(mustResponse(t, "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), false)
	assert.ErrorIs(t, err, errBadResponse)
}

func TestParseAbsoluteURI(t *testing.T) {
	cases := []struct {
		in                      string
		authority, path, target string
		err                     error
	}{
		{"http://example.com/a/b?c=d", "example.com", "/a/b?c=d", "example.com:80", nil},
		{"HTTP://Example.com:8080", "Example.com:8080", "/", "Example.com:8080", nil},
		{"http://example.com?q", "example.com", "/?q", "example.com:80", nil},
		{"http://u:p@example.com/x#frag", "example.com", "/x", "example.com:80", nil},
		{"http://[::1]:81/", "[::1]:81", "/", "[::1]:81", nil},
		{"http://[::1]/", "[::1]", "/", "[::1]:80", nil},
		{"http://127.0.0.1:1/", "127.0.0.1:1", "/", "127.0.0.1:1", nil},
		{"/path", "", "", "", errOriginForm},
		{"*", "", "", "", errOriginForm},
		{"https://example.com/", "", "", "", errHTTPSURI},
		{"ftp://example.com/", "", "", "", errOriginForm},
		{"http:///path", "", "", "", errBadRequest},
		{"http://example.com:0/", "", "", "", errBadRequest},
		{"http://example.com:65536/", "", "", "", errBadRequest},
		{"http://example.com:8x/", "", "", "", errBadRequest},
		{"http://a:1:2/", "", "", "", errBadRequest},
		{"http://[::1/", "", "", "", errBadRequest},
		{"http://[nothost]/", "", "", "", errBadRequest},
		{"http://exa\"mple.com/", "", "", "", errBadRequest},
	}
	for _, c := range cases {
		u, err := parseAbsoluteURI([]byte(c.in), nil)
		if c.err != nil {
			assert.ErrorIs(t, err, c.err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.authority, string(u.authority), c.in)
		assert.Equal(t, c.path, string(u.path), c.in)
		assert.Equal(t, c.target, u.target, c.in)
	}
}

func TestParseAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"example.com:443":    "example.com:443",
		"[2001:db8::1]:8443": "[2001:db8::1]:8443",
		"10.0.0.1:22":        "10.0.0.1:22",
	} {
		got, err := parseAuthority([]byte(in))
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, in := range []string{"example.com", "example.com:", ":443", "http://example.com:443", "a b:1"} {
		_, err := parseAuthority([]byte(in))
		assert.ErrorIs(t, err, errBadRequest, in)
	}
}

func TestAppendRequestHead(t *testing.T) {
	h := mustRequest(t, "OPTIONS http://example.com HTTP/1.1\r\nHost: other\r\nX-A: 1\r\n\r\n")
	info, err := analyzeRequest(h)
	require.NoError(t, err)
	u, err := parseAbsoluteURI(h.target, nil)
	require.NoError(t, err)
	assert.Equal(t, "OPTIONS * HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n",
		string(appendRequestHead(nil, h, &u, &info, false, "")))
	assert.Equal(t, "OPTIONS http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\nProxy-Authorization: Basic eA==\r\n\r\n",
		string(appendRequestHead(nil, h, &u, &info, true, "Basic eA==")))

	h = mustRequest(t, "GET http://example.com/ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n")
	info, err = analyzeRequest(h)
	require.NoError(t, err)
	u, err = parseAbsoluteURI(h.target, nil)
	require.NoError(t, err)
	assert.Equal(t, "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: Upgrade\r\n\r\n",
		string(appendRequestHead(nil, h, &u, &info, false, "")))
}

func TestAppendResponseHead(t *testing.T) {
	h := mustResponse(t, "HTTP/1.0 200 Fine\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: x-gone\r\nX-Gone: 1\r\nX-Kept: 2\r\n\r\n")
	assert.Equal(t, "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nX-Kept: 2\r\nConnection: close\r\n\r\n",
		string(appendResponseHead(nil, h, false, true)))
}

func TestReplyFor(t *testing.T) {
	refused := &dial.Error{Upstream: "direct", Target: "example.com:443", Attempt: 1,
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	cases := []struct {
		err         error
		status      int
		hopperError string
		body        string
		result      string
	}{
		{errHeadTooLarge, 400, "", "hopper: bad request: head too large\n", "bad-request"},
		{errOriginForm, 400, "", "this is a proxy", "bad-request"},
		{fmt.Errorf("%w: wrong", dial.ErrAuth), 407, "", "proxy authentication required", "auth-failed"},
		{fmt.Errorf("x: %w", dial.ErrDenied), 403, "", "hopper: access to example.com:443 is denied by policy\n", "denied"},
		{fmt.Errorf("x: %w", dial.ErrNoUpstream), 503, "no-upstream", "no upstream available for example.com:443", "no-upstream"},
		{context.DeadlineExceeded, 504, "timeout", "hopper: timed out reaching example.com:443\n", "timeout"},
		{refused, 502, "upstream-failed", "hopper: could not reach example.com:443: connection refused\n", "refused"},
		{fmt.Errorf("%w: %w", errNoResponse, errors.New("EOF")), 502, "upstream-failed", "hopper: no response from example.com:443: EOF\n", "upstream-failed"},
		{fmt.Errorf("%w: proxy answered 407", dial.ErrUpstream), 502, "upstream-failed",
			"hopper: could not reach example.com:443: upstream failed: proxy answered 407\n", "upstream-failed"},
	}
	for _, c := range cases {
		r := replyFor(c.err, "example.com:443")
		assert.Equal(t, c.status, r.status, "%v", c.err)
		assert.Equal(t, c.hopperError, r.hopperError, "%v", c.err)
		assert.Contains(t, r.body, c.body, "%v", c.err)
		assert.True(t, strings.HasSuffix(r.body, "\n") && strings.Count(r.body, "\n") == 1, "one line: %q", r.body)
		assert.Equal(t, c.result, r.result, "%v", c.err)
	}
	r := replyFor(fmt.Errorf("%w", dial.ErrAuth), "")
	got := string(appendReply(nil, r, true))
	assert.Equal(t, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: "+strconv.Itoa(len(r.body))+"\r\nConnection: close\r\nProxy-Authenticate: Basic realm=\"hopper\"\r\n\r\n", got,
		"a reply to HEAD has no body")
}
