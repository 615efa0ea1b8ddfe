package testnet

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Dial and DialFrom reach the server from the address asked for, and Echo
// answers what they send, half-close included.
func TestDialAndEcho(t *testing.T) {
	from := make(chan string, 2)
	s := Serve(t, Listen(t, ""), func(c net.Conn) {
		from <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		Echo(c)
	})
	EchoRoundTrip(t, Dial(t, s.Addr()), "ping")
	assert.Equal(t, "127.0.0.1", <-from)

	c := DialFrom(t, "127.0.0.3", s.Addr())
	assert.Equal(t, "127.0.0.3", <-from)
	BulkEcho(t, c, bytes.Repeat([]byte("0123456789"), 100_000))
	RequireClosed(t, c) // after the echo's half-close, nothing more
}

// Each check fails against a peer that answers every byte one higher.
func TestClientChecksFail(t *testing.T) {
	s := Serve(t, Listen(t, ""), func(c net.Conn) {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			for i := range buf[:n] {
				buf[i]++
			}
			if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
				break
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
	})
	for name, check := range map[string]func(testing.TB, *net.TCPConn){
		"EchoRoundTrip": func(tb testing.TB, c *net.TCPConn) { EchoRoundTrip(tb, c, "ping") },
		"BulkEcho":      func(tb testing.TB, c *net.TCPConn) { BulkEcho(tb, c, []byte("ping")) },
		"RequireClosed": func(tb testing.TB, c *net.TCPConn) {
			_, _ = c.Write([]byte("x"))
			_ = c.CloseWrite()
			RequireClosed(tb, c)
		},
	} {
		rec := &failTB{TB: t}
		check(rec, Dial(t, s.Addr()))
		assert.Len(t, rec.errs, 1, name)
	}
}

// The resolver's own dialer refuses: the error is ours, not a real
// server's "no such host".
func TestNoDNS(t *testing.T) {
	_, err := NoDNS().LookupHost(context.Background(), "example.com")
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr)
	assert.Contains(t, dnsErr.Err, "connection refused")
}
