package tunnel

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

// fakeInterceptor takes targets on port 443 and answers the client's first
// line with "intercepted: LINE" on the raw connection.
type fakeInterceptor struct {
	mu   sync.Mutex
	reqs []dial.Request
	conn []net.Conn
}

func (f *fakeInterceptor) Intercept(req *dial.Request) bool {
	return strings.HasSuffix(req.Target, ":443")
}

func (f *fakeInterceptor) ServeIntercepted(_ context.Context, conn net.Conn, early []byte, req *dial.Request) (int64, int64, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.conn = append(f.conn, conn)
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

func TestInterceptorTakesConnectTunnels(t *testing.T) {
	ic := &fakeInterceptor{}
	origin := serveTCP(t, "127.0.0.1:0", echo)
	p := startProxy(t, Config{Interceptor: ic})

	// In scope: 200 without a dial, then the raw connection, with the
	// bytes sent along with the CONNECT head, goes to the interceptor.
	c := dialProxy(t, p)
	_, err := io.WriteString(c, "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\nProxy-Authorization: Basic "+
		"dXNlci1zZXNzaW9uLWFiYzp4\r\n\r\nhel")
	require.NoError(t, err)
	r, err := readResponseHead(c)
	require.NoError(t, err)
	require.Equal(t, 200, r.status)
	_, err = io.WriteString(c, "lo\n")
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "intercepted: hello\n", string(got))
	assert.Zero(t, origin.count(), "nothing dialed for an intercepted tunnel")

	ic.mu.Lock()
	require.Len(t, ic.reqs, 1)
	req := ic.reqs[0]
	_, raw := ic.conn[0].(*net.TCPConn)
	ic.mu.Unlock()
	assert.True(t, raw, "the raw connection, not a wrapper")
	assert.Equal(t, "shop.example:443", req.Target)
	assert.Equal(t, dial.ProtocolHTTPConnect, req.Protocol)
	assert.Equal(t, "user", req.User)
	assert.Equal(t, "abc", req.Session)
	assert.NotZero(t, req.ConnID)

	lines := p.waitAccessLines(t, 1)
	f := fieldsOf(lines[0])
	assert.Equal(t, "mitm", f["upstream"])
	assert.Equal(t, "ok", f["result"])
	assert.EqualValues(t, len("intercepted: hello\n"), f["down"])

	// Out of scope: spliced as usual.
	c2 := connect(t, p, origin.addr())
	_, err = io.WriteString(c2, "ping")
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c2, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	assert.Equal(t, 1, origin.count())
}
