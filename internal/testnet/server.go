package testnet

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// stopTimeout bounds how long the end of a test waits for a server.
const stopTimeout = 10 * time.Second

// Listen listens on ip:0 (ip "" is 127.0.0.1) and closes the listener at
// the end of the test.
func Listen(t testing.TB, ip string) net.Listener {
	t.Helper()
	if ip == "" {
		ip = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("testnet: listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// Server is a test server's accept loop: it serves every connection in a
// goroutine of its own and closes it when the handler returns. Close, which
// runs at the end of the test, closes the listener and every connection
// still tracked, then waits for the handlers, so none outlives the test.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup
	mu sync.Mutex
	// conns are the connections Close closes; nil once closed.
	conns map[net.Conn]struct{}
}

// NewServer takes ln over, to be closed at the end of the test; Serve starts
// it. The two steps let a handler refer to the Server (to Track what it
// dials) without a race.
func NewServer(t testing.TB, ln net.Listener) *Server {
	s := &Server{ln: ln, conns: make(map[net.Conn]struct{})}
	t.Cleanup(s.Close)
	return s
}

// Serve is NewServer(t, ln).Serve(handle).
func Serve(t testing.TB, ln net.Listener, handle func(c net.Conn)) *Server {
	s := NewServer(t, ln)
	s.Serve(handle)
	return s
}

// Serve accepts connections in the background until Close and hands each
// to handle in a goroutine of its own; the connection is closed when handle
// returns.
func (s *Server) Serve(handle func(c net.Conn)) {
	s.wg.Add(1)
	go s.acceptLoop(handle)
}

func (s *Server) acceptLoop(handle func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		if !s.Track(c) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.Untrack(c)
			handle(c)
		}()
	}
}

// Addr is the listener's address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Track registers c, such as a connection a proxy dialed, to be closed by
// Close. Once Close has run it closes c and reports false.
func (s *Server) Track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		_ = c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// Untrack closes c and forgets it.
func (s *Server) Untrack(c net.Conn) {
	s.mu.Lock()
	if s.conns != nil {
		delete(s.conns, c)
	}
	s.mu.Unlock()
	_ = c.Close()
}

// Close closes the listener and every tracked connection and waits for the
// handlers to return. It may be called more than once.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// Go runs run in a goroutine, as a test's Serve or Run loop. stop cancels
// run's context and waits for run to return: the test fails if run returns
// an error, or does not return within 10s. stop runs at the end of the test
// too; calls after the first do nothing.
func Go(t testing.TB, name string, run func(ctx context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			t.Helper()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("testnet: %s returned %v", name, err)
				}
			case <-time.After(stopTimeout):
				t.Fatalf("testnet: %s did not return within %v of its cancellation", name, stopTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TCPPair returns both ends of a loopback TCP connection; both are closed
// at the end of the test.
func TCPPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("testnet: listen: %v", err)
	}
	defer ln.Close()
	type accepted struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- accepted{c, err}
	}()
	a, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("testnet: dial: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b := <-ch
	if b.err != nil {
		t.Fatalf("testnet: accept: %v", b.err)
	}
	t.Cleanup(func() { _ = b.c.Close() })
	return a, b.c
}
