package mitm

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// Defaults for the zero values of Config.
const (
	DefaultConnectTimeout       = 10 * time.Second
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultSniffTimeout         = 3 * time.Second
	DefaultMaxLeaves            = 1024
	DefaultMaxIdentities        = 10000
	DefaultMaxCookiesPerJar     = 200
	DefaultCooldown             = 30 * time.Second
	DefaultMaxCooldown          = 10 * time.Minute
	DefaultForbiddenUntilRotate = 3
)

// ProfileRandom as Config.Profile (or the empty string) gives every new
// identity a profile drawn at random from the built-in ones.
const ProfileRandom = "random"

// ProfileMirror as Config.Profile (or a rule's) makes every request leave
// with the fingerprint of the client that sent it: its own ClientHello
// (copied with uTLS's Fingerprinter from the bytes it sent hopper), its own
// HTTP/2 preface, pseudo-header order and priorities, and its own headers
// in its own order. Identities still rotate per exit and keep their cookie
// jars; only the browser is the client's.
const ProfileMirror = "mirror"

// ErrInvalidConfig is wrapped by every error Config.Validate and New return.
var ErrInvalidConfig = errors.New("invalid mitm config")

// ErrUnknownProfile is wrapped (with ErrInvalidConfig) when a profile name is
// not one of Profiles().
var ErrUnknownProfile = errors.New("unknown profile")

// Config configures an Interceptor. The zero value of every optional field
// selects its documented default; negative durations are invalid.
type Config struct {
	// CA signs the leaf certificates shown to clients. Required.
	CA *CA
	// Dialer opens every origin connection, one dial.Request per
	// intercepted request (Protocol dial.ProtocolMITM, ConnID and Seq of the
	// client tunnel), so the pool's rotation applies inside a tunnel. It also
	// carries streams that turn out not to be TLS. Required.
	Dialer dial.Dialer
	// Logger receives one access-log line (Info, "tunnel", proto "mitm") per
	// intercepted request and Debug detail. Nil logs nothing.
	Logger *zap.Logger

	// Profile names the browser identity every new identity takes: a name
	// from Profiles() ("chrome", "firefox", "safari", "edge", "ios"), ""
	// or "random" for a random built-in profile per identity, or "mirror"
	// for the client's own fingerprint (ProfileMirror).
	Profile string
	// ProfileRules override Profile for the target hosts they match; the
	// first match wins. Each rule's Profile may also be "random".
	ProfileRules []ProfileRule

	// Hosts limits interception to target hosts matching one of these
	// patterns (a glob such as "*.example.com", or /regex/); empty means
	// every host. Skip exempts hosts even if Hosts matches. Streams out of
	// scope are left to the front end, which splices them untouched.
	Hosts []string
	Skip  []string

	// RootCAs verifies origin certificates; nil uses the system roots.
	RootCAs *x509.CertPool
	// InsecureOrigin turns origin certificate verification off. For testing
	// only: it lets anyone between hopper and the origin read and change
	// the traffic.
	InsecureOrigin bool

	// RequestsPerDial is how many consecutive requests of one intercepted
	// tunnel share one dial through the Dialer: 0 or 1 dials for every
	// request (per-request rotation, each request may leave through another
	// upstream), N > 1 re-dials every N requests (every-N), and a negative
	// value keeps one dial for the whole tunnel (per-connection). Requests
	// sharing a dial share its origin connection when the protocol allows.
	RequestsPerDial int

	// RotateOn429 gives the (upstream, site) pair a new identity (profile,
	// empty cookie jar, new origin connections) when the origin answers 429.
	RotateOn429 bool
	// RotateAfterRequests gives a pair a new identity after that many
	// requests; 0 never does.
	RotateAfterRequests int
	// ForbiddenUntilRotate is how many 403 answers in a row rotate a pair's
	// identity and are reported as an upstream failure. Default 3.
	ForbiddenUntilRotate int
	// Cooldown is how long a 429 without a usable Retry-After keeps requests
	// for that site off that upstream; MaxCooldown caps any Retry-After.
	// Defaults 30s and 10m.
	Cooldown    time.Duration
	MaxCooldown time.Duration
	// OnBan, if set, is told when an upstream's identity for a site was
	// rotated after repeated 403s, so the caller may count it against the
	// upstream. It must not block.
	OnBan func(upstream, site string, err error)
	// Observer is told about every intercepted request and identity
	// rotation, for metrics. Nil observes nothing.
	Observer Observer

	// MaxLeaves bounds the leaf certificate cache (default 1024),
	// MaxIdentities the identity store (default 10000, least recently used
	// evicted), MaxCookiesPerJar each identity's cookie jar (default 200,
	// oldest evicted).
	MaxLeaves        int
	MaxIdentities    int
	MaxCookiesPerJar int

	// Shared, if set, keeps every identity (profile name and cookies, not
	// request counts or cool-downs) in a store other instances share, under
	// identity/<upstream>/<site>, so that instances behind one load
	// balancer show each site one identity per upstream. A new origin
	// connection reads its pair's record (concurrent ones share the read),
	// taking up a pair this instance does not hold yet, another instance's
	// rotation, and cookies set through other instances; a response that
	// sets cookies, and a rotation, write it back. Of concurrent changes
	// the later cookie (per cookie) and the later rotation win. Each call
	// waits at most the store's own timeout; when the store cannot be
	// reached, identities stay local until it can. Nil keeps identities in
	// this process only.
	Shared SharedStore
	// SharedTTL is how long an identity's record lives in Shared after it
	// was last written (default 24h); records in use are written again
	// half way.
	SharedTTL time.Duration

	// PassClientCookies sends the client's own Cookie header after the
	// identity's cookies. Off by default: a client that sees responses from
	// several identities would otherwise carry cookies across them.
	PassClientCookies bool

	// HTTP2 starts HTTP/2 on origin connections whose ALPN selected h2. Nil
	// uses hopper's own client, which sends the profile's connection
	// preface, pseudo-header order, header order and priorities.
	HTTP2 HTTP2Client

	// ConnectTimeout bounds each dial plus origin TLS handshake (default
	// 10s); HandshakeTimeout the client's TLS handshake (default 10s);
	// IdleTimeout an idle client connection, origin connection or upgraded
	// stream (default 5m); SniffTimeout how long a stream may stay silent
	// before it is treated as not TLS and spliced (default 3s).
	ConnectTimeout   time.Duration
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	SniffTimeout     time.Duration
}

// ProfileRule picks a profile for target hosts matching Host.
type ProfileRule struct {
	// Host is a glob or /regex/, as for Config.Hosts.
	Host string `yaml:"host"`
	// Profile is a profile name or "random".
	Profile string `yaml:"profile"`
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

// ValidateOptions is Validate without the CA and Dialer checks: it checks
// what comes from flags and files (profiles, rules, patterns, limits), so a
// command line can be vetted before the CA is loaded.
func (c *Config) ValidateOptions() error {
	_, err := c.compileOptions()
	return err
}

// compiled is the parsed form of the parts of Config that need parsing.
type compiled struct {
	scope    scope
	profiles profileChooser
}

func (c *Config) compile() (compiled, error) {
	switch {
	case c.CA == nil:
		return compiled{}, fmt.Errorf("%w: CA is required", ErrInvalidConfig)
	case c.Dialer == nil:
		return compiled{}, fmt.Errorf("%w: Dialer is required", ErrInvalidConfig)
	}
	return c.compileOptions()
}

func (c *Config) compileOptions() (compiled, error) {
	var out compiled
	switch {
	case c.ConnectTimeout < 0, c.HandshakeTimeout < 0, c.IdleTimeout < 0, c.SniffTimeout < 0,
		c.Cooldown < 0, c.MaxCooldown < 0, c.SharedTTL < 0:
		return out, fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	case c.RotateAfterRequests < 0, c.ForbiddenUntilRotate < 0, c.MaxLeaves < 0,
		c.MaxIdentities < 0, c.MaxCookiesPerJar < 0:
		return out, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	var err error
	if out.scope, err = newScope(c.Hosts, c.Skip); err != nil {
		return out, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if out.profiles, err = newProfileChooser(c.Profile, c.ProfileRules); err != nil {
		return out, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return out, nil
}

// withDefaults returns c with every zero value replaced by its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.SniffTimeout, DefaultSniffTimeout)
	def(&c.Cooldown, DefaultCooldown)
	def(&c.MaxCooldown, DefaultMaxCooldown)
	def(&c.SharedTTL, DefaultSharedTTL)
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&c.MaxLeaves, DefaultMaxLeaves)
	defInt(&c.MaxIdentities, DefaultMaxIdentities)
	defInt(&c.MaxCookiesPerJar, DefaultMaxCookiesPerJar)
	defInt(&c.ForbiddenUntilRotate, DefaultForbiddenUntilRotate)
	if c.RequestsPerDial == 0 {
		c.RequestsPerDial = 1
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}
