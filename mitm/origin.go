package mitm

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	utls "github.com/refraction-networking/utls"
	"golang.org/x/net/http2"
)

// ErrOriginCertificate is wrapped when the origin's certificate does not
// verify; the client gets 502 naming the reason.
var ErrOriginCertificate = errors.New("origin certificate is not valid")

// ErrOriginTLS is wrapped when the TLS handshake with the origin fails for
// any other reason.
var ErrOriginTLS = errors.New("TLS handshake with the origin failed")

// OriginConn carries requests to one origin over one established
// connection. RoundTrip's response body must be closed; the connection may
// take the next request once CanTakeRequest says so (for HTTP/1.1, after the
// previous body was read to its end and closed).
type OriginConn interface {
	RoundTrip(req *http.Request) (*http.Response, error)
	// CanTakeRequest reports whether a new request may start now.
	CanTakeRequest() bool
	// Close closes the connection, failing requests in flight.
	Close() error
}

// HTTP2Client starts HTTP/2 on an origin connection whose ALPN selected h2.
// conn has finished its TLS handshake; p is the identity's profile, for a
// client that shapes its connection preface and header order like the
// browser. The returned OriginConn owns conn.
type HTTP2Client interface {
	NewConn(conn net.Conn, p *Profile) (OriginConn, error)
}

// HTTP2ClientFunc adapts a function to HTTP2Client.
type HTTP2ClientFunc func(conn net.Conn, p *Profile) (OriginConn, error)

// NewConn calls f.
func (f HTTP2ClientFunc) NewConn(conn net.Conn, p *Profile) (OriginConn, error) { return f(conn, p) }

// xnetHTTP2 is the default HTTP2Client: golang.org/x/net/http2's ClientConn.
// Its SETTINGS, window sizes and pseudo-header order are Go's, not the
// browser's.
type xnetHTTP2 struct{ t *http2.Transport }

func newXNetHTTP2(idle time.Duration) *xnetHTTP2 {
	return &xnetHTTP2{t: &http2.Transport{
		DisableCompression: true, // the profile's Accept-Encoding goes as is
		IdleConnTimeout:    idle,
		ReadIdleTimeout:    30 * time.Second,
		PingTimeout:        15 * time.Second,
	}}
}

func (x *xnetHTTP2) NewConn(conn net.Conn, _ *Profile) (OriginConn, error) {
	//lint:ignore SA1019 the connection is established (uTLS) and owned by the caller, which http.Transport cannot take.
	cc, err := x.t.NewClientConn(conn)
	if err != nil {
		return nil, err
	}
	return xnetConn{cc}, nil
}

type xnetConn struct{ cc *http2.ClientConn }

var (
	_ HTTP2Client = (*xnetHTTP2)(nil)
	_ OriginConn  = xnetConn{}
	_ OriginConn  = (*h1Conn)(nil)
)

func (c xnetConn) RoundTrip(req *http.Request) (*http.Response, error) { return c.cc.RoundTrip(req) }
func (c xnetConn) CanTakeRequest() bool                                { return c.cc.CanTakeNewRequest() }
func (c xnetConn) Close() error                                        { return c.cc.Close() }

// originTLS runs the origin handshake on raw with p's ClientHello. serverName
// is sent as SNI (unless an IP) and verified against the certificate. When
// http1Only is set (WebSocket upgrades) the ALPN extension offers only
// http/1.1, as a browser does for a WebSocket connection; otherwise it
// offers what p's browser offers, h2 included. ctx bounds the handshake.
func (ic *Interceptor) originTLS(ctx context.Context, raw net.Conn, p *Profile, serverName string, http1Only bool) (*utls.UConn, error) {
	cfg := &utls.Config{
		ServerName:         serverName,
		RootCAs:            ic.cfg.RootCAs,
		InsecureSkipVerify: ic.cfg.InsecureOrigin,
	}
	var uc *utls.UConn
	if http1Only {
		spec, err := utls.UTLSIdToSpec(p.HelloID)
		if err != nil {
			return nil, fmt.Errorf("%w: profile %s: %w", ErrOriginTLS, p.Name, err)
		}
		for _, ext := range spec.Extensions {
			if alpn, ok := ext.(*utls.ALPNExtension); ok {
				alpn.AlpnProtocols = []string{"http/1.1"}
			}
		}
		uc = utls.UClient(raw, cfg, utls.HelloCustom)
		if err := uc.ApplyPreset(&spec); err != nil {
			return nil, fmt.Errorf("%w: profile %s: %w", ErrOriginTLS, p.Name, err)
		}
	} else {
		uc = utls.UClient(raw, cfg, p.HelloID)
	}
	if err := uc.HandshakeContext(ctx); err != nil {
		_ = uc.Close()
		return nil, classifyTLSError(err)
	}
	return uc, nil
}

// classifyTLSError wraps a failed origin handshake with ErrOriginCertificate
// when the certificate was at fault, else ErrOriginTLS; timeouts keep their
// timeout nature for dial.Classify.
func classifyTLSError(err error) error {
	var (
		verr *utls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		ierr x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &uerr), errors.As(err, &herr), errors.As(err, &ierr):
		return fmt.Errorf("%w: %w", ErrOriginCertificate, err)
	}
	return fmt.Errorf("%w: %w", ErrOriginTLS, err)
}
