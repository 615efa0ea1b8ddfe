package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"

	"github.com/hopper-proxy/hopper/dial"
)

// Interceptor is an optional stage that takes CONNECT tunnels over instead
// of splicing them (hopper's TLS interception). tunnel asks it about every
// CONNECT; for a stream it takes, tunnel answers 200 without dialing and
// hands it the raw connection.
type Interceptor interface {
	// Intercept reports whether the tunnel req describes (Protocol
	// ProtocolHTTPConnect, Target, the client's controls and ConnID) is to
	// be handed to ServeIntercepted. It must not block.
	Intercept(req *dial.Request) bool
	// ServeIntercepted serves the tunnel after the client was told 200.
	// conn is the raw client connection, or the *tls.Conn of a client that
	// came in over TLS (Config.TLS); tunnel closes it afterwards.
	// early the bytes the client sent past its CONNECT head. It dials
	// whatever it needs itself. ctx is cancelled when the Server is stopped
	// forcibly. up and down count the bytes read from and written to conn;
	// err is nil when the stream ended normally.
	ServeIntercepted(ctx context.Context, conn net.Conn, early []byte, req *dial.Request) (up, down int64, err error)
}

// upstreamIntercepted is the access-log upstream of an intercepted tunnel:
// the interceptor logs each request inside it with its own upstream.
const upstreamIntercepted = "mitm"

// intercept hands the CONNECT tunnel to the Interceptor when it takes it,
// and reports whether it did; the access line is then logged.
func (c *conn) intercept(e *accessEntry, target string, id identity) bool {
	ic := c.srv.cfg.Interceptor
	if ic == nil {
		return false
	}
	req := &dial.Request{
		Target:   target,
		Protocol: dial.ProtocolHTTPConnect,
		Client:   c.rwc.RemoteAddr(),
		User:     id.user,
		Session:  id.session,
		Country:  id.country,
		ConnID:   c.id,
	}
	if !ic.Intercept(req) {
		return false
	}
	e.upstream = upstreamIntercepted
	if _, err := io.WriteString(c.rwc, connectEstablished); err != nil {
		e.result, e.err = resultClientClosed, err
		c.logAccess(e)
		return true
	}
	e.status = 200
	early := bytes.Clone(c.in.buffered())
	c.releaseBuffers()
	up, down, err := ic.ServeIntercepted(c.ctx, c.rwc, early, req)
	e.up, e.down = up, down
	e.result, e.err = resultOK, err
	if err != nil {
		e.result = resultInterrupted
	}
	if c.wasForced() {
		e.result = resultShutdown
	}
	c.logAccess(e)
	return true
}
