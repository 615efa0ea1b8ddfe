package testnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// ioTimeout bounds every read and write on a connection Dial returns.
const ioTimeout = 10 * time.Second

// Dial connects to addr and returns the connection with a deadline of 10s
// on every read and write, so a test never hangs on it; it is closed at the
// end of the test.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	return DialFrom(t, "", addr)
}

// DialFrom is Dial from the local address src (such as 127.0.0.2, to play
// another client); "" leaves the choice to the system.
func DialFrom(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("testnet: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("testnet: %v", err)
	}
	return c.(*net.TCPConn)
}

// Echo is a handler for Serve: it sends back whatever c receives and, after
// EOF, closes its writing side when c can (TCP), so a client's half-close
// comes back to it.
func Echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
}

// EchoRoundTrip writes msg to c and fails the test unless the same bytes
// come back: c leads to Echo, through whatever is under test.
func EchoRoundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("testnet: echo write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("testnet: echo read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("testnet: echo: got %q, want %q", got, msg)
	}
}

// HalfCloser is a connection that can close its writing side alone, such
// as *net.TCPConn and *tls.Conn.
type HalfCloser interface {
	net.Conn
	CloseWrite() error
}

// BulkEcho writes data to c and then closes c's writing side, while it
// reads what c receives until EOF; it fails the test unless that is data
// again (compared by length and SHA-256, so a failure prints no megabytes).
// Both directions flow at once, and the half-close must travel to the echo
// and back. c's deadline bounds it.
func BulkEcho(t testing.TB, c HalfCloser, data []byte) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		_ = c.Close() // the writer may be stuck on a peer that stopped reading
		<-werr
		t.Fatalf("testnet: bulk echo: read %d bytes, then %v", n, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("testnet: bulk echo: write: %v", err)
	}
	if n != int64(len(data)) {
		t.Fatalf("testnet: bulk echo: %d bytes came back, want %d", n, len(data))
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("testnet: bulk echo: what came back differs from what was sent")
	}
}

// RequireClosed fails the test unless the peer closes c without sending
// another byte: EOF, or a reset, as a peer that closes with input unread
// sends. c's deadline bounds the wait.
func RequireClosed(t testing.TB, c net.Conn) {
	t.Helper()
	n, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("testnet: want the connection closed, got %v", err)
	}
	if n != 0 {
		t.Fatalf("testnet: %d more bytes before the close", n)
	}
}

// NoDNS returns a resolver whose every query fails without a packet
// leaving the machine, for tests of names that must not resolve.
func NoDNS() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(_ context.Context, network, _ string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		},
	}
}
