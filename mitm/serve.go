package mitm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/relay"
)

// clientConn is the client side of an intercepted stream as the TLS server
// sees it: bytes the front end or the sniff already read come first, bytes
// are counted, and once the stream is killed (ctx cancelled) no deadline the
// HTTP servers set can revive it. The ClientHello's fallback name travels
// with it to GetCertificate.
type clientConn struct {
	net.Conn
	early   []byte
	host    string // CONNECT/SOCKS host, for clients that send no SNI
	read    int64  // atomic
	written int64  // atomic
	killed  atomic.Bool
}

// sniff makes sure at least one byte is buffered, reading for up to timeout,
// and returns the first.
func (c *clientConn) sniff(timeout time.Duration) (byte, error) {
	if len(c.early) > 0 {
		return c.early[0], nil
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2048)
	n, err := c.Conn.Read(buf)
	if !c.killed.Load() {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	c.early = buf[:n]
	atomic.AddInt64(&c.read, int64(n))
	if n == 0 {
		return 0, err
	}
	return buf[0], nil
}

func (c *clientConn) addRead(n int) { atomic.AddInt64(&c.read, int64(n)) }

func (c *clientConn) Read(p []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	atomic.AddInt64(&c.read, int64(n))
	return n, err
}

func (c *clientConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	atomic.AddInt64(&c.written, int64(n))
	return n, err
}

// kill ends the stream: every blocked or future read and write fails.
func (c *clientConn) kill() {
	c.killed.Store(true)
	_ = c.Conn.SetDeadline(time.Unix(1, 0))
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if c.killed.Load() {
		t = time.Unix(1, 0)
	}
	return c.Conn.SetDeadline(t)
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	if c.killed.Load() {
		t = time.Unix(1, 0)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) SetWriteDeadline(t time.Time) error {
	if c.killed.Load() {
		t = time.Unix(1, 0)
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *clientConn) counts() (int64, int64) {
	return atomic.LoadInt64(&c.read), atomic.LoadInt64(&c.written)
}

// serveClient serves the client's connection, its TLS done, with net/http:
// HTTP/2 when ALPN chose it, else HTTP/1.1 (keep-alive, chunked bodies,
// Expect: 100-continue, upgrades by hijacking). The server sees the
// connection as cleartext (cleartextConn) and tells the protocols apart by
// the HTTP/2 preface. It returns when the connection is closed or hijacked.
func (ic *Interceptor) serveClient(ctx context.Context, conn net.Conn, s *session) {
	ln := &oneConnListener{conn: cleartextConn{conn}, done: make(chan struct{})}
	srv := &http.Server{
		Handler:           s.handler(),
		ErrorLog:          ic.stdlog,
		ReadHeaderTimeout: ic.cfg.HandshakeTimeout,
		IdleTimeout:       ic.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 100},
		Protocols:         new(http.Protocols),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				ln.finish()
			}
		},
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	_ = srv.Serve(ln)
}

// cleartextConn hides a TLS connection's type from net/http, which would
// otherwise look at ALPN itself; the TLS is hopper's, already done.
type cleartextConn struct{ net.Conn }

// oneConnListener hands out one connection, then blocks in Accept until
// that connection is done, so that http.Server.Serve returns only then.
type oneConnListener struct {
	conn   net.Conn
	done   chan struct{}
	once   sync.Once
	handed bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.handed {
		l.handed = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) finish()        { l.once.Do(func() { close(l.done) }) }
func (l *oneConnListener) Close() error   { l.finish(); return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// passthrough dials req once and splices the stream, for streams in scope
// that turned out not to be TLS. It logs the stream's access line. The
// error is nil when the splice ended normally.
func (ic *Interceptor) passthrough(ctx context.Context, cc *clientConn, req *dial.Request) (int64, int64, error) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, ic.cfg.ConnectTimeout)
	out, err := ic.cfg.Dialer.Dial(dctx, req)
	cancel()
	if err == nil && (out == nil || out.Conn == nil) {
		err = fmt.Errorf("%w: dialer returned no connection", dial.ErrUpstream)
	}
	info := reqInfo{start: start}
	if err != nil {
		info.noteDialErr(err)
		err = fmt.Errorf("splicing a stream that is not TLS: %w", err)
		ic.logStream(req, &info, 0, 0, dial.Classify(err).String(), err)
		up, down := cc.counts()
		return up, down, err
	}
	defer out.Done(false)
	info.upstream, info.attempts = out.Upstream, len(out.Attempts)
	stop := context.AfterFunc(ctx, func() { _ = out.Conn.Close() })
	defer stop()
	var sent int64
	if len(cc.early) > 0 {
		n, werr := out.Conn.Write(cc.early)
		sent = int64(n)
		cc.early = nil
		if werr != nil {
			err = fmt.Errorf("splicing a stream that is not TLS: %w", werr)
			ic.logStream(req, &info, sent, 0, resultInterrupted, err)
			up, down := cc.counts()
			return up, down, err
		}
	}
	res, err := relay.Pipe(cc.Conn, out.Conn, ic.cfg.IdleTimeout)
	result := resultOK
	if err != nil {
		result = resultInterrupted
		err = fmt.Errorf("splicing a stream that is not TLS: %w", err)
	}
	ic.logStream(req, &info, sent+res.Up, res.Down, result, err)
	up, down := cc.counts()
	return up + res.Up, down + res.Down, err
}

// logStream writes the access line of a spliced stream.
func (ic *Interceptor) logStream(req *dial.Request, info *reqInfo, up, down int64, result string, err error) {
	ce := ic.log.Check(zap.InfoLevel, "tunnel")
	if ce == nil {
		return
	}
	client := ""
	if req.Client != nil {
		client = req.Client.String()
	}
	fields := []zap.Field{
		zap.String("client", client),
		zap.String("user", req.User),
		zap.String("proto", req.Protocol.String()),
		zap.String("target", req.Target),
		zap.String("upstream", info.upstream),
		zap.Int("attempts", info.attempts),
		zap.Int64("up", up),
		zap.Int64("down", down),
		zap.Duration("duration", time.Since(info.start)),
		zap.String("result", result),
	}
	if err != nil {
		fields = append(fields, zap.String("error", err.Error()))
	}
	ce.Write(fields...)
}
