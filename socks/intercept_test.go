package socks

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/internal/testnet/dialtest"
)

func TestInterceptorTakesSOCKSStreams(t *testing.T) {
	ic := &dialtest.LineInterceptor{}
	rec := &dialtest.Recorder{Next: &dial.Direct{}}
	p := startProxy(t, Config{Dialer: rec, Interceptor: ic})

	c := testnet.Dial(t, p.addr)
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
	assert.Empty(t, rec.Requests(), "nothing dialed")

	req := ic.Only(t) // served on the raw connection
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
	echoAddr := startEcho(t, "127.0.0.1")
	c2 := testnet.Dial(t, p.addr)
	require.Equal(t, byte(0x00), connect5(t, c2, echoAddr))
	testnet.EchoRoundTrip(t, c2, "ping")
	assert.Len(t, rec.Requests(), 1)
}
