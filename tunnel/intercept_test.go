package tunnel

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

func TestInterceptorTakesConnectTunnels(t *testing.T) {
	ic := &dialtest.LineInterceptor{}
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{Interceptor: ic})

	// In scope: 200 without a dial, then the raw connection, with the
	// bytes sent along with the CONNECT head, goes to the interceptor.
	c := dialProxy(t, p)
	r := sendHead(t, c, "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\nProxy-Authorization: Basic "+
		"dXNlci1zZXNzaW9uLWFiYzp4\r\n\r\nhel")
	require.Equal(t, 200, r.status)
	_, err := io.WriteString(c, "lo\n")
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "intercepted: hello\n", string(got))
	assert.Zero(t, origin.count(), "nothing dialed for an intercepted tunnel")

	req := ic.Only(t) // served on the raw connection
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
	testnet.EchoRoundTrip(t, connect(t, p, origin.Addr()), "ping")
	assert.Equal(t, 1, origin.count())
}
