// Package dialtest holds fakes of dial's contracts that the tests of more
// than one front end share: a Dialer that records what it is asked, one
// that misses its deadline, and an interceptor stub. The loopback fixtures
// stay in testnet, which must not import dial so that dial's own tests may
// use it; this package adds what needs dial. It imports nothing of
// hopper's but dial, and only tests import it (../deps_test.go keeps both
// so).
package dialtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// Recorder is a dial.Dialer that records every request, and the context
// it came with, before passing it on to Next.
type Recorder struct {
	Next dial.Dialer

	mu   sync.Mutex
	reqs []dial.Request
	ctxs []context.Context
}

var _ dial.Dialer = (*Recorder)(nil)

// Dial records req and ctx, then dials through Next.
func (r *Recorder) Dial(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, *req)
	r.ctxs = append(r.ctxs, ctx)
	r.mu.Unlock()
	return r.Next.Dial(ctx, req)
}

// Requests returns copies of the requests so far, in order.
func (r *Recorder) Requests() []dial.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]dial.Request(nil), r.reqs...)
}

// Contexts returns the contexts of the requests so far, in order.
func (r *Recorder) Contexts() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]context.Context(nil), r.ctxs...)
}

// MissesDeadline returns a dial.Dialer that gives up at ctx's deadline on a
// timer of its own, as one does that sets a connection deadline from ctx
// when an upstream never answers, and then reports an upstream failure
// (dial.ErrUpstream from "http://stalled"), maybe a moment before ctx is
// done. A front end must still tell its client the establishment timed out.
func MissesDeadline() dial.Dialer {
	return dial.DialerFunc(func(ctx context.Context, req *dial.Request) (*dial.Outbound, error) {
		dl, _ := ctx.Deadline()
		time.Sleep(time.Until(dl))
		return nil, &dial.Error{Upstream: "http://stalled", Target: req.Target, Attempt: 1,
			Err: fmt.Errorf("%w: upstream handshake: i/o timeout", dial.ErrUpstream)}
	})
}

// LineInterceptor is an interceptor stub for a front end (tunnel's or
// socks' Interceptor): it takes targets on port 443 and answers the
// client's first line with "intercepted: LINE" on the connection it is
// handed, dialing nothing. It records what it served.
type LineInterceptor struct {
	mu   sync.Mutex
	reqs []dial.Request
	raw  []bool
}

// Intercept takes targets on port 443.
func (f *LineInterceptor) Intercept(req *dial.Request) bool {
	return strings.HasSuffix(req.Target, ":443")
}

// ServeIntercepted records req, reads the client's first line, early (the
// bytes the front end already read) first, and answers it. up counts what
// it read, early included, and down what it wrote.
func (f *LineInterceptor) ServeIntercepted(_ context.Context, conn net.Conn, early []byte, req *dial.Request) (up, down int64, err error) {
	_, raw := conn.(*net.TCPConn)
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.raw = append(f.raw, raw)
	f.mu.Unlock()
	line := bytes.Clone(early)
	buf := make([]byte, 64)
	for bytes.IndexByte(line, '\n') < 0 {
		n, err := conn.Read(buf)
		line = append(line, buf[:n]...)
		if err != nil {
			return int64(len(line)), 0, err
		}
	}
	w, err := io.WriteString(conn, "intercepted: "+string(line))
	return int64(len(line)), int64(w), err
}

// Only fails the test unless exactly one stream was served, and on the
// raw *net.TCPConn rather than a wrapper; it returns that stream's request.
func (f *LineInterceptor) Only(t testing.TB) dial.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 1 {
		t.Fatalf("dialtest: %d streams intercepted, want 1", len(f.reqs))
		return dial.Request{}
	}
	if !f.raw[0] {
		t.Fatalf("dialtest: the interceptor got a wrapper, not the raw connection")
	}
	return f.reqs[0]
}
