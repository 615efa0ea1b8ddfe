package judge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// ServeTLS answers on ln over TLS (ALPN h2 and http/1.1, or TLSNextProtos) until ctx ends,
// like Serve, presenting Certificate. Before the TLS server sees a
// connection the judge reads its ClientHello, and before the HTTP server
// parses a request it records its bytes, so every report adds the JA4 of
// the connection's ClientHello, the order its headers arrived in, and over
// HTTP/2 the Akamai fingerprint of the connection's preface and the
// request's pseudo-header order and priority. It closes ln.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener) error {
	cert := s.Certificate
	if cert == nil {
		c, err := SelfSigned(time.Now())
		if err != nil {
			_ = ln.Close()
			return err
		}
		cert = &c
	}
	protos := s.TLSNextProtos
	if protos == nil {
		protos = []string{"h2", "http/1.1"}
	}
	// The TLS is the judge's: srv sees each connection after the
	// handshake, as cleartext HTTP/1.1 or HTTP/2 (prior knowledge, which
	// is what follows ALPN h2).
	srv := s.httpServer(ctx)
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	p := &tlsPort{
		s:   s,
		srv: srv,
		cfg: &tls.Config{
			Certificates: []tls.Certificate{*cert},
			NextProtos:   protos,
			MinVersion:   tls.VersionTLS10, // a judge reports old clients too
		},
		queue: &connQueue{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})},
		conns: make(map[net.Conn]struct{}),
		log:   s.logger(),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(p.queue) }()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	aerr := p.accept(ctx, ln)
	if ctx.Err() != nil {
		aerr = nil
	}
	_ = ln.Close()
	err := s.shutdown(ctx, srv)
	p.closeAll()
	p.wg.Wait()
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return errors.Join(aerr, err)
}

// ListenAndServeTLS listens on addr (TCP) and serves ServeTLS until ctx
// ends.
func (s *Server) ListenAndServeTLS(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeTLS(ctx, ln)
}

// tlsPort is one ServeTLS: its server and the connections it handshakes,
// which go to srv through queue once their handshake is done.
type tlsPort struct {
	s     *Server
	srv   *http.Server
	cfg   *tls.Config
	queue *connQueue
	log   *zap.Logger
	wg    sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // raw connections still handshaking
	closed bool
}

// accept runs the accept loop until ln fails for good (closed: nil).
func (p *tlsPort) accept(ctx context.Context, ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept", zap.Error(err), zap.Duration("retry_in", backoff))
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return err
		}
		backoff = 0
		if !p.track(c) {
			_ = c.Close()
			return nil
		}
		p.wg.Add(1)
		go p.serveConn(ctx, c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (p *tlsPort) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tlsPort) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// closeAll closes every connection still handshaking.
func (p *tlsPort) closeAll() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.queue.Close()
}

// serveConn reads the ClientHello, completes the handshake and hands the
// connection to srv with a capture of what the client sends.
func (p *tlsPort) serveConn(ctx context.Context, c net.Conn) {
	defer p.wg.Done()
	handed := false
	defer func() {
		p.untrack(c)
		if !handed {
			_ = c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(p.s.readHeaderTimeout()))
	early, hello, err := readClientHello(c)
	if err != nil {
		p.log.Debug("no ClientHello", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
		return
	}
	tc := tls.Server(&prefixConn{Conn: c, pre: early}, p.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		p.log.Debug("TLS handshake", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
		return
	}
	_ = c.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	w := &wire{hello: hello, version: st.Version, protocol: st.NegotiatedProtocol}
	var capture io.Writer
	if st.NegotiatedProtocol == "h2" {
		w.h2 = fingerprint.NewHTTP2Capture()
		capture = w.h2
	} else {
		w.h1 = fingerprint.NewHTTP1Capture()
		capture = w.h1
	}
	// The wrapper hides the TLS from srv, which then serves what ALPN
	// chose as cleartext; reports take the TLS details from the wire.
	if p.queue.push(&wireConn{Conn: hideTLS{fingerprint.Tee(tc, capture)}, wire: w}) {
		handed = true
	}
}

// readClientHello reads c until it holds a whole ClientHello and returns
// everything read (to be replayed to the TLS server) and the parsed hello.
func readClientHello(c net.Conn) ([]byte, *fingerprint.ClientHello, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > fingerprint.MaxClientHello+1024 {
				return nil, nil, fingerprint.ErrTooLarge
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, rerr := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		msg, recVer, _, err := fingerprint.ExtractClientHello(buf)
		if err == nil {
			hello, err := fingerprint.ParseClientHello(msg)
			if err != nil {
				return nil, nil, err
			}
			hello.RecordVersion = recVer
			return buf, hello, nil
		}
		if !errors.Is(err, fingerprint.ErrIncomplete) {
			return nil, nil, err
		}
		if rerr != nil {
			return nil, nil, rerr
		}
	}
}

// hideTLS is a connection without its ConnectionState method.
type hideTLS struct{ net.Conn }

// prefixConn replays pre before reading from Conn.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// connQueue is the listener srv serves HTTP/1.1 connections from: the ones
// serveConn pushes after their handshake.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// push hands c to srv; false when the queue is closed.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
