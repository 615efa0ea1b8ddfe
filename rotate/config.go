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
	DefaultRetries                 = 2
	DefaultConnectTimeout          = 10 * time.Second
	DefaultFailuresUntilQuarantine = 3
	DefaultQuarantine              = 5 * time.Minute
	DefaultMaxQuarantine           = time.Hour
	DefaultMaxQueueWait            = 10 * time.Second
	DefaultCursorBlock             = 16384
	DefaultReserveTTL              = 30 * time.Second
	DefaultSyncInterval            = 5 * time.Second
	maxRetries                     = 16
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
	// Policy chooses among healthy upstreams; PolicyDefault means round
	// robin. A pool's PoolSpec.Policy and a rule's Rule.Policy override it.
	Policy Policy

	// FailuresUntilQuarantine (--failures-until-quarantine) is how many
	// consecutive attempts failing through the upstream's own fault (cannot
	// connect, TLS to the proxy, 407, 5xx of its own, handshake garbage,
	// timeout) take it out of service. Target faults (refused, unreachable,
	// name not found as reported through it), its ruleset denying one
	// target, and clients going away never count. Zero means 3; negative
	// never quarantines.
	FailuresUntilQuarantine int
	// Quarantine (--quarantine) is how long a first offence keeps an
	// upstream out of service. Zero means 5m. An upstream quarantined again
	// within MaxQuarantine of its release stays out twice as long as the
	// time before, up to MaxQuarantine. A probe that finds it working
	// releases it early; once released it is on probation: its next failure
	// of its own quarantines it again.
	Quarantine time.Duration
	// MaxQuarantine caps the doubling. Zero means 1h, or Quarantine if that
	// is longer.
	MaxQuarantine time.Duration

	// SessionTTL (--session-ttl) is how long a sticky session
	// (dial.Request.Session) keeps its upstream after its last successful
	// connection. Zero means 10m; negative turns the table off (sessions
	// still get a stable provider session id for templates, but not a
	// stable upstream).
	SessionTTL time.Duration
	// MaxSessions bounds the sticky-session table; the least recently used
	// session is forgotten first. Zero means 65536.
	MaxSessions int

	// MaxQueueWait (--max-queue-wait) bounds how long a request waits for
	// an upstream that a rule's min-interval keeps busy for its target
	// host; when no upstream frees up within it, the request fails at once
	// with ErrQueueWait (503 no-upstream). Zero means 10s; negative never
	// waits.
	MaxQueueWait time.Duration

	// Store (--state) is the state the pool shares with other hopper
	// instances: with a shared store (RedisStore) the round-robin cursor,
	// consecutive failures and quarantines, sticky sessions, min-interval
	// slots and reservations hold across every instance on it. Nil means a
	// MemoryStore of the pool's own (one process, as without --state).
	// The pool never closes it: its opener does.
	Store Store
	// Name names the pool inside the store's keys; "" means "default".
	// Router sets it to the pool's name. Instances sharing a store share a
	// pool's state by its name.
	Name string
	// CursorBlock bounds how many round-robin positions an instance takes
	// from a shared store's cursor at once (INCRBY). Blocks are sized to
	// last about 10ms at the current pick rate, from 1 up to this bound, so
	// light traffic is interleaved exactly across instances and heavy
	// traffic costs about 100 store calls a second. Zero means 16384.
	CursorBlock int
	// ReserveTTL is how long a reservation (a rule with reserve: true)
	// lasts without renewal: Pool.Sync (run by Router.Run) renews live
	// tunnels' reservations every third of it, so it only bounds how long
	// the reservations of an instance that died keep their exits. Zero
	// means 30s.
	ReserveTTL time.Duration
	// SyncInterval is how often Pool.Sync compares the pool's health with a
	// shared store's, besides applying other instances' changes as they
	// are published. Zero means 5s.
	SyncInterval time.Duration

	// Clock tells time and waits; nil means the system clock. Tests pass a
	// fake one.
	Clock Clock

	// Logger receives pool-level events (reloads, quarantine and release,
	// once per change); never per request, which the front ends' access log
	// covers. Nil means no logging.
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
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrBadConfig, err))
	}
	if c.Quarantine < 0 || c.MaxQuarantine < 0 {
		errs = append(errs, fmt.Errorf("%w: negative quarantine", ErrBadConfig))
	}
	if c.Quarantine > 0 && c.MaxQuarantine > 0 && c.MaxQuarantine < c.Quarantine {
		errs = append(errs, fmt.Errorf("%w: max quarantine %v shorter than quarantine %v", ErrBadConfig, c.MaxQuarantine, c.Quarantine))
	}
	if c.CursorBlock < 0 || c.ReserveTTL < 0 || c.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: negative cursor block, reserve TTL or sync interval", ErrBadConfig))
	}
	if c.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("%w: negative session table size", ErrBadConfig))
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

func (c *Config) quarantine() (base, ceiling time.Duration) {
	base = c.Quarantine
	if base == 0 {
		base = DefaultQuarantine
	}
	ceiling = c.MaxQuarantine
	if ceiling == 0 {
		ceiling = max(DefaultMaxQuarantine, base)
	}
	return base, ceiling
}

func (c *Config) threshold() int32 {
	switch {
	case c.FailuresUntilQuarantine < 0:
		return 0
	case c.FailuresUntilQuarantine == 0:
		return DefaultFailuresUntilQuarantine
	default:
		return int32(min(c.FailuresUntilQuarantine, 1<<20))
	}
}

func (c *Config) sessionTable() *sessions {
	if c.SessionTTL < 0 {
		return nil
	}
	ttl, n := c.SessionTTL, c.MaxSessions
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	if n == 0 {
		n = DefaultMaxSessions
	}
	return newSessions(ttl, n)
}

func (c *Config) maxQueueWait() time.Duration {
	switch {
	case c.MaxQueueWait < 0:
		return 0
	case c.MaxQueueWait == 0:
		return DefaultMaxQueueWait
	default:
		return c.MaxQueueWait
	}
}
