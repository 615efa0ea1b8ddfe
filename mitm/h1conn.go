package mitm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// errConnBusy: an HTTP/1.1 origin connection was asked for a second request
// while one was in flight.
var errConnBusy = errors.New("origin connection busy")

// h1Conn is an HTTP/1.1 OriginConn: one request at a time, bodies streamed
// both ways, full duplex: the response is read while the request body is
// still being written, so an origin that answers early (413, 401, a
// redirect) is heard rather than left waiting for a body it stopped
// reading. A 101 answer
// turns the connection into the response body (an io.ReadWriteCloser), which
// is how httputil.ReverseProxy passes an upgrade through.
type h1Conn struct {
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	idle    time.Duration
	profile *Profile // writes the fields in its browser's order

	mu     sync.Mutex
	busy   bool
	broken bool
}

func newH1Conn(conn net.Conn, idle time.Duration, p *Profile) *h1Conn {
	return &h1Conn{conn: conn, br: bufio.NewReaderSize(conn, 16<<10), bw: bufio.NewWriterSize(conn, 16<<10), idle: idle, profile: p}
}

func (c *h1Conn) CanTakeRequest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.busy && !c.broken
}

func (c *h1Conn) Close() error {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
	return c.conn.Close()
}

// RoundTrip writes req and reads its response head. Cancelling req's
// context aborts the exchange (and the connection) until the body is done.
// 1xx answers other than 101 go to the request's httptrace Got1xxResponse.
func (c *h1Conn) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.busy || c.broken {
		c.mu.Unlock()
		return nil, errConnBusy
	}
	c.busy = true
	c.mu.Unlock()

	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.exchange(req)
	if err != nil {
		stop()
		c.fail()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection now belongs to the upgraded protocol; it is the
		// body, closed by whoever relays it.
		stop()
		c.mu.Lock()
		c.broken = true
		c.mu.Unlock()
		_ = c.conn.SetDeadline(time.Time{})
		resp.Body = &upgradedConn{conn: c.conn, br: c.br}
		return resp, nil
	}
	reusable := !resp.Close && !req.Close
	resp.Body = &h1Body{rc: resp.Body, c: c, stop: stop, reusable: reusable}
	return resp, nil
}

func (c *h1Conn) exchange(req *http.Request) (*http.Response, error) {
	if c.idle > 0 {
		_ = c.conn.SetDeadline(time.Now().Add(c.idle))
	}
	if err := writeHeadH1(c.bw, req, c.profile); err != nil {
		return nil, fmt.Errorf("writing request: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing request: %w", err)
	}
	if !hasBody(req) {
		return c.readResponse(req)
	}
	// The body goes out on a goroutine of its own while the response is
	// read. It ends with the body, or when the connection breaks: an early
	// answer leaves the connection unusable (resp.Close), so it is closed
	// once the response is done, and the client's body ends with its
	// request.
	written := make(chan error, 1)
	go func() {
		err := writeBodyH1(c.bw, req)
		if err == nil {
			err = c.bw.Flush()
		}
		written <- err
	}()
	resp, err := c.readResponse(req)
	if err != nil {
		_ = c.conn.Close() // stops the body's writes
		select {
		case werr := <-written:
			if werr != nil {
				err = fmt.Errorf("%w (writing the request body: %w)", err, werr)
			}
		default:
		}
		return nil, err
	}
	select {
	case werr := <-written:
		if werr != nil {
			resp.Close = true // the origin stopped reading the body
		}
	default:
		// Answered before the whole body was sent: the rest may still be
		// on its way, so this connection carries nothing after it.
		resp.Close = true
	}
	return resp, nil
}

// readResponse reads the final response head to req, passing 1xx answers
// other than 101 to the request's httptrace.
func (c *h1Conn) readResponse(req *http.Request) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, fmt.Errorf("reading response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		// 1xx informational: pass on, then read the final answer.
		_ = resp.Body.Close()
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// fail marks the connection unusable and closes it.
func (c *h1Conn) fail() {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
	_ = c.conn.Close()
}

// done ends the request in flight; the connection may carry the next one
// when the body was read to its end and neither side asked to close.
func (c *h1Conn) done(reusable bool) {
	if !reusable {
		c.fail()
		return
	}
	c.mu.Lock()
	c.busy = false
	c.mu.Unlock()
}

// h1Body is a response body that frees its connection when read to the end
// or closed.
type h1Body struct {
	rc       io.ReadCloser
	c        *h1Conn
	stop     func() bool
	reusable bool
	once     sync.Once
	eof      bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.c.idle > 0 && n > 0 {
		_ = b.c.conn.SetDeadline(time.Now().Add(b.c.idle))
	}
	if err == io.EOF {
		b.eof = true
		b.finish()
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.finish()
	return nil
}

func (b *h1Body) finish() {
	b.once.Do(func() {
		stopped := b.stop()
		_ = b.rc.Close()
		_ = b.c.conn.SetDeadline(time.Time{})
		b.c.done(b.reusable && b.eof && stopped)
	})
}

// upgradedConn is an upgraded origin connection as a response body: reads
// drain what the response reader buffered first.
type upgradedConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if u.br != nil && u.br.Buffered() > 0 {
		return u.br.Read(p)
	}
	return u.conn.Read(p)
}

func (u *upgradedConn) Write(p []byte) (int, error) { return u.conn.Write(p) }
func (u *upgradedConn) Close() error                { return u.conn.Close() }
