package tunnel

import (
	"crypto/tls"
	"io"
	"net"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// recordTypeHandshake is the first byte of a TLS ClientHello record
// (RFC 8446 §5.1).
const recordTypeHandshake = 0x16

// resultTLSFailed is the access-log result of a client whose TLS handshake
// with the proxy failed.
const resultTLSFailed = "tls-failed"

// startTLS terminates TLS on a connection whose first byte, already read
// into c.in, started a handshake record, under the header deadline serve
// set. On success the client stream (rwc, c.in) is the *tls.Conn, and the
// first byte the client sent inside it is returned. A failed handshake is
// logged and counted as one access line.
func (c *conn) startTLS() (byte, error) {
	tc := tls.Server(&replayConn{Conn: c.raw, first: recordTypeHandshake}, c.srv.tls)
	c.rwc, c.in.conn, c.tls = tc, tc, true
	err := tc.Handshake()
	if err == nil {
		var n int
		n, err = tc.Read(c.in.buf[:1])
		if n == 1 {
			return c.in.buf[0], nil
		}
		// A client that closed cleanly after its handshake (a preconnect
		// never used) is no failure, as on a plain connection.
		c.srv.log.Debug("TLS connection closed before its first byte",
			zap.String("client", c.clientAddr()), zap.Error(err))
		if err == nil {
			err = io.ErrNoProgress
		}
		return 0, err
	}
	e := c.newEntry(dial.ProtocolUnknown)
	e.result, e.err = resultTLSFailed, err
	if c.wasForced() {
		e.result = resultShutdown
	}
	c.logAccess(&e)
	return 0, err
}

// replayConn hands a TLS server the byte serve sniffed before reading on
// from the connection. Only the handshake's goroutine reads it.
type replayConn struct {
	net.Conn
	first    byte
	replayed bool
}

func (r *replayConn) Read(b []byte) (int, error) {
	if !r.replayed && len(b) > 0 {
		r.replayed = true
		b[0] = r.first
		return 1, nil
	}
	return r.Conn.Read(b)
}

var _ net.Conn = (*replayConn)(nil)
