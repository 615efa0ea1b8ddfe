package rotate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
)

// Defaults for zero Config fields.
const (
	DefaultRetries        = 2
	DefaultConnectTimeout = 10 * time.Second
	maxRetries            = 16
)

// Config configures a Pool. The zero value is usable: every field documents
// what its zero value means.
type Config struct {
	// Retries is how many more upstreams a request may try after the first
	// fails. Zero means DefaultRetries (2); a negative value means none.
	Retries int
	// ConnectTimeout bounds establishing one request through all its
	// attempts (connect, TLS and handshake with the upstream). Zero means
	// DefaultConnectTimeout (10s). Each attempt gets the remaining time
	// divided by the attempts left, so one silent upstream cannot use up the
	// budget of the ones after it; the last attempt gets all that remains.
	ConnectTimeout time.Duration
	// Rotate is how often a client moves to another upstream; the zero value
	// is per-request.
	Rotate Rotation
	// TLS is the base configuration for https:// upstreams (root CAs,
	// client certificates). Nil means the system roots. It is cloned, and
	// ServerName is set to each upstream's host; a session cache is added if
	// it has none.
	TLS *tls.Config
	// Resolver resolves targets for socks5:// upstreams (socks5h leaves that
	// to the upstream). Nil means net.DefaultResolver.
	Resolver *net.Resolver
	// MaxIdlePerUpstream bounds keep-alive connections kept per HTTP upstream
	// for forward requests. Zero means 8; negative keeps none.
	MaxIdlePerUpstream int
	// IdleTimeout closes kept connections unused for longer. Zero means 60s.
	IdleTimeout time.Duration
	// Logger receives pool-level events (reloads); never per request, which
	// the front ends' access log covers. Nil means no logging.
	Logger *zap.Logger
}

// ErrBadConfig is wrapped by Config.Validate failures.
var ErrBadConfig = errors.New("bad rotate config")

// Validate reports values the pool cannot honour.
func (c *Config) Validate() error {
	var errs []error
	if c.Retries > maxRetries {
		errs = append(errs, fmt.Errorf("%w: retries %d exceeds %d", ErrBadConfig, c.Retries, maxRetries))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: negative connect timeout", ErrBadConfig))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: negative idle timeout", ErrBadConfig))
	}
	if err := c.Rotate.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrBadConfig, err))
	}
	return errors.Join(errs...)
}

func (c *Config) attempts() int {
	switch {
	case c.Retries < 0:
		return 1
	case c.Retries == 0:
		return 1 + DefaultRetries
	default:
		return 1 + c.Retries
	}
}

func (c *Config) connectTimeout() time.Duration {
	if c.ConnectTimeout == 0 {
		return DefaultConnectTimeout
	}
	return c.ConnectTimeout
}
