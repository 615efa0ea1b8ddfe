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
	"sync"
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
// default) and shuts it down, checking that Serve returned nil, when the test
// ends.
func startProxy(t *testing.T, cfg Config) *proxy {
	t.Helper()
	if cfg.Dialer == nil {
		cfg.Dialer = &dial.Direct{}
	}
	core, logs := observer.New(zapcore.InfoLevel)
	if cfg.Logger == nil {
		cfg.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.NoError(t, <-errc)
	})
	return &proxy{srv: srv, addr: ln.Addr().String(), logs: logs}
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

// tcpServer is a loopback TCP server running handle per connection; it
// closes every connection and waits for its goroutines at cleanup.
type tcpServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// accepted counts connections.
	accepted int
}

func serveTCP(t *testing.T, addr string, handle func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := &tcpServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.accepted++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

func (s *tcpServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo copies a connection back to itself and half-closes after EOF.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.(*net.TCPConn).CloseWrite()
}

// dialProxy opens a raw connection to the proxy under the test deadline.
func dialProxy(t *testing.T, p *proxy) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.addr, testTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	return c.(*net.TCPConn)
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

// connect opens a CONNECT tunnel to target through p and returns the raw
// connection after a 200.
func connect(t *testing.T, p *proxy, target string) *net.TCPConn {
	t.Helper()
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(t, err)
	r, err := readResponseHead(c)
	require.NoError(t, err)
	require.Equal(t, 200, r.status, r.raw)
	return c
}

// connectStatus sends a CONNECT for target and returns the response head
// and the body that follows (up to EOF).
func connectStatus(t *testing.T, p *proxy, target, extra string) (response, string) {
	t.Helper()
	c := dialProxy(t, p)
	_, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, extra)
	require.NoError(t, err)
	r, err := readResponseHead(c)
	require.NoError(t, err)
	body, _ := io.ReadAll(c)
	return r, string(body)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	return testnet.RefusingAddr(t, "127.0.0.1")
}

// recordingDialer remembers every request and dials with next.
type recordingDialer struct {
	next dial.Dialer
	mu   sync.Mutex
	reqs []dial.Request
}

func (d *recordingDialer) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	d.mu.Lock()
	d.reqs = append(d.reqs, *req)
	d.mu.Unlock()
	return d.next.Dial(ctx, req)
}

func (d *recordingDialer) requests() []dial.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dial.Request(nil), d.reqs...)
}

// fieldsOf returns an access-log entry's fields as a map.
func fieldsOf(e observer.LoggedEntry) map[string]any {
	return e.ContextMap()
}
