package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// readBufSize is the initial size of a connection's read buffer; it grows up
// to Config.MaxHeadBytes for a large head.
const readBufSize = 4 << 10

// errIdleClosed ends a kept-alive connection that sent no further request.
var errIdleClosed = errors.New("connection idle")

// conn is one accepted client connection and everything needed to serve it.
// Its fields are used by one goroutine at a time (serve's, then, once a
// tunnel took the connection over, the one that ends it), except those
// under mu and idle (guarded by Server.mu).
type conn struct {
	srv *Server
	// raw is the connection as accepted, never wrapped. Other goroutines
	// (Shutdown, release) use only raw: it never changes.
	raw net.Conn
	// rwc is the client stream: raw, or the *tls.Conn over it once the
	// client started a TLS handshake (Config.TLS). Used by serve's
	// goroutine and whoever a tunnel is handed to.
	rwc    net.Conn
	tls    bool // rwc is a *tls.Conn
	ctx    context.Context
	cancel context.CancelFunc
	id     uint64
	idle   bool // guarded by srv.mu: waiting for a request; Shutdown closes it
	// handedOff is set when a tunnel (relay.Start, or SOCKS) took the
	// connection over: it calls finish itself when it ends.
	handedOff bool

	mu     sync.Mutex
	out    net.Conn // the outbound connection in use, closed by forceClose
	forced bool

	client string

	// The state of serving requests, nil once a tunnel took the connection
	// over (dropRequestState), so that an idle tunnel holds only the above.
	*requestState
}

// requestState is what reading and serving HTTP requests needs.
type requestState struct {
	in      reader // client side
	up      reader // origin side of forward requests
	req     head
	resp    head
	wbuf    []byte // request heads for origins
	rbuf    []byte // response heads for the client
	seq     int
	authRaw string // Proxy-Authorization value already accepted on this conn
	authed  identity
	fwd     forwardState

	// dctx bounds dials (see dialContext), dcancel releases it.
	dctx    context.Context
	dcancel context.CancelFunc
	dctxAt  time.Time
}

func newConn(ctx context.Context, s *Server, rw net.Conn, id uint64) *conn {
	c := &conn{srv: s, raw: rw, rwc: rw, id: id, requestState: &requestState{}}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.in.conn = rw
	return c
}

// dropRequestState returns the pooled buffers and lets the request state go,
// once a tunnel takes the connection over.
func (c *conn) dropRequestState() {
	c.releaseBuffers()
	c.requestState = nil
}

// serve sniffs the first byte and hands the connection to SOCKS or HTTP,
// after terminating TLS if the byte starts a handshake and Config.TLS is
// set. Unless a tunnel took the connection over (handedOff), it is finished
// when serve returns.
func (c *conn) serve() {
	presizeStack()
	defer func() {
		if !c.handedOff {
			c.finish()
		}
	}()

	cfg := &c.srv.cfg
	_ = c.rwc.SetDeadline(time.Now().Add(cfg.HeaderTimeout))
	c.attachBuf(&c.in)
	n, err := c.rwc.Read(c.in.buf[:1])
	if n == 0 {
		c.srv.log.Debug("connection closed before its first byte",
			zap.String("client", c.clientAddr()), zap.Error(err))
		return
	}
	c.srv.setActive(c)
	first := c.in.buf[0]
	if first == recordTypeHandshake && c.srv.tls != nil {
		if first, err = c.startTLS(); err != nil {
			return
		}
		c.in.buf[0] = first
	}
	if first == 0x04 || first == 0x05 {
		c.dropRequestState()
		if cfg.SOCKS == nil {
			c.srv.log.Debug("SOCKS connection refused: SOCKS is off",
				zap.String("client", c.clientAddr()))
			return
		}
		c.handedOff = true
		cfg.SOCKS.ServeStream(c.ctx, c.rwc, first, c.finish)
		return
	}
	c.in.w = 1
	c.serveHTTP()
}

// handshakeStack is about the stack a handshake needs (dialing, parsing,
// logging), so that presizeStack grows a new goroutine's stack to it at once.
const handshakeStack = 6 << 10

// presizeStack grows the calling goroutine's stack to fit a handshake in one
// step, while the stack holds nothing but serve's frame. The runtime starts
// goroutines at the average stack size it sees, which relay goroutines keep
// small; growing by doubling would copy the handshake's deep stack twice.
//
//go:noinline
func presizeStack() {
	var frame [handshakeStack]byte
	keepFrame(frame[:])
}

//go:noinline
func keepFrame([]byte) {}

// finish releases the connection once nothing uses it any more: its
// buffers, its socket, its context and its place in the Server. It runs
// once, when serve returns or, for a tunnel relayed on goroutines of its
// own, when that tunnel ends.
func (c *conn) finish() {
	c.releaseBuffers()
	_ = c.rwc.Close()
	c.cancel()
	c.srv.release(c)
}

// serveHTTP serves requests until the connection must close.
func (c *conn) serveHTTP() {
	for first := true; ; first = false {
		if err := c.readRequest(first); err != nil {
			if errors.Is(err, errBadRequest) {
				e := c.newEntry(dial.ProtocolUnknown)
				c.fail(&e, err)
				return
			}
			c.srv.log.Debug("connection closed while reading a request",
				zap.String("client", c.clientAddr()), zap.Error(err))
			return
		}
		if string(c.req.method) == "CONNECT" {
			c.serveConnect()
			return
		}
		if !c.serveForward() || !c.srv.setIdle(c) {
			return
		}
	}
}

// readRequest reads and parses the next request head into c.req. The first
// request's header deadline is already running; later ones wait up to
// IdleTimeout for their first byte, and the rest of a head that did not come
// whole with it is due within HeaderTimeout. The read deadline is cleared
// once the head is read.
func (c *conn) readRequest(first bool) error {
	cfg := &c.srv.cfg
	armed := first
	if !first {
		if len(c.in.buffered()) == 0 {
			armed = true
			_ = c.rwc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
			if _, err := c.in.fill(); err != nil {
				return errors.Join(errIdleClosed, err)
			}
		}
		c.srv.setActive(c)
		// Mostly the whole head came in one read: then no header deadline
		// is needed. Empty lines before it are dropped with more reads.
		if b := c.in.buffered(); b[0] == '\r' || b[0] == '\n' || headEnd(b, 0) < 0 {
			armed = true
			_ = c.rwc.SetReadDeadline(time.Now().Add(cfg.HeaderTimeout))
		}
	}
	b, err := c.in.readHead(cfg.MaxHeadBytes)
	if err != nil {
		return err
	}
	err = c.req.parseRequest(b)
	c.in.consume(len(b))
	if err != nil {
		return err
	}
	switch {
	case first:
		_ = c.rwc.SetDeadline(time.Time{})
	case armed:
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
	return nil
}

// track records out as the connection's outbound, so that a forced close
// reaches it. It reports false if the connection was already forced closed.
func (c *conn) track(out net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forced {
		return false
	}
	c.out = out
	return true
}

// untrack forgets the outbound; it reports false if a forced close happened
// meanwhile, in which case the outbound must not be reused.
func (c *conn) untrack() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = nil
	return !c.forced
}

// forceClose closes the client and outbound connections and cancels any dial
// in progress. Called by Shutdown, with Server.mu held.
func (c *conn) forceClose() {
	c.cancel()
	c.mu.Lock()
	c.forced = true
	if c.out != nil {
		_ = c.out.Close()
	}
	c.mu.Unlock()
	_ = c.raw.Close()
}

func (c *conn) wasForced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forced
}

func (c *conn) clientAddr() string {
	if c.client == "" {
		if a := c.raw.RemoteAddr(); a != nil {
			c.client = a.String()
		}
	}
	return c.client
}

// attachBuf gives rd a pooled buffer.
func (c *conn) attachBuf(rd *reader) {
	p := c.srv.bufs.Get().(*[]byte)
	rd.pooled, rd.buf = p, *p
}

// detachBuf returns rd's pooled buffer (even if rd outgrew it) and empties rd.
func (c *conn) detachBuf(rd *reader) {
	if rd.pooled != nil {
		c.srv.bufs.Put(rd.pooled)
	}
	rd.pooled, rd.buf, rd.r, rd.w, rd.scan = nil, nil, 0, 0, 0
}

// releaseBuffers returns pooled buffers and drops per-request scratch, so a
// long-lived tunnel holds as little memory as possible.
func (c *conn) releaseBuffers() {
	if c.requestState == nil {
		return
	}
	if c.dcancel != nil {
		c.dcancel()
		c.dctx, c.dcancel = nil, nil
	}
	c.detachBuf(&c.in)
	c.detachBuf(&c.up)
	c.req, c.resp = head{}, head{}
	c.wbuf, c.rbuf = nil, nil
	// Not the access entry: an upgraded request logs it when it ends.
	c.fwd.info, c.fwd.u, c.fwd.targets = reqInfo{}, absURI{}, targetCache{}
}

// closeLingering closes the client connection after an error reply without
// losing that reply: closing a socket with unread input makes the kernel
// send a reset that can overtake the reply, so the write side is shut first
// and input is drained briefly.
func (c *conn) closeLingering() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.CopyN(io.Discard, c.rwc, 256<<10)
	}
	_ = c.rwc.Close()
}

// reader buffers reads from one connection. Unlike bufio.Reader it exposes
// its buffer, so heads are parsed in place and bytes read past a head can be
// written on before the raw connection is relayed.
type reader struct {
	conn   net.Conn
	buf    []byte
	pooled *[]byte // the pool's buffer, returned by detachBuf
	r, w   int
	scan   int   // headEnd resume offset, relative to r
	total  int64 // bytes read since the owner last reset it
}

func (rd *reader) buffered() []byte { return rd.buf[rd.r:rd.w] }

func (rd *reader) consume(n int) {
	rd.r += n
	rd.scan = 0
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
}

// fill reads once from the connection into free buffer space, first moving
// unread bytes to the front when the tail is full.
func (rd *reader) fill() (int, error) {
	if rd.r > 0 && rd.w == len(rd.buf) {
		rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.r = 0
	}
	if rd.w == len(rd.buf) {
		return 0, errBufferFull
	}
	n, err := rd.conn.Read(rd.buf[rd.w:])
	rd.w += n
	rd.total += int64(n)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}

var errBufferFull = errors.New("read buffer full")

// readHead returns the next complete head in the buffer, reading more as
// needed, after dropping empty lines that precede it (RFC 9112 §2.2). The
// slice is valid until the next fill; the caller consumes it. A head longer
// than limit is errHeadTooLarge.
func (rd *reader) readHead(limit int) ([]byte, error) {
	for {
		b := rd.buffered()
		for len(b) > 0 && (b[0] == '\n' || (b[0] == '\r' && len(b) > 1 && b[1] == '\n')) {
			if b[0] == '\r' {
				rd.consume(1)
			}
			rd.consume(1)
			b = rd.buffered()
		}
		if n := headEnd(b, rd.scan); n >= 0 {
			if n > limit {
				return nil, errHeadTooLarge
			}
			return b[:n], nil
		}
		if len(b) >= limit {
			return nil, errHeadTooLarge
		}
		rd.scan = max(len(b)-3, 0)
		if rd.r == 0 && rd.w == len(rd.buf) {
			grown := make([]byte, min(2*len(rd.buf), limit+4))
			copy(grown, rd.buf[:rd.w])
			rd.buf = grown
		}
		if _, err := rd.fill(); err != nil {
			if len(rd.buffered()) > 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				// The peer stopped mid-head.
				return nil, errors.Join(errTruncatedHead, err)
			}
			return nil, err
		}
	}
}

var errTruncatedHead = errors.New("connection closed mid-head")
