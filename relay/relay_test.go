package relay

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestPipeHalfClose(t *testing.T) {
	for _, first := range []string{"client", "server"} {
		t.Run(first+" closes first", func(t *testing.T) {
			r := startTCP(t, time.Minute)
			closer, other := r.client, r.server
			if first == "server" {
				closer, other = r.server, r.client
			}
			_, err := closer.Write([]byte("request"))
			require.NoError(t, err)
			closeWrite(closer)
			// The other side sees EOF after the request and still answers
			// over the half-open tunnel.
			req, err := io.ReadAll(other)
			require.NoError(t, err)
			assert.Equal(t, "request", string(req))
			assert.True(t, r.running(), "one half-close ended the tunnel")
			_, err = other.Write([]byte("response after half-close"))
			require.NoError(t, err)
			closeWrite(other)
			resp, err := io.ReadAll(closer)
			require.NoError(t, err)
			assert.Equal(t, "response after half-close", string(resp))

			res := r.wait(t)
			require.NoError(t, res.err)
			assert.False(t, res.res.Idle)
			want := Result{Up: 7, Down: 25}
			if first == "server" {
				want = Result{Up: 25, Down: 7}
			}
			assert.Equal(t, want, res.res)
		})
	}
}

func TestPipeBulkBothWays(t *testing.T) {
	bulkBothWays(t, startTCP(t, time.Minute), 64<<20)
}

func TestPipeMixedSizes(t *testing.T) {
	// Messages below, at and above the buffer size cross the switch
	// between read/write and splice, in order and complete.
	r := startTCP(t, time.Minute)
	var sent bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r.server)
		got <- b
	}()
	for i, size := range []int{1, 100, bufSize - 1, bufSize, bufSize + 1, 3 * bufSize, 1 << 20, 7} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, size)
		sent.Write(msg)
		_, err := r.client.Write(msg)
		require.NoError(t, err)
	}
	closeWrite(r.client)
	assert.Equal(t, sent.Bytes(), <-got)
	closeWrite(r.server)
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, int64(sent.Len()), res.res.Up)
}

func TestPipeEarlyBytes(t *testing.T) {
	// Bytes already queued on both sockets before Pipe starts are relayed.
	client, in := testnet.TCPPair(t)
	out, server := testnet.TCPPair(t)
	_, err := client.Write([]byte("early up"))
	require.NoError(t, err)
	_, err = server.Write([]byte("early down"))
	require.NoError(t, err)
	require.NoError(t, client.CloseWrite())
	require.NoError(t, server.CloseWrite())
	time.Sleep(10 * time.Millisecond) // let them land in the inner sockets
	r := startPipe(t, client, in, out, server, time.Minute)
	up, err := io.ReadAll(server)
	require.NoError(t, err)
	down, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "early up", string(up))
	assert.Equal(t, "early down", string(down))
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Up: 8, Down: 10}, res.res)
}

func TestPipeIdleTimeoutEndsDeadTunnel(t *testing.T) {
	r := startTCP(t, 100*time.Millisecond)
	_, err := r.client.Write([]byte("ping"))
	require.NoError(t, err)
	_, err = io.ReadFull(r.server, make([]byte, 4))
	require.NoError(t, err)
	// Silence from here on ends the tunnel.
	res := r.wait(t)
	assert.True(t, res.res.Idle)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Up: 4, Idle: true}, res.res)
	// Neither direction relays any more.
	_, _ = r.server.Write([]byte("late"))
	require.NoError(t, r.client.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	n, err := r.client.Read(make([]byte, 4))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestPipeIdleTimeoutWithWriteTo(t *testing.T) {
	// A direction whose bytes are seen only per window still lets a dead
	// tunnel end.
	client, in := testnet.TCPPair(t)
	out, server := testnet.TCPPair(t)
	r := startPipe(t, client, in, &writeToConn{TCPConn: out, pending: []byte("hi")}, server, 100*time.Millisecond)
	_, err := io.ReadFull(client, make([]byte, 2))
	require.NoError(t, err)
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Down: 2, Idle: true}, res.res)
}

// oneWayStream sends a small message every idle/8 from w for three idle
// timeouts, reading them at rd, and checks that the tunnel is still up,
// then that silence ends it.
func oneWayStream(t *testing.T, r *relayed, w, rd net.Conn, idle time.Duration) int64 {
	t.Helper()
	go func() { _, _ = io.Copy(io.Discard, rd) }()
	var sent int64
	for end := time.Now().Add(3 * idle); time.Now().Before(end); {
		n, err := w.Write([]byte("tick"))
		require.NoError(t, err)
		sent += int64(n)
		time.Sleep(idle / 8)
	}
	assert.True(t, r.running(), "a one-way stream was taken for an idle tunnel")
	res := r.wait(t)
	assert.True(t, res.res.Idle)
	require.NoError(t, res.err)
	return sent
}

func TestPipeIdleTimeoutSparesOneWayStream(t *testing.T) {
	const idle = 400 * time.Millisecond
	t.Run("up", func(t *testing.T) {
		r := startTCP(t, idle)
		sent := oneWayStream(t, r, r.client, r.server, idle)
		assert.Equal(t, sent, r.wait(t).res.Up)
	})
	t.Run("down", func(t *testing.T) {
		r := startTCP(t, idle)
		sent := oneWayStream(t, r, r.server, r.client, idle)
		assert.Equal(t, sent, r.wait(t).res.Down)
	})
	t.Run("down through WriteTo", func(t *testing.T) {
		// The server side's bytes are seen only per window here.
		client, in := testnet.TCPPair(t)
		out, server := testnet.TCPPair(t)
		r := startPipe(t, client, in, &writeToConn{TCPConn: out}, server, idle)
		sent := oneWayStream(t, r, server, client, idle)
		assert.Equal(t, sent, r.wait(t).res.Down)
	})
}

func TestPipeStopsOnReset(t *testing.T) {
	r := startTCP(t, 0)
	_, err := r.client.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(r.server, make([]byte, 1))
	require.NoError(t, err)
	// A reset from the server ends both directions, though the client is
	// silent and never closes and there is no idle timeout.
	require.NoError(t, r.server.(*net.TCPConn).SetLinger(0))
	require.NoError(t, r.server.Close())
	res := r.wait(t)
	assert.Equal(t, int64(1), res.res.Up)
	assert.False(t, res.res.Idle)
}

func TestPipeReportsReset(t *testing.T) {
	// The server resets while the client keeps sending: Pipe ends with
	// the failure, as a *net.OpError like package net's own.
	r := startTCP(t, 0)
	require.NoError(t, r.server.(*net.TCPConn).SetLinger(0))
	require.NoError(t, r.server.Close())
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		chunk := make([]byte, 64<<10)
		for {
			if _, err := r.client.Write(chunk); err != nil {
				return
			}
		}
	}()
	res := r.wait(t)
	_ = r.client.Close() // the relay no longer reads: unblock the writer
	<-writing
	require.Error(t, res.err)
	var opErr *net.OpError
	assert.True(t, errors.As(res.err, &opErr), "%v is not a *net.OpError", res.err)
}

func TestPipeNonTCP(t *testing.T) {
	// One side a net.Pipe: the buffered path one way, a raw TCP source
	// into a non-TCP destination the other.
	client, in := net.Pipe()
	out, server := testnet.TCPPair(t)
	r := startPipe(t, client, in, out, server, time.Minute)
	const size = 4 << 20
	upc := make(chan *stream, 1)
	go func() { upc <- transferEOF(client, server, size, 3, false) }()
	down := transferEOF(server, client, size, 4, false)
	up := <-upc
	for name, s := range map[string]*stream{"up": up, "down": down} {
		require.NoError(t, s.err, name)
		assert.Equal(t, s.sentSum, s.gotSum, name+" sha256")
		assert.Equal(t, int64(size), s.got, name)
	}
	// net.Pipe has no half-close: closing the client ends the up
	// direction, which half-closes the server's side; the server's close
	// ends the other.
	require.NoError(t, client.Close())
	_, err := io.ReadAll(server)
	require.NoError(t, err)
	require.NoError(t, server.CloseWrite())
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Up: size, Down: size}, res.res)
}

func TestPipeTLS(t *testing.T) {
	// TLS on the client side, as an intercepted tunnel has.
	cert := selfSigned(t)
	rawClient, rawIn := testnet.TCPPair(t)
	out, server := testnet.TCPPair(t)
	tlsIn := tls.Server(rawIn, &tls.Config{Certificates: []tls.Certificate{cert}})
	tlsClient := tls.Client(rawClient, &tls.Config{InsecureSkipVerify: true})
	r := startPipe(t, tlsClient, tlsIn, out, server, time.Minute)
	const size = 4 << 20
	upc := make(chan *stream, 1)
	go func() { upc <- transfer(tlsClient, server, size, 5) }()
	down := transfer(server, tlsClient, size, 6)
	up := <-upc
	for name, s := range map[string]*stream{"up": up, "down": down} {
		require.NoError(t, s.err, name)
		assert.Equal(t, s.sentSum, s.gotSum, name+" sha256")
		assert.Equal(t, int64(size), s.got, name)
	}
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Up: size, Down: size}, res.res)
}

func TestPipeWriteTo(t *testing.T) {
	// Bytes a handshake read ahead come first, then the socket's.
	client, in := testnet.TCPPair(t)
	out, server := testnet.TCPPair(t)
	r := startPipe(t, client, in, &writeToConn{TCPConn: out, pending: []byte("read ahead|")}, server, time.Minute)
	_, err := server.Write([]byte("from the socket"))
	require.NoError(t, err)
	require.NoError(t, server.CloseWrite())
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "read ahead|from the socket", string(got))
	require.NoError(t, client.CloseWrite())
	res := r.wait(t)
	require.NoError(t, res.err)
	assert.Equal(t, Result{Down: int64(len(got))}, res.res)
}

func TestStart(t *testing.T) {
	// Start relays as Pipe does and reports through done, once, after both
	// directions ended; goleak (TestMain) sees its goroutines gone.
	start := func(t *testing.T, idle time.Duration) *relayed {
		client, in := testnet.TCPPair(t)
		out, server := testnet.TCPPair(t)
		return startAsync(t, client, in, out, server, idle)
	}
	t.Run("half-close", func(t *testing.T) {
		r := start(t, time.Minute)
		_, err := r.client.Write([]byte("request"))
		require.NoError(t, err)
		closeWrite(r.client)
		req, err := io.ReadAll(r.server)
		require.NoError(t, err)
		assert.Equal(t, "request", string(req))
		assert.True(t, r.running(), "one half-close ended the tunnel")
		_, err = r.server.Write([]byte("response after half-close"))
		require.NoError(t, err)
		closeWrite(r.server)
		resp, err := io.ReadAll(r.client)
		require.NoError(t, err)
		assert.Equal(t, "response after half-close", string(resp))
		res := r.wait(t)
		require.NoError(t, res.err)
		assert.Equal(t, Result{Up: 7, Down: 25}, res.res)
	})
	t.Run("bulk both ways", func(t *testing.T) {
		bulkBothWays(t, start(t, time.Minute), 8<<20)
	})
	t.Run("idle", func(t *testing.T) {
		r := start(t, 100*time.Millisecond)
		_, err := r.client.Write([]byte("ping"))
		require.NoError(t, err)
		_, err = io.ReadFull(r.server, make([]byte, 4))
		require.NoError(t, err)
		res := r.wait(t)
		require.NoError(t, res.err)
		assert.Equal(t, Result{Up: 4, Idle: true}, res.res)
	})
	t.Run("closed by the caller", func(t *testing.T) {
		// Closing the relay's own ends, as a listener's forced shutdown
		// does, ends the tunnel with nothing left running.
		r := start(t, 0)
		_, err := r.client.Write([]byte("x"))
		require.NoError(t, err)
		_, err = io.ReadFull(r.server, make([]byte, 1))
		require.NoError(t, err)
		_ = r.in.Close()
		_ = r.out.Close()
		res := r.wait(t)
		assert.Equal(t, int64(1), res.res.Up)
		assert.False(t, res.res.Idle)
	})
}
