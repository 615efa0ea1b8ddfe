package rotate

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c2 := <-accepted
	require.NotNil(t, c2)
	return c1, c2
}

func TestReplayConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := tcpPair(t)
		c1 = &replayConn{Conn: a}
		return c1, b, func() { _ = c1.Close(); _ = b.Close() }, nil
	})
}

func TestReplayConnReplaysFirst(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close()
	c := newReplayConn(a, []byte("early"))
	defer c.Close()
	_, err := b.Write([]byte("-later"))
	require.NoError(t, err)
	require.NoError(t, b.(*net.TCPConn).CloseWrite())

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
