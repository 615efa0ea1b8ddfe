package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Server accepts client connections and serves HTTP CONNECT, HTTP forward
// requests and (through Config.SOCKS) SOCKS on them. Create it with New; its
// methods are safe for concurrent use.
type Server struct {
	cfg  Config
	log  *zap.Logger
	tls  *tls.Config // Config.TLS offering only HTTP/1.1, nil without TLS
	bufs sync.Pool   // *[]byte of readBufSize, for reading heads
	// established is connectEstablished, converted once: Write would
	// allocate a copy of the string per tunnel.
	established []byte

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	nextID    uint64
	perClient map[netip.Addr]int // open connections per client address
	shutting  bool
	done      chan struct{} // closed when Shutdown starts
	wg        sync.WaitGroup
}

// New returns a Server for cfg, with defaults filled in for zero limits.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		done:      make(chan struct{}),

		established: []byte(connectEstablished),
	}
	if cfg.TLS != nil {
		s.tls = cfg.TLS.Clone()
		s.tls.NextProtos = []string{"http/1.1"}
	}
	s.bufs.New = func() any { b := make([]byte, readBufSize); return &b }
	return s, nil
}

// Serve accepts connections on ln and serves each in its own goroutine until
// ln is closed or Shutdown is called; it then returns nil. It backs off on
// temporary accept errors and returns any other accept error. Serve closes
// ln when it returns. It may be called with several listeners at once.
//
// ctx is the parent of every connection's context. When it is done, Serve
// stops the whole Server at once, as Shutdown with an expired context would:
// every connection is closed and waited for. For a graceful stop call
// Shutdown before cancelling ctx.
//
// Connections outlive a Serve that returned because ln was closed; Shutdown
// waits for them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.addListener(ln) {
		_ = ln.Close()
		return nil
	}
	defer s.removeListener(ln)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				expired, cancel := context.WithCancel(context.WithoutCancel(ctx))
				cancel()
				_ = s.Shutdown(expired)
				return nil
			}
			if s.isShutting() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !isTemporary(err) {
				return fmt.Errorf("tunnel: accept: %w", err)
			}
			delay = max(2*delay, 5*time.Millisecond)
			delay = min(delay, time.Second)
			s.log.Warn("accept failed; backing off", zap.Error(err), zap.Duration("delay", delay))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			case <-s.done:
				t.Stop()
			}
			continue
		}
		delay = 0
		s.handle(ctx, rw)
	}
}

// Shutdown stops the Server gracefully: it closes every listener, closes
// connections that sit idle between requests, and lets live tunnels and
// requests finish. When ctx is done first it closes every remaining
// connection, waits for their goroutines, and returns ctx.Err(). It returns
// nil once every connection ended by itself.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutting {
		s.shutting = true
		close(s.done)
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		if c.idle {
			_ = c.raw.Close()
		}
	}
	s.mu.Unlock()

	// s.shutting guarantees no further wg.Add, so waiting is safe.
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.forceClose()
	}
	s.mu.Unlock()
	<-finished
	return ctx.Err()
}

func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) removeListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	_ = ln.Close()
}

func (s *Server) isShutting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutting
}

// handle registers rw and starts its goroutine, or closes rw at once when
// the Server is full, rw's client address holds MaxConnsPerClient
// connections already, or the Server is shutting down.
func (s *Server) handle(ctx context.Context, rw net.Conn) {
	s.mu.Lock()
	if s.shutting || len(s.conns) >= s.cfg.MaxConns {
		full := !s.shutting
		s.mu.Unlock()
		_ = rw.Close()
		if full {
			s.log.Debug("connection refused: too many connections",
				zap.Stringer("client", rw.RemoteAddr()), zap.Int("max_conns", s.cfg.MaxConns))
		}
		return
	}
	if !s.admitClient(rw.RemoteAddr()) {
		s.mu.Unlock()
		_ = rw.Close()
		s.log.Debug("connection refused: too many connections from this client",
			zap.Stringer("client", rw.RemoteAddr()), zap.Int("max_conns_per_client", s.cfg.MaxConnsPerClient))
		return
	}
	s.nextID++
	c := newConn(ctx, s, rw, s.nextID)
	c.idle = true
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

// release unregisters c once its goroutine is about to end.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.releaseClient(c.raw.RemoteAddr())
	s.mu.Unlock()
	s.wg.Done()
}

// setIdle marks c as waiting for its next request, so that Shutdown closes
// it. It reports false when the Server is shutting down: c should close.
func (s *Server) setIdle(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	c.idle = true
	return true
}

// setActive marks c as serving a request.
func (s *Server) setActive(c *conn) {
	s.mu.Lock()
	c.idle = false
	s.mu.Unlock()
}

// isTemporary reports accept errors worth retrying after a pause: resource
// exhaustion and connections aborted before they were accepted.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	for _, e := range [...]syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
