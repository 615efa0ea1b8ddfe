package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A Server serves each connection, closes it when the handler returns,
// and at Close closes what is still open, dialed connections included.
func TestServerServesTracksAndCloses(t *testing.T) {
	held := make(chan net.Conn, 1)
	s := NewServer(t, Listen(t, "127.0.0.2"))
	s.Serve(func(c net.Conn) {
		line := make([]byte, 4)
		if _, err := io.ReadFull(c, line); err != nil {
			return
		}
		if string(line) == "hold" {
			a, b := net.Pipe()
			assert.True(t, s.Track(a))
			held <- b
			_, _ = io.Copy(io.Discard, c) // until Close closes c
			return
		}
		_, _ = c.Write(line) // then the handler returns: c is closed
	})
	host, _, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.2", host)

	c, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("echo"))
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err, "closed, not reset, once the handler returned")
	assert.Equal(t, "echo", string(got))

	h, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer h.Close()
	_, err = h.Write([]byte("hold"))
	require.NoError(t, err)
	var dialed net.Conn
	select {
	case dialed = <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run")
	}
	s.Close()
	require.NoError(t, h.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = h.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "Close closed the served connection")
	_, err = dialed.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "and the tracked one")
	a, _ := net.Pipe()
	assert.False(t, s.Track(a), "nothing is tracked after Close")
	_, err = a.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "and what it refused is closed")
	_, err = net.Dial("tcp", s.Addr())
	assert.Error(t, err, "the listener is closed")
	s.Close() // again: nothing happens
}

func TestListenDefaultsToLoopback(t *testing.T) {
	ln := Listen(t, "")
	host, _, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
}

// failTB records what a helper reports instead of failing the test.
type failTB struct {
	testing.TB
	errs []string
}

func (f *failTB) Helper()        {}
func (f *failTB) Cleanup(func()) {}
func (f *failTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *failTB) Fatalf(format string, args ...any) { f.Errorf(format, args...) }

func TestGoStopsAndReportsTheResult(t *testing.T) {
	cancelled := false
	stop := Go(t, "loop", func(ctx context.Context) error {
		<-ctx.Done()
		cancelled = true
		return nil
	})
	stop()
	assert.True(t, cancelled, "stop waited for run to see its cancellation")
	stop() // again: nothing happens

	rec := &failTB{TB: t}
	Go(rec, "loop", func(context.Context) error { return errors.New("boom") })()
	require.Len(t, rec.errs, 1)
	assert.Contains(t, rec.errs[0], "loop returned boom")
}

// Each end reaches the other, half-close included.
func TestTCPPairIsConnected(t *testing.T) {
	a, b := TCPPair(t)
	for _, dir := range []struct {
		from, to *net.TCPConn
		msg      string
	}{{a, b, "ping"}, {b, a, "pong"}} {
		_, err := dir.from.Write([]byte(dir.msg))
		require.NoError(t, err)
		require.NoError(t, dir.from.CloseWrite())
		got, err := io.ReadAll(dir.to)
		require.NoError(t, err, dir.msg)
		assert.Equal(t, dir.msg, string(got))
	}
}
