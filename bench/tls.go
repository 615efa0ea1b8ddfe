package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/hopper-proxy/hopper/judge"
)

// The HTTPS scenario measures what TLS costs through each column: the
// client speaks TLS 1.3 to the HTTPS origin through a tunnel. Through plain
// tunnels (direct, hopper, chained, peers) TLS is end to end and the proxy
// only relays it; through the MITM column hopper terminates the client's
// TLS with a leaf of its own CA and makes a second TLS connection to the
// origin with a browser ClientHello, which is the price of interception.

// originCert makes the HTTPS origin's self-signed certificate for
// 127.0.0.1; it doubles as the root the client trusts for it.
func originCert() (tls.Certificate, *x509.Certificate, error) {
	cert, err := judge.SelfSigned(time.Now(), "127.0.0.1")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, cert.Leaf, nil
}

// newHTTPSClient is an httpClient whose connection is a tunnel along r to
// the HTTPS origin with TLS on top. Through a route that intercepts, the
// origin's own certificate must not arrive; through any other, only it may.
func newHTTPSClient(r route, o *origins, roots *x509.CertPool) *httpClient {
	target := o.httpsAddr()
	// No ALPN: the request is HTTP/1.1 whatever the far side would prefer.
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return &httpClient{
		what: "https",
		open: func(ctx context.Context) (net.Conn, error) {
			raw, err := r.dial(ctx, target)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, cfg)
			hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				_ = raw.Close()
				return nil, fmt.Errorf("%w: TLS: %w", ErrHandshake, err)
			}
			if got := tc.ConnectionState().PeerCertificates[0]; got.Equal(o.cert) == r.intercepts {
				_ = raw.Close()
				if r.intercepts {
					return nil, fmt.Errorf("%w: the proxy did not intercept TLS (the origin's own certificate arrived)", ErrHandshake)
				}
				return nil, fmt.Errorf("%w: a certificate other than the origin's arrived (%s)", ErrHandshake, got.Subject)
			}
			return tc, nil
		},
		request: []byte("GET /1k HTTP/1.1\r\nHost: " + target + "\r\nUser-Agent: hopper-bench\r\n\r\n"),
	}
}

// httpsRequests sends GETs for d from conns keep-alive HTTPS clients.
func httpsRequests(ctx context.Context, o *origins, r route, roots *x509.CertPool, conns int, d time.Duration) forwardResult {
	clients := make([]*httpClient, conns)
	for i := range clients {
		clients[i] = newHTTPSClient(r, o, roots)
	}
	res := closedLoop(ctx, conns, d, func(ctx context.Context, w int) error {
		return clients[w].get(ctx)
	})
	out := forwardResult{rateResult: res}
	for _, c := range clients {
		out.conns += c.reconnects
		c.reset()
	}
	return out
}

// httpsConnections opens, for d, new HTTPS connections from concurrency
// clients: tunnel, full TLS handshake (no resumption), one GET, close.
func httpsConnections(ctx context.Context, o *origins, r route, roots *x509.CertPool, concurrency int, d time.Duration) rateResult {
	return closedLoop(ctx, concurrency, d, func(ctx context.Context, _ int) error {
		c := newHTTPSClient(r, o, roots)
		defer c.reset()
		return c.try(ctx)
	})
}
