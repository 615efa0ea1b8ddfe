package rotate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults for zero ProberConfig fields.
const (
	DefaultProbeInterval    = time.Minute
	DefaultProbeTimeout     = 10 * time.Second
	DefaultProbeConcurrency = 16
)

// ProberConfig configures a Prober. The zero value probes every upstream
// with a TCP connect once a minute.
type ProberConfig struct {
	// URL (--probe-url), if set, is fetched through each upstream (GET,
	// http or https) instead of a bare TCP connect to the upstream. Any
	// HTTP answer counts as working, except, when the upstream is an HTTP
	// proxy handling a plain-http URL itself, the answers a proxy gives for
	// its own failures (407, 5xx). The URL should be reliable: while it is
	// down, every upstream is charged.
	URL string
	// Judge (--judge), if set, is a judge URL (`hopper judge` serves one):
	// each probe fetches it through the upstream instead of URL, and learns
	// the upstream's exit IP and anonymity. Each round first fetches it
	// directly to learn this host's own address; when that fails, the
	// round probes as if no judge were set.
	Judge string
	// Interval (--probe-interval) is the time between two probes of one
	// upstream. A round spreads its probes evenly over the interval, each at
	// a random point of its slot, so start-up does not stampede. Zero means
	// 1m; negative turns probing off (Run just waits).
	Interval time.Duration
	// Timeout bounds one probe. Zero means 10s.
	Timeout time.Duration
	// Concurrency bounds probes in flight. Zero means 16. When slow probes
	// fill it, the round waits, stretching past the interval.
	Concurrency int
	// RequireAnonymity, with a Judge, quarantines an upstream judged less
	// anonymous (AnonymityAnonymous: transparent ones; AnonymityElite:
	// anything but elite). Direct entries are exempt. Zero requires nothing.
	RequireAnonymity Anonymity
	// PinExitIP, with a Judge, quarantines an upstream whose exit IP differs
	// from the first one seen (and then pins the new one). Templated entries
	// and direct prefixes change exits by design and are exempt.
	PinExitIP bool
	// TLS is the base configuration for https probe and judge URLs. Nil
	// means the system roots.
	TLS *tls.Config
	// Logger receives judgements and probe-round trouble, once per change.
	// Nil means the pool's logger.
	Logger *zap.Logger
}

// Validate reports a config the prober cannot run with; a requirement that
// needs a judge without one is an error, not silently ignored.
func (c *ProberConfig) Validate() error {
	var errs []error
	for _, s := range []struct{ name, url string }{{"probe URL", c.URL}, {"judge URL", c.Judge}} {
		if s.url == "" {
			continue
		}
		if _, err := parseProbeURL(s.url); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrBadConfig, s.name, err))
		}
	}
	if c.Timeout < 0 || c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("%w: negative probe timeout or concurrency", ErrBadConfig))
	}
	if int(c.RequireAnonymity) >= len(anonymityNames) {
		errs = append(errs, fmt.Errorf("%w: %w: %d", ErrBadConfig, ErrBadAnonymity, c.RequireAnonymity))
	}
	if c.Judge == "" && (c.RequireAnonymity != AnonymityUnknown || c.PinExitIP) {
		errs = append(errs, fmt.Errorf("%w: requiring anonymity or a stable exit IP needs a judge URL", ErrBadConfig))
	}
	return errors.Join(errs...)
}

func parseProbeURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want an absolute http:// or https:// URL")
	}
	return u, nil
}

// Errors a probe records as an upstream's last error.
var (
	// ErrLeak: a judge saw the upstream leak (below RequireAnonymity).
	ErrLeak = errors.New("upstream leaks the client address or proxy headers")
	// ErrExitIPChanged: a judge saw another exit IP than the pinned one.
	ErrExitIPChanged = errors.New("upstream exit IP changed")
	// ErrBadJudgeReply: the judge's answer through the upstream was not a
	// judge report (a captive portal or an injecting proxy answered).
	ErrBadJudgeReply = errors.New("judge reply through the upstream is not a judge report")
)

// Prober checks a pool's upstreams in the background: it measures probe
// latency and success rate, charges failures like failed requests (so a dead
// upstream nobody uses is quarantined too), releases quarantined upstreams
// that answer again, and with a judge learns exit IPs and anonymity. It
// starts no goroutine until Run.
type Prober struct {
	pool   *Pool
	cfg    ProberConfig
	log    *zap.Logger
	clock  Clock
	target *url.URL // URL probe; nil: TCP connect
	judge  *url.URL
	direct *http.Client // fetches the judge without an upstream

	self      atomic.Pointer[[]netip.Addr] // this host's addresses as the judge saw them
	judgeDown atomic.Bool                  // last direct judge fetch failed

	// leases is the probe leases (shared store) this instance may hold, by
	// upstream id, for Run to release when it ends (probe_shared.go).
	leaseMu sync.Mutex
	leases  map[string]struct{}
}

// ProbeResult is the outcome of one probe.
type ProbeResult struct {
	Upstream *Upstream
	// Err is nil when the upstream worked.
	Err error
	// Skipped is set when there was nothing to probe (a direct entry
	// without a probe URL or judge).
	Skipped bool
	// Latency is the time to the answer (connect, or response headers).
	Latency time.Duration
	// Status is the HTTP status of a URL or judge probe.
	Status int
	// Report, ExitIP and Anonymity are the judge's findings.
	Report    *JudgeReport
	ExitIP    netip.Addr
	Anonymity Anonymity
}

// NewProber returns a prober for pool, or cfg.Validate's error.
func NewProber(pool *Pool, cfg ProberConfig) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pr := &Prober{pool: pool, cfg: cfg, log: cfg.Logger, clock: pool.clock}
	if pr.log == nil {
		pr.log = pool.log
	}
	if cfg.URL != "" {
		pr.target, _ = parseProbeURL(cfg.URL)
	}
	if cfg.Judge != "" {
		pr.judge, _ = parseProbeURL(cfg.Judge)
		pr.direct = &http.Client{
			Timeout: pr.timeout(),
			Transport: &http.Transport{
				Proxy: nil, DisableKeepAlives: true, TLSClientConfig: cfg.TLS,
				TLSHandshakeTimeout: pr.timeout(),
			},
		}
	}
	return pr, nil
}

func (pr *Prober) timeout() time.Duration {
	if pr.cfg.Timeout == 0 {
		return DefaultProbeTimeout
	}
	return pr.cfg.Timeout
}

func (pr *Prober) interval() time.Duration {
	if pr.cfg.Interval == 0 {
		return DefaultProbeInterval
	}
	return pr.cfg.Interval
}

func (pr *Prober) concurrency() int {
	if pr.cfg.Concurrency == 0 {
		return DefaultProbeConcurrency
	}
	return pr.cfg.Concurrency
}

// Run probes every upstream once per interval until ctx ends, then waits for
// the probes in flight and returns nil. Each round spreads its probes over
// the interval (one slot per upstream, a random point in each), runs at most
// Concurrency at once, and ends by releasing expired quarantines and
// refreshing the weighted policy's weights. With a shared store (--state
// redis://) the instances together probe each upstream once per interval:
// each takes an upstream's probe lease before probing it, skips the ones
// another instance holds and adopts what that instance's probes learned; a
// store that cannot be reached means probing everything locally. When ctx
// ends, Run releases the leases it holds before returning, so the others
// take those upstreams over in their next round; this waits at most about
// the store's own timeout when the store is unreachable.
func (pr *Prober) Run(ctx context.Context) error {
	if pr.cfg.Interval < 0 {
		<-ctx.Done()
		return nil
	}
	defer pr.releaseLeases(ctx)
	sem := make(chan struct{}, pr.concurrency())
	for {
		start := pr.clock.Now()
		pr.round(ctx, sem, start, nil)
		pr.endRound()
		if err := pr.clock.Sleep(ctx, start.Add(pr.interval()).Sub(pr.clock.Now())); err != nil {
			return nil
		}
	}
}

// ProbeAll probes every upstream of the pool now, Concurrency at a time, and
// returns the results in list order (for `hopper check`, and tests).
func (pr *Prober) ProbeAll(ctx context.Context) []ProbeResult {
	ups := pr.pool.Upstreams()
	results := make([]ProbeResult, len(ups))
	sem := make(chan struct{}, pr.concurrency())
	pr.round(ctx, sem, time.Time{}, results)
	pr.endRound()
	return results
}

// round probes the pool's upstreams. With a zero start it does not pace them;
// otherwise the i-th goes at a random point of the i-th of len(upstreams)
// equal slots of the interval. It returns when all have finished or ctx
// ended.
//
// A paced round on a shared store probes only the upstreams whose probe
// lease this instance holds, adopts the others' findings (probe_shared.go),
// and asks the judge for this host's address only before its first probe.
func (pr *Prober) round(ctx context.Context, sem chan struct{}, start time.Time, results []ProbeResult) {
	leased := !start.IsZero() && pr.pool.shared
	learnSelf := sync.OnceFunc(func() { pr.learnSelf(ctx) })
	if !leased {
		learnSelf()
	}
	ups := pr.pool.Upstreams()
	var wg sync.WaitGroup
	defer wg.Wait()
	var slot, ttl time.Duration
	if !start.IsZero() && len(ups) > 0 {
		slot = pr.interval() / time.Duration(len(ups))
	}
	if leased {
		ttl = pr.leaseTTL(len(ups))
		pr.forgetLeases(ups)
		pr.adoptShared(ctx, ups)
	}
	for i, u := range ups {
		if slot > 0 {
			at := start.Add(time.Duration(i)*slot + time.Duration(rand.Int64N(int64(slot))))
			if pr.clock.Sleep(ctx, at.Sub(pr.clock.Now())) != nil {
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if leased && pr.hasProbe(u) && !pr.holdsLease(ctx, u, ttl) {
				pr.adoptOne(ctx, u)
				return
			}
			learnSelf()
			r := pr.Probe(ctx, u)
			if results != nil {
				results[i] = r
			}
		}()
	}
}

func (pr *Prober) endRound() {
	pr.pool.releaseExpired(pr.clock.Now())
	pr.pool.RefreshWeights()
}

// learnSelf fetches the judge directly to learn this host's own address.
func (pr *Prober) learnSelf(ctx context.Context) {
	if pr.judge == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, pr.timeout())
	defer cancel()
	rep, err := pr.fetchDirect(ctx)
	if err != nil {
		if !pr.judgeDown.Swap(true) && ctx.Err() == nil {
			pr.log.Warn("judge unreachable directly; probing without it", zap.String("judge", SourceLabel(pr.cfg.Judge)), zap.Error(err))
		}
		return
	}
	if pr.judgeDown.Swap(false) {
		pr.log.Info("judge reachable again", zap.String("judge", SourceLabel(pr.cfg.Judge)))
	}
	ip, _ := netip.ParseAddr(rep.IP)
	self := []netip.Addr{ip.Unmap()}
	pr.self.Store(&self)
}

// SelfAddrs returns this host's addresses as the judge last saw them.
func (pr *Prober) SelfAddrs() []netip.Addr {
	if p := pr.self.Load(); p != nil {
		return *p
	}
	return nil
}
