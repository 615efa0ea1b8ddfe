package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hopper-proxy/hopper/dial"

	"github.com/hopper-proxy/hopper/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in a test, so a failure never hangs the run.
const testTimeout = 10 * time.Second

// proxy is a Server under test, listening on loopback.
type proxy struct {
	srv  *Server
	addr string
	logs *observer.ObservedLogs
}

// startProxy runs a Server for cfg (Direct dialer and a test logger by
// default) and shuts it down, requiring a graceful end, when the test ends.
func startProxy(t *testing.T, cfg Config) *proxy {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	if cfg.Logger == nil {
		cfg.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	}
	srv := newServer(t, cfg)
	return &proxy{srv: srv, addr: serve(t, srv), logs: logs}
}

// newServer is New(cfg) with a Direct dialer and a test logger unless cfg
// has its own.
func newServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Dialer == nil {
		cfg.Dialer = &dial.Direct{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(tb)
	}
	srv, err := New(cfg)
	require.NoError(tb, err)
	return srv
}

// serve runs srv on a loopback listener and returns its address. When the
// test ends srv is shut down, its tunnels given testTimeout to end by
// themselves; the test fails if they do not, or if Serve fails.
func serve(tb testing.TB, srv *Server) string {
	tb.Helper()
	ln := testnet.Listen(tb, "")
	testnet.Go(tb, "Serve", func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	// Registered after testnet.Go, so it runs first: Serve's cancellation
	// would close live tunnels rather than wait for them.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
	})
	return ln.Addr().String()
}

// accessLines returns the access-log entries logged so far.
func (p *proxy) accessLines() []observer.LoggedEntry {
	return p.logs.FilterMessage("tunnel").AllUntimed()
}

// waitAccessLines waits until n access-log lines were written.
func (p *proxy) waitAccessLines(t *testing.T, n int) []observer.LoggedEntry {
	t.Helper()
	require.Eventually(t, func() bool { return len(p.accessLines()) >= n },
		testTimeout, 5*time.Millisecond, "access-log lines")
	return p.accessLines()
}

// tcpServer is a loopback test server (testnet.Server) that counts the
// connections it handled.
type tcpServer struct {
	*testnet.Server
	handled atomic.Int64
}

// serveTCP runs handle for every connection to a new listener on
// 127.0.0.1.
func serveTCP(t *testing.T, handle func(net.Conn)) *tcpServer {
	t.Helper()
	s := &tcpServer{}
	s.Server = testnet.Serve(t, testnet.Listen(t, ""), func(c net.Conn) {
		s.handled.Add(1)
		handle(c)
	})
	return s
}

// count is how many connections the server handled so far.
func (s *tcpServer) count() int { return int(s.handled.Load()) }

// holdConns runs an origin that holds every connection it accepts, with no
// goroutine of its own per connection, until the end of the test, when it
// closes them; it returns the origin's address. Idle tunnels to it show
// what hopper alone holds.
func holdConns(tb testing.TB) string {
	tb.Helper()
	ln := testnet.Listen(tb, "")
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read only once accepted is closed
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		<-accepted
		for _, c := range held {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// dialProxy opens a raw connection to the proxy under the test deadline.
func dialProxy(t *testing.T, p *proxy) *net.TCPConn {
	t.Helper()
	return testnet.Dial(t, p.addr)
}

// response is a response head read from a raw connection.
type response struct {
	status int
	header http.Header
	raw    string
}

// readResponseHead reads a response head byte by byte, so no byte after it
// is consumed and the connection can be used raw afterwards.
func readResponseHead(c net.Conn) (response, error) {
	var buf []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			return response{raw: string(buf)}, err
		}
		buf = append(buf, one[0])
		if len(buf) > 1<<16 {
			return response{}, errors.New("response head too long")
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(buf), "\r\n\r\n"), "\r\n")
	parts := strings.SplitN(lines[0], " ", 3)
	if len(parts) < 2 {
		return response{}, fmt.Errorf("bad status line %q", lines[0])
	}
	code, err := strconv.Atoi(parts[1])
	if err != nil {
		return response{}, err
	}
	r := response{status: code, header: http.Header{}, raw: string(buf)}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		r.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return r, nil
}

// sendHead writes to c (format and args as for fmt.Fprintf: a request
// head, maybe with bytes behind it, or a body a 100 Continue asked for) and
// reads the response head that answers.
func sendHead(t *testing.T, c net.Conn, format string, args ...any) response {
	t.Helper()
	_, err := fmt.Fprintf(c, format, args...)
	require.NoError(t, err)
	r, err := readResponseHead(c)
	require.NoError(t, err, "partial: %q", r.raw)
	return r
}

// connectVia opens a CONNECT tunnel to target through the proxy at addr,
// from the local address src ("" for any), and returns it after a 200.
func connectVia(t *testing.T, src, addr, target string) *net.TCPConn {
	t.Helper()
	c := testnet.DialFrom(t, src, addr)
	r := sendHead(t, c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.Equal(t, 200, r.status, r.raw)
	return c
}

// connect opens a CONNECT tunnel to target through p.
func connect(t *testing.T, p *proxy, target string) *net.TCPConn {
	t.Helper()
	return connectVia(t, "", p.addr, target)
}

// connects reports whether a new client from src ("" for any address) gets
// a CONNECT tunnel to target through the proxy at addr; the connection is
// closed again. It fails nothing, for require.Eventually.
func connects(src, addr, target string) bool {
	d := net.Dialer{Timeout: testTimeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, _ = fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", target)
	r, err := readResponseHead(c)
	return err == nil && r.status == 200
}

// connectStatus sends a CONNECT for target and returns the response head
// and the body that follows (up to EOF).
func connectStatus(t *testing.T, p *proxy, target, extra string) (response, string) {
	t.Helper()
	c := dialProxy(t, p)
	r := sendHead(t, c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, extra)
	body, _ := io.ReadAll(c)
	return r, string(body)
}

// fieldsOf returns an access-log entry's fields as a map.
func fieldsOf(e observer.LoggedEntry) map[string]any {
	return e.ContextMap()
}
