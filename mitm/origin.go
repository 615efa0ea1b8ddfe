package mitm

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	utls "github.com/refraction-networking/utls"
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

var _ OriginConn = (*h1Conn)(nil)

// originTLS runs the origin handshake on raw with p's ClientHello (its
// HelloID, or the spec HelloSpec builds). serverName is sent as SNI (unless
// an IP) and verified against the certificate. When http1Only is set
// (WebSocket upgrades) the ALPN extension offers only http/1.1, as a
// browser does for a WebSocket connection; otherwise it offers what p's
// browser offers, h2 included. ctx bounds the handshake.
func (ic *Interceptor) originTLS(ctx context.Context, raw net.Conn, p *Profile, serverName string, http1Only bool) (*utls.UConn, error) {
	cfg := &utls.Config{
		ServerName:         serverName,
		RootCAs:            ic.cfg.RootCAs,
		InsecureSkipVerify: ic.cfg.InsecureOrigin,
	}
	var uc *utls.UConn
	if http1Only || p.HelloSpec != nil {
		spec, err := p.helloSpec()
		if err != nil {
			return nil, fmt.Errorf("%w: profile %s: %w", ErrOriginTLS, p.Name, err)
		}
		if http1Only {
			for _, ext := range spec.Extensions {
				if alpn, ok := ext.(*utls.ALPNExtension); ok {
					alpn.AlpnProtocols = []string{"http/1.1"}
				}
			}
		}
		uc = utls.UClient(raw, cfg, utls.HelloCustom)
		if err := uc.ApplyPreset(spec); err != nil {
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
