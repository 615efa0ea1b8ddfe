package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

// startBare runs a Server without startProxy's cleanup, for tests that stop
// it themselves.
func startBare(t *testing.T, cfg Config) (*Server, string, <-chan error) {
	t.Helper()
	s := newServer(t, cfg)
	ln := testnet.Listen(t, "")
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln) }()
	return s, ln.Addr().String(), errc
}

func TestShutdownGraceful(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	s, addr, errc := startBare(t, Config{})
	live := connectVia(t, "", addr, origin.Addr())
	// A kept-alive client connection idle between requests is closed by
	// Shutdown at once.
	o := startOrigin(t)
	idle := testnet.Dial(t, addr)
	r := sendHead(t, idle, "GET %s/hello HTTP/1.1\r\n\r\n", o.URL)
	require.Equal(t, 200, r.status)
	_, err := io.CopyN(io.Discard, idle, 17)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	require.NoError(t, <-errc, "Serve returns nil after Shutdown")
	_ = idle.SetDeadline(time.Now().Add(testTimeout))
	_, err = io.ReadAll(idle)
	assert.NoError(t, err, "idle connection closed")
	_, err = net.Dial("tcp", addr)
	assert.Error(t, err, "listener closed")

	// The live tunnel keeps working until its client ends it.
	testnet.EchoRoundTrip(t, live, "during shutdown")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a live tunnel", err)
	default:
	}
	require.NoError(t, live.Close())
	require.NoError(t, <-done)
}

func TestShutdownForced(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	// A dial in progress is cancelled too.
	dialing := make(chan struct{})
	dialer := dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		if req.Target == "blocked.example:1" {
			close(dialing)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return (&dial.Direct{}).Dial(ctx, req)
	})
	s, addr, errc := startBare(t, Config{Dialer: dialer, ConnectTimeout: time.Minute})
	live := connectVia(t, "", addr, origin.Addr())
	testnet.EchoRoundTrip(t, live, "before")
	blocked := testnet.Dial(t, addr)
	_, err := io.WriteString(blocked, "CONNECT blocked.example:1 HTTP/1.1\r\n\r\n")
	require.NoError(t, err)
	<-dialing

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	require.NoError(t, <-errc)

	// Both client connections were closed.
	_, err = io.ReadAll(live)
	if err != nil {
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	}
	_ = blocked.SetDeadline(time.Now().Add(testTimeout))
	_, err = io.ReadAll(blocked)
	if err != nil {
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	s := newServer(t, Config{})
	ln := testnet.Listen(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	live := connectVia(t, "", ln.Addr().String(), origin.Addr())
	cancel()
	require.NoError(t, <-errc)
	// Serve returned only after the live tunnel was closed.
	_ = live.SetDeadline(time.Now().Add(testTimeout))
	_, err := io.ReadAll(live)
	if err != nil {
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	}
	// Serving after Shutdown returns at once.
	ln2 := testnet.Listen(t, "")
	assert.NoError(t, s.Serve(context.Background(), ln2))
	_, err = net.Dial("tcp", ln2.Addr().String())
	assert.Error(t, err, "listener closed by Serve")
}

func TestServeReturnsWhenListenerCloses(t *testing.T) {
	s := newServer(t, Config{})
	ln := testnet.Listen(t, "")
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln) }()
	require.NoError(t, ln.Close())
	require.NoError(t, <-errc)
	require.NoError(t, s.Shutdown(context.Background()))
}

// flakyListener fails Accept with a temporary error a few times, then hands
// out real connections, then reports a hard error.
type flakyListener struct {
	net.Listener
	temporary atomic.Int64
	calls     atomic.Int64
}

type tempErr struct{}

func TestAcceptBackoff(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	s := newServer(t, Config{})
	inner := testnet.Listen(t, "")
	ln := &flakyListener{Listener: inner}
	ln.temporary.Store(3)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln) }()

	c := connectVia(t, "", inner.Addr().String(), origin.Addr())
	testnet.EchoRoundTrip(t, c, "after backoff")
	assert.GreaterOrEqual(t, ln.calls.Load(), int64(4))
	require.NoError(t, c.Close())
	require.NoError(t, s.Shutdown(context.Background()))
	require.NoError(t, <-errc)

	// A non-temporary error ends Serve with that error.
	s2 := newServer(t, Config{})
	err := s2.Serve(context.Background(), brokenListener{})
	assert.ErrorIs(t, err, errHard)
	require.NoError(t, s2.Shutdown(context.Background()))
}

type brokenListener struct{}

// Many short connections leave no goroutine behind (goleak checks at exit)
// and the server's connection table empties.
func TestConnectionsAreReleased(t *testing.T) {
	origin := serveTCP(t, testnet.Echo)
	p := startProxy(t, Config{})
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !connects("", p.addr, origin.Addr()) {
				t.Error("no tunnel")
			}
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool { return p.openConns() == 0 }, testTimeout, 5*time.Millisecond)
}

func (tempErr) Error() string   { return "accept: too many open files" }
func (tempErr) Temporary() bool { return true }
func (tempErr) Timeout() bool   { return false }

var errHard = errors.New("listener broke")

func (l *flakyListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.temporary.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: tempErr{}}
	}
	return l.Listener.Accept()
}

func (brokenListener) Accept() (net.Conn, error) { return nil, errHard }
func (brokenListener) Close() error              { return nil }
func (brokenListener) Addr() net.Addr            { return &net.TCPAddr{} }
