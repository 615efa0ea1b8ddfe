package socks

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

// stubInterceptor takes targets on port 443 and answers the client's first
// line with "intercepted: LINE" on the raw connection.
type stubInterceptor struct {
	mu   sync.Mutex
	reqs []dial.Request
	raw  []bool
}

func (f *stubInterceptor) Intercept(req *dial.Request) bool {
	return strings.HasSuffix(req.Target, ":443")
}

func (f *stubInterceptor) ServeIntercepted(_ context.Context, conn net.Conn, early []byte, req *dial.Request) (int64, int64, error) {
	_, raw := conn.(*net.TCPConn)
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.raw = append(f.raw, raw)
	f.mu.Unlock()
	buf := make([]byte, 64)
	n := copy(buf, early)
	for !strings.Contains(string(buf[:n]), "\n") {
		m, err := conn.Read(buf[n:])
		if err != nil {
			return int64(n), 0, err
		}
		n += m
	}
	w, err := fmt.Fprintf(conn, "intercepted: %s", buf[:n])
	return int64(n), int64(w), err
}

func TestInterceptorTakesSOCKSStreams(t *testing.T) {
	ic := &stubInterceptor{}
	rec := &recorder{next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec, Interceptor: ic})

	c := dialProxy(t, p.addr)
	require.Equal(t, byte(0x02), greet(t, c, 0x00, 0x02))
	require.Equal(t, byte(0x00), userPass(t, c, "acct-session-s9", "x"))
	_, err := c.Write(request5(t, 0x01, "shop.example:443"))
	require.NoError(t, err)
	require.Equal(t, byte(0x00), readReply5(t, c), "success without a dial")
	_, err = io.WriteString(c, "hello\n")
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "intercepted: hello\n", string(got))
	assert.Empty(t, rec.requests(), "nothing dialed")

	ic.mu.Lock()
	require.Len(t, ic.reqs, 1)
	req, raw := ic.reqs[0], ic.raw[0]
	ic.mu.Unlock()
	assert.True(t, raw, "the raw connection")
	assert.Equal(t, "shop.example:443", req.Target)
	assert.Equal(t, dial.ProtocolSOCKS5, req.Protocol)
	assert.Equal(t, "acct", req.User)
	assert.Equal(t, "s9", req.Session)

	lines := p.tunnelLogs(t, 1)
	require.Len(t, lines, 1)
	f := lines[0].ContextMap()
	assert.Equal(t, "ok", f["result"])
	assert.EqualValues(t, len("intercepted: hello\n"), f["down"])

	// Out of scope: dialed and spliced as usual.
	echoAddr := startEcho(t, "127.0.0.1:0")
	c2 := dialProxy(t, p.addr)
	require.Equal(t, byte(0x00), connect5(t, c2, echoAddr))
	_, err = io.WriteString(c2, "ping")
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c2, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	assert.Len(t, rec.requests(), 1)
}
