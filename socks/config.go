package socks

import (
	"errors"
	"fmt"
	"time"

	"github.com/things-go/go-socks5"
	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultConnectTimeout = 10 * time.Second
)

// ErrInvalidConfig is wrapped by Config.Validate and New.
var ErrInvalidConfig = errors.New("socks: invalid config")

// Config configures a Server. The zero value of every optional field has a
// documented meaning; Dialer is required.
type Config struct {
	// Dialer opens the outbound connection for every CONNECT. Required.
	Dialer dial.Dialer
	// Auth checks credentials. Nil turns authentication off: every username
	// (SOCKS5) or user id (SOCKS4) is accepted and only parsed for its
	// session and country controls. When set, SOCKS5 clients must
	// authenticate with username/password and SOCKS4 clients, which cannot
	// send a password, are rejected.
	Auth dial.Authenticator
	// IdleTimeout ends a tunnel after nothing moved in either direction for
	// this long. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ConnectTimeout bounds establishing the outbound connection (the
	// Dialer's context). Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Logger receives one Info line "tunnel" per stream. Nil discards.
	Logger *zap.Logger
	// Observer is told when each stream starts and how it ended (the
	// access-log line's fields), for metrics. Nil observes nothing.
	Observer dial.Observer
	// Interceptor, if set, is asked about every CONNECT and serves the
	// streams it takes (TLS interception) instead of a splice to the
	// target. Nil splices every stream.
	Interceptor Interceptor
}

// Validate reports a missing Dialer or a negative duration.
func (c *Config) Validate() error {
	switch {
	case c.Dialer == nil:
		return fmt.Errorf("%w: Dialer is required", ErrInvalidConfig)
	case c.IdleTimeout < 0:
		return fmt.Errorf("%w: IdleTimeout %v is negative", ErrInvalidConfig, c.IdleTimeout)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("%w: ConnectTimeout %v is negative", ErrInvalidConfig, c.ConnectTimeout)
	}
	return nil
}

// Server serves SOCKS4, SOCKS4a and SOCKS5 streams. It holds no per-connection
// state and starts no goroutines of its own, so one Server serves any number
// of connections concurrently and needs no shutdown.
type Server struct {
	cfg Config
	log *zap.Logger
	s5  *socks5.Server
}

// New validates cfg, applies its defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.s5 = s.newSOCKS5()
	return s, nil
}
