package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// Defaults for the zero values of Config's limits.
const (
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultConnectTimeout = 10 * time.Second
	DefaultMaxConns       = 8192
	DefaultMaxHeadBytes   = 64 << 10

	DefaultMaxConnsPerClient = 256

	// DefaultResponseHeaderTimeout is short next to DefaultIdleTimeout: an
	// origin or upstream that took a request and went silent that long is
	// seldom going to answer.
	DefaultResponseHeaderTimeout = 30 * time.Second

	minHeadBytes = 1 << 10
	maxHeadBytes = 1 << 20
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("invalid tunnel config")

// FailureReporter is told of an upstream's own failures that show only after
// its dial succeeded, so they count towards its health like a failed dial:
// today, a forward request it accepted and then left unanswered for
// Config.ResponseHeaderTimeout. upstream is dial.Outbound.Upstream. It
// reports whether it knows such an upstream. *rotate.Router implements it.
type FailureReporter interface {
	ReportFailure(ctx context.Context, upstream string, err error) bool
}

// StreamHandler serves a connection whose first byte tunnel already read.
// tunnel leaves its header deadline set on conn (the handler clears it after its handshake).
// The handler calls done exactly once when it has finished with conn, and
// tunnel then closes conn. done may be called after ServeStream returned,
// from another goroutine: a tunnel relayed on goroutines of its own lets
// the handshake's goroutine (and the stack it grew) go.
//
// conn is the raw connection the listener accepted (a *net.TCPConn for TCP
// listeners), never a wrapper, so the handler keeps the splice path; on a
// connection that came in over TLS (Config.TLS) it is the *tls.Conn, and
// that type is how the handler tells such a client apart (the "tls" field
// of its access-log lines, as on tunnel's own). ctx is cancelled when the
// Server is stopped forcibly.
type StreamHandler interface {
	ServeStream(ctx context.Context, conn net.Conn, first byte, done func())
}

// StreamHandlerFunc adapts a function to StreamHandler.
type StreamHandlerFunc func(ctx context.Context, conn net.Conn, first byte, done func())

// ServeStream calls f.
func (f StreamHandlerFunc) ServeStream(ctx context.Context, conn net.Conn, first byte, done func()) {
	f(ctx, conn, first, done)
}

// Config configures a Server. The zero value of every limit selects its
// default; negative values are invalid.
type Config struct {
	// Dialer opens every outbound connection (CONNECT tunnels and forward
	// requests alike). Required.
	Dialer dial.Dialer

	// Auth checks the Proxy-Authorization credentials of every HTTP request.
	// Nil turns authentication off: any username is accepted and only parsed
	// for its session and country controls.
	Auth dial.Authenticator

	// SOCKS serves connections whose first byte is 0x04 or 0x05. Nil refuses
	// them: such a connection is closed without a reply.
	SOCKS StreamHandler

	// TLS, if set, makes the listener an HTTPS proxy too: a connection
	// whose first byte starts a TLS handshake record (0x16) is served TLS
	// with this config, and HTTP or SOCKS inside it exactly as on a plain
	// connection; plain connections on the same listener are served as
	// before. The handshake counts against HeaderTimeout. Only "http/1.1"
	// is offered over ALPN (NextProtos is replaced). It needs a certificate
	// (Certificates, GetCertificate or GetConfigForClient). Nil serves
	// plain connections only: a TLS handshake is then read as a malformed
	// HTTP request.
	TLS *tls.Config

	// Interceptor, if set, is asked about every CONNECT and serves the
	// tunnels it takes (TLS interception) instead of a splice to the
	// target. Nil splices every tunnel.
	Interceptor Interceptor

	// Logger receives one access-log line (Info, message "tunnel") per
	// CONNECT tunnel and per forward request, and Debug detail about refused
	// connections. Nil logs nothing.
	Logger *zap.Logger

	// Observer is told when each CONNECT tunnel and forward request starts
	// and how it ended (the access-log line's fields), for metrics. Nil
	// observes nothing.
	Observer dial.Observer

	// HeaderTimeout bounds reading a request head, from the first byte a
	// connection sends (or, on a kept-alive connection, from the first byte
	// of the next request) until the head is complete. Default 10s.
	HeaderTimeout time.Duration

	// IdleTimeout ends a tunnel when no byte moved either way for this long,
	// closes a kept-alive client connection that sends no next request, and
	// bounds each wait for an origin's response. Default 5m.
	IdleTimeout time.Duration

	// ResponseHeaderTimeout bounds the wait for a forward request's
	// response head, from when the request (body included) was sent. When
	// it passes the outbound connection is closed, Failures hears of the
	// upstream, and the client gets 504 (Hopper-Error: timeout), unless
	// nothing reached it and the request is a bodiless GET, HEAD, OPTIONS or
	// TRACE: that is sent once more through the Dialer, with
	// dial.Request.Avoid naming the upstream that stalled so that the retry
	// leaves through another one if there is any. IdleTimeout bounds it
	// too. Default 30s.
	ResponseHeaderTimeout time.Duration

	// Failures, if set, is told of upstreams that stalled a forward request
	// (see ResponseHeaderTimeout). Nil tells no one.
	Failures FailureReporter

	// ConnectTimeout bounds each Dialer.Dial (all of its attempts). Default 10s.
	ConnectTimeout time.Duration

	// MaxConns bounds the connections open at once; a connection accepted
	// over the limit is closed at once, leaving existing ones untouched.
	// Default 8192.
	MaxConns int

	// MaxConnsPerClient bounds the connections open at once from one client
	// IPv4 address or IPv6 /64 (tunnels, kept-alive connections and heads
	// still being read alike), so that one address cannot take every slot
	// of MaxConns. A connection over the limit is closed at once, without a
	// reply. Connections from 127.0.0.1 and ::1, the machine's own clients
	// (typically one scraper with many workers), are not limited; the rest
	// of 127.0.0.0/8 is. Default 256.
	MaxConnsPerClient int

	// MaxHeadBytes bounds a request or response head, request line and
	// headers included; a larger request gets 400. Default 64 KiB; when set,
	// between 1 KiB and 1 MiB.
	MaxHeadBytes int
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.Dialer == nil:
		return fmt.Errorf("%w: Dialer is required", ErrInvalidConfig)
	case c.HeaderTimeout < 0:
		return fmt.Errorf("%w: negative HeaderTimeout %v", ErrInvalidConfig, c.HeaderTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("%w: negative IdleTimeout %v", ErrInvalidConfig, c.IdleTimeout)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("%w: negative ConnectTimeout %v", ErrInvalidConfig, c.ConnectTimeout)
	case c.ResponseHeaderTimeout < 0:
		return fmt.Errorf("%w: negative ResponseHeaderTimeout %v", ErrInvalidConfig, c.ResponseHeaderTimeout)
	case c.MaxConns < 0:
		return fmt.Errorf("%w: negative MaxConns %d", ErrInvalidConfig, c.MaxConns)
	case c.MaxConnsPerClient < 0:
		return fmt.Errorf("%w: negative MaxConnsPerClient %d", ErrInvalidConfig, c.MaxConnsPerClient)
	case c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil:
		return fmt.Errorf("%w: TLS has no certificate", ErrInvalidConfig)
	case c.MaxHeadBytes != 0 && (c.MaxHeadBytes < minHeadBytes || c.MaxHeadBytes > maxHeadBytes):
		return fmt.Errorf("%w: MaxHeadBytes %d outside [%d, %d]", ErrInvalidConfig, c.MaxHeadBytes, minHeadBytes, maxHeadBytes)
	}
	return nil
}

// withDefaults returns c with every zero limit replaced by its default.
func (c Config) withDefaults() Config {
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if c.MaxHeadBytes == 0 {
		c.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}
