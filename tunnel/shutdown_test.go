package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"
)

// startBare runs a Server without startProxy's cleanup, for tests that stop
// it themselves.
func startBare(t *testing.T, cfg Config) (*Server, string, <-chan error) {
	t.Helper()
	if cfg.Dialer == nil {
		cfg.Dialer = &dial.Direct{}
	}
	cfg.Logger = zaptest.NewLogger(t)
	s, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln) }()
	return s, ln.Addr().String(), errc
}

func connectAddr(t *testing.T, addr, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	_, err = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", target)
	require.NoError(t, err)
	r, err := readResponseHead(c)
	require.NoError(t, err)
	require.Equal(t, 200, r.status)
	return c
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_, err := io.WriteString(c, msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

func TestShutdownGraceful(t *testing.T) {
	origin := serveTCP(t, "127.0.0.1:0", echo)
	s, addr, errc := startBare(t, Config{})
	live := connectAddr(t, addr, origin.addr())
	// A kept-alive client connection idle between requests is closed by
	// Shutdown at once.
	o := startOrigin(t)
	idle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer idle.Close()
	_, err = fmt.Fprintf(idle, "GET %s/hello HTTP/1.1\r\n\r\n", o.URL)
	require.NoError(t, err)
	r, err := readResponseHead(idle)
	require.NoError(t, err)
	require.Equal(t, 200, r.status)
	_, err = io.CopyN(io.Discard, idle, 17)
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
	echoOnce(t, live, "during shutdown")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a live tunnel", err)
	default:
	}
	require.NoError(t, live.Close())
	require.NoError(t, <-done)
}

func TestShutdownForced(t *testing.T) {
	origin := serveTCP(t, "127.0.0.1:0", echo)
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
	live := connectAddr(t, addr, origin.addr())
	echoOnce(t, live, "before")
	blocked, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer blocked.Close()
	_, err = io.WriteString(blocked, "CONNECT blocked.example:1 HTTP/1.1\r\n\r\n")
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
	origin := serveTCP(t, "127.0.0.1:0", echo)
	s, err := New(Config{Dialer: &dial.Direct{}, Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	live := connectAddr(t, ln.Addr().String(), origin.addr())
	cancel()
	require.NoError(t, <-errc)
	// Serve returned only after the live tunnel was closed.
	_ = live.SetDeadline(time.Now().Add(testTimeout))
	_, err = io.ReadAll(live)
	if err != nil {
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	}
	// Serving after Shutdown returns at once.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.NoError(t, s.Serve(context.Background(), ln2))
	_, err = net.Dial("tcp", ln2.Addr().String())
	assert.Error(t, err, "listener closed by Serve")
}

func TestServeReturnsWhenListenerCloses(t *testing.T) {
	s, err := New(Config{Dialer: &dial.Direct{}, Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
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
	origin := serveTCP(t, "127.0.0.1:0", echo)
	s, err := New(Config{Dialer: &dial.Direct{}, Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &flakyListener{Listener: inner}
	ln.temporary.Store(3)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background(), ln) }()

	c := connectAddr(t, inner.Addr().String(), origin.addr())
	echoOnce(t, c, "after backoff")
	assert.GreaterOrEqual(t, ln.calls.Load(), int64(4))
	require.NoError(t, c.Close())
	require.NoError(t, s.Shutdown(context.Background()))
	require.NoError(t, <-errc)

	// A non-temporary error ends Serve with that error.
	s2, err := New(Config{Dialer: &dial.Direct{}, Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	err = s2.Serve(context.Background(), brokenListener{})
	assert.ErrorIs(t, err, errHard)
	require.NoError(t, s2.Shutdown(context.Background()))
}

type brokenListener struct{}

// Many short connections leave no goroutine behind (goleak checks at exit)
// and the server's connection table empties.
func TestConnectionsAreReleased(t *testing.T) {
	origin := serveTCP(t, "127.0.0.1:0", echo)
	p := startProxy(t, Config{})
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(testTimeout))
			_, _ = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", origin.addr())
			_, _ = readResponseHead(c)
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		p.srv.mu.Lock()
		defer p.srv.mu.Unlock()
		return len(p.srv.conns) == 0
	}, testTimeout, 5*time.Millisecond)
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
