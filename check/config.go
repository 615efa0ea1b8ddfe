package check

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/rotate"
)

// Defaults for zero Config fields.
const (
	DefaultConcurrency = 64
	DefaultTimeout     = 10 * time.Second
)

// ErrBadConfig is wrapped by Config.Validate failures.
var ErrBadConfig = errors.New("bad check config")

// Config configures a Checker. The zero value checks TCP reachability only
// (no judge), 64 entries at a time, 10s each.
type Config struct {
	// Judges (--judge) are judge URLs (http or https; `hopper judge` serves
	// one), in order of preference. Each entry's exit IP comes from the
	// first judge that answers through it: when a judge cannot be reached
	// through the upstream (refused, unreachable, denied, a proxy's 5xx) or
	// answers something that is not a judge report, the next one is tried.
	// Before the checks, every judge is fetched directly to learn this
	// host's own address (so that anonymity can tell a leak); judges that do
	// not answer directly are moved to the end of the order. Empty means no
	// judge: a check is then a TCP connect to the upstream, and Result has
	// no exit IP nor anonymity.
	Judges []string
	// Concurrency (--concurrency) bounds checks in flight. Zero means 64.
	Concurrency int
	// Timeout (--timeout) is each entry's budget: connecting, the handshake
	// and the judge's answer, across all judges tried. Zero means 10s. It
	// also bounds the direct judge fetches made before the checks.
	Timeout time.Duration
	// MinAnonymity (--min-anonymity), when set, marks working entries judged
	// less anonymous as OutcomeFiltered. It needs Judges.
	MinAnonymity rotate.Anonymity
	// MaxLatency (--max-latency), when positive, marks working entries
	// whose time to first byte (or connect time, without judges) exceeds it
	// as OutcomeFiltered.
	MaxLatency time.Duration
	// TLS is the base configuration for https:// upstreams and judges (root
	// CAs). Nil means the system roots.
	TLS *tls.Config
	// Logger receives judge trouble (Warn) and one record per check (Debug).
	// Nil means no logging.
	Logger *zap.Logger
}

// Validate reports values a Checker cannot honour.
func (c *Config) Validate() error {
	var errs []error
	for _, j := range c.Judges {
		if _, err := parseJudgeURL(j); err != nil {
			errs = append(errs, fmt.Errorf("%w: judge %q: %w", ErrBadConfig, rotate.SourceLabel(j), err))
		}
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("%w: negative concurrency", ErrBadConfig))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: negative timeout", ErrBadConfig))
	}
	if c.MaxLatency < 0 {
		errs = append(errs, fmt.Errorf("%w: negative max latency", ErrBadConfig))
	}
	if _, err := rotate.ParseAnonymity(c.anonymityName()); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrBadConfig, err))
	}
	if c.MinAnonymity != rotate.AnonymityUnknown && len(c.Judges) == 0 {
		errs = append(errs, fmt.Errorf("%w: a minimum anonymity needs a judge URL", ErrBadConfig))
	}
	return errors.Join(errs...)
}

// anonymityName is MinAnonymity's name, "invalid" when out of range.
func (c *Config) anonymityName() string {
	b, err := c.MinAnonymity.MarshalText()
	if err != nil {
		return "invalid"
	}
	return string(b)
}

func (c *Config) concurrency() int {
	if c.Concurrency == 0 {
		return DefaultConcurrency
	}
	return c.Concurrency
}

func (c *Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// grace is how far past its budget an entry's context lives, so that the
// steps inside (bounded by the budget itself) fail on their own deadline and
// are recorded as the upstream's timeout rather than cut short by the caller.
func grace(budget time.Duration) time.Duration {
	return min(max(budget/10, 50*time.Millisecond), time.Second)
}

// Budget is the longest a Run over n entries may take: the direct judge
// fetches, then ceil(n/Concurrency) rounds of one entry budget each.
func (c *Config) Budget(n int) time.Duration {
	t := c.timeout()
	per := t + grace(t)
	rounds := (n + c.concurrency() - 1) / c.concurrency()
	total := time.Duration(rounds) * per
	if len(c.Judges) > 0 {
		total += per
	}
	return total
}

// parseJudgeURL accepts an absolute http:// or https:// URL.
func parseJudgeURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want an absolute http:// or https:// URL")
	}
	return u, nil
}
