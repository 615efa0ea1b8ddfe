package judge

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// wire is what the judge read off one connection before any HTTP server
// parsed it: the ClientHello (TLS port) and a capture of the request bytes.
type wire struct {
	hello    *fingerprint.ClientHello
	version  uint16 // negotiated TLS version
	protocol string // negotiated ALPN protocol
	h1       *fingerprint.HTTP1Capture
	h2       *fingerprint.HTTP2Capture
}

type wireKey struct{}

func withWire(ctx context.Context, w *wire) context.Context {
	return context.WithValue(ctx, wireKey{}, w)
}

func wireFrom(ctx context.Context) *wire {
	w, _ := ctx.Value(wireKey{}).(*wire)
	return w
}

// wireConn carries a connection's wire to the HTTP/1.1 server's ConnContext.
type wireConn struct {
	net.Conn
	wire *wire
}

// connContext is http.Server.ConnContext for connections that are wireConns.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if wc, ok := c.(*wireConn); ok {
		return withWire(ctx, wc.wire)
	}
	return ctx
}

// fill adds what w read off the wire about r to rep.
func (w *wire) fill(rep *Report, r *http.Request) {
	if w.hello != nil {
		rep.TLS = &TLSReport{
			JA4:        w.hello.JA4(),
			JA4R:       w.hello.JA4R(),
			ServerName: w.hello.ServerName,
			ALPN:       w.hello.ALPN,
			Version:    tls.VersionName(w.version),
			Protocol:   w.protocol,
		}
		if rep.TLS.ALPN == nil {
			rep.TLS.ALPN = []string{}
		}
	}
	var (
		head fingerprint.RequestHead
		ok   bool
	)
	switch {
	case w.h2 != nil:
		head, ok = w.h2.Claim(r)
		pre, _ := w.h2.Preface()
		rep.HTTP2 = &HTTP2Report{Akamai: pre.Akamai(), PseudoHeaderOrder: []string{}}
		if ok {
			rep.HTTP2.PseudoHeaderOrder = head.Pseudo
			rep.HTTP2.StreamID = head.StreamID
			if head.Priority != nil {
				rep.HTTP2.HeadersPriority = head.Priority.String()
			}
		}
	case w.h1 != nil:
		head, ok = w.h1.Claim(r)
	}
	if ok {
		rep.HeaderOrder = head.Names()
	}
}

// captureListener wraps every connection it accepts so that an HTTP/1.1
// capture sees its bytes: the plain port's header order.
type captureListener struct{ net.Listener }

func (l captureListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	capture := fingerprint.NewHTTP1Capture()
	return &wireConn{Conn: fingerprint.Tee(c, capture), wire: &wire{h1: capture}}, nil
}
