package tunnel

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/relay"
)

// Tests for relay.Pipe, the copy loop every tunnel here runs on.

type pipeResult struct {
	res relay.Result
	err error
}

// startPipe relays between the inner ends of two TCP pairs and returns the
// outer ends: client talks to server through the relay.
func startPipe(t *testing.T, idle time.Duration) (client, server *net.TCPConn, done <-chan pipeResult) {
	t.Helper()
	client, in := testnet.TCPPair(t)
	out, server := testnet.TCPPair(t)
	// The test's ends are bounded; the relay sets its own deadlines.
	for _, c := range []*net.TCPConn{client, server} {
		require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	}
	ch := make(chan pipeResult, 1)
	go func() {
		res, err := relay.Pipe(in, out, idle)
		ch <- pipeResult{res, err}
	}()
	return client, server, ch
}

func waitPipe(t *testing.T, done <-chan pipeResult) pipeResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(testTimeout):
		t.Fatal("relay.Pipe did not return")
		return pipeResult{}
	}
}

func TestRelayPipeCountsBytes(t *testing.T) {
	client, server, done := startPipe(t, 0)
	up := bytes.Repeat([]byte("u"), 100_000)
	down := bytes.Repeat([]byte("d"), 300_000)
	go func() {
		_, _ = client.Write(up)
		_ = client.CloseWrite()
	}()
	go func() {
		_, _ = server.Write(down)
		_ = server.CloseWrite()
	}()
	gotUp, err := io.ReadAll(server)
	require.NoError(t, err)
	gotDown, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, up, gotUp)
	assert.Equal(t, down, gotDown)
	r := waitPipe(t, done)
	require.NoError(t, r.err)
	assert.Equal(t, relay.Result{Up: int64(len(up)), Down: int64(len(down))}, r.res)
}

func TestRelayPipeHalfClose(t *testing.T) {
	client, server, done := startPipe(t, 0)
	_, err := client.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, client.CloseWrite())
	// The server sees EOF after the request and still answers.
	req, err := io.ReadAll(server)
	require.NoError(t, err)
	assert.Equal(t, "request", string(req))
	_, err = server.Write([]byte("response after half-close"))
	require.NoError(t, err)
	require.NoError(t, server.CloseWrite())
	resp, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "response after half-close", string(resp))
	r := waitPipe(t, done)
	require.NoError(t, r.err)
	assert.False(t, r.res.Idle)
	assert.Equal(t, int64(7), r.res.Up)
	assert.Equal(t, int64(25), r.res.Down)
}

func TestRelayPipeIdleTimeout(t *testing.T) {
	client, server, done := startPipe(t, 100*time.Millisecond)
	// Traffic first, then silence: the silence ends the tunnel.
	_, err := client.Write([]byte("ping"))
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = io.ReadFull(server, got)
	require.NoError(t, err)
	r := waitPipe(t, done)
	assert.True(t, r.res.Idle)
	assert.NoError(t, r.err)
	assert.Equal(t, int64(4), r.res.Up)
	// Both directions stopped relaying: nothing written now arrives.
	_, _ = server.Write([]byte("late"))
	_ = client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, _ := client.Read(make([]byte, 4))
	assert.Zero(t, n)
}

func TestRelayPipeEndsOnReset(t *testing.T) {
	client, server, done := startPipe(t, 0)
	_, err := client.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(server, make([]byte, 1))
	require.NoError(t, err)
	// A reset from the server ends both directions, though the client is
	// silent and never closes.
	require.NoError(t, server.SetLinger(0))
	require.NoError(t, server.Close())
	r := waitPipe(t, done)
	assert.Equal(t, int64(1), r.res.Up)
	_ = r.err // a reset may or may not surface as an error, depending on timing
}
