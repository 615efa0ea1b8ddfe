package rotate

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestReplayConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := testnet.TCPPair(t)
		c1 = &replayConn{Conn: a}
		return c1, b, func() { _ = c1.Close(); _ = b.Close() }, nil
	})
}

func TestReplayConnReplaysFirst(t *testing.T) {
	a, b := testnet.TCPPair(t)
	defer b.Close()
	c := newReplayConn(a, []byte("early"))
	defer c.Close()
	_, err := b.Write([]byte("-later"))
	require.NoError(t, err)
	require.NoError(t, b.CloseWrite())

	small := make([]byte, 3)
	n, err := c.Read(small)
	require.NoError(t, err)
	assert.Equal(t, "ear", string(small[:n]))
	var rest bytes.Buffer
	_, err = io.Copy(&rest, c) // WriteTo: the remaining pending bytes, then the socket
	require.NoError(t, err)
	assert.Equal(t, "ly-later", rest.String())

	assert.Same(t, a, newReplayConn(a, nil), "nothing pending: the raw connection")
	require.NoError(t, c.(*replayConn).CloseWrite())
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	assert.Empty(t, got, "half-close reached the peer")
}
