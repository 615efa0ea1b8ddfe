package check

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/rotate"
)

// Result is the check of one entry.
type Result struct {
	// Entry is the entry as checked. Its String holds the credentials:
	// print Upstream instead.
	Entry rotate.Entry
	// Upstream is the entry's redacted label (rotate.Entry.Redacted).
	Upstream string
	Outcome  Outcome
	// Err says why, for every outcome but OutcomeOK. Classify maps it.
	Err error
	// Connect is the time to connect and complete the handshake through the
	// upstream: a tunnel to the judge, or, for an HTTP proxy asked for an
	// http:// judge (which it fetches itself, so that its headers show), the
	// connection to the proxy. Without judges, the TCP connect to it.
	Connect time.Duration
	// TTFB is the time from opening a connection through the upstream to
	// the judge's response headers: the latency rotate's prober measures.
	TTFB time.Duration
	// ExitIP and Anonymity are the judge's findings; Judge is the label of
	// the judge that answered. Zero without a judge.
	ExitIP    netip.Addr
	Anonymity rotate.Anonymity
	Judge     string
	// Elapsed is the wall time of the whole check, failover included.
	Elapsed time.Duration
	// Stats are the upstream's counters after the check, as a pool of the
	// good entries would start with them.
	Stats rotate.Stats
	// Score is Stats.Score against the best latency of the OK results: the
	// weight PolicyWeighted gives the upstream in such a pool. Zero for an
	// entry that does not work, which such a pool would not hold.
	Score float64
}

// Latency is the measure the least-latency and weighted policies select by:
// the prober's average when there is one, else the connections'.
func (r *Result) Latency() time.Duration {
	if r.Stats.ProbeLatency != 0 {
		return r.Stats.ProbeLatency
	}
	return r.Stats.Latency
}

// speed is what the table is sorted by and --max-latency compares: the time
// to first byte, or the connect time without judges.
func (r *Result) speed() time.Duration {
	if r.TTFB != 0 {
		return r.TTFB
	}
	return r.Connect
}

func (r *Result) fail(err error) {
	r.Err = err
	r.Outcome, _ = Classify(err)
}

// Checker checks entries. It starts no goroutine outside Run.
type Checker struct {
	cfg    Config
	log    *zap.Logger
	judges []judgeURL
}

// New returns a checker, or cfg.Validate's error.
func New(cfg Config) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	for _, raw := range cfg.Judges {
		j, _ := newJudgeURL(raw) // validated
		c.judges = append(c.judges, j)
	}
	return c, nil
}

// Report is the outcome of a Run.
type Report struct {
	// Results holds the entries checked, in input order. When Run was
	// interrupted, those not checked are missing.
	Results []Result
	// Total is the number of entries given.
	Total int
	// Judges are the direct judge fetches, in config order; Self the
	// addresses they saw for this host.
	Judges []JudgeStatus
	Self   []netip.Addr
	// Best is the best latency among the OK results, the reference of
	// their scores; zero if none.
	Best        time.Duration
	Elapsed     time.Duration
	Interrupted bool
}

// Run checks entries, Concurrency at a time, each within Timeout, and
// returns the report. progress, if not nil, is called with each result as it
// completes, from Run's goroutine, one call at a time. When ctx ends, Run
// stops starting checks, waits for those in flight, and returns what was
// checked with ctx's error (Report.Interrupted set). Every goroutine it
// starts has ended when it returns.
func (c *Checker) Run(ctx context.Context, entries []rotate.Entry, progress func(Result)) (*Report, error) {
	start := time.Now()
	rep := &Report{Total: len(entries)}
	var order []judgeURL
	rep.Judges, order, rep.Self = c.judgeDirect(ctx)

	results := make([]Result, len(entries))
	checked := make([]bool, len(entries))
	finished := make(chan int)
	go c.dispatch(ctx, entries, order, rep.Self, results, finished)
	for i := range finished {
		checked[i] = true
		if progress != nil {
			progress(results[i])
		}
	}
	for i, ok := range checked {
		if ok {
			rep.Results = append(rep.Results, results[i])
		}
	}
	scoreAll(rep)
	rep.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		rep.Interrupted = true
		return rep, err
	}
	return rep, nil
}

// dispatch runs the checks and sends the index of each one finished on
// finished, which it closes when all are done. A check cut short by ctx is
// not sent: it says nothing about its upstream.
func (c *Checker) dispatch(ctx context.Context, entries []rotate.Entry, judges []judgeURL, self []netip.Addr, results []Result, finished chan<- int) {
	defer close(finished)
	var g errgroup.Group
	g.SetLimit(c.cfg.concurrency())
	for i, e := range entries {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			r := c.checkOne(ctx, e, judges, self)
			if ctx.Err() != nil {
				return nil
			}
			results[i] = r
			finished <- i
			return nil
		})
	}
	_ = g.Wait()
}

// checkOne checks e within the entry budget.
func (c *Checker) checkOne(ctx context.Context, e rotate.Entry, judges []judgeURL, self []netip.Addr) Result {
	budget := c.cfg.timeout()
	start := time.Now()
	deadline := start.Add(budget)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(grace(budget)))
	defer cancel()

	u := rotate.NewUpstream(e)
	r := Result{Entry: e, Upstream: u.Label()}
	pool, err := rotate.New(rotate.Config{
		Retries: -1, ConnectTimeout: budget, FailuresUntilQuarantine: -1,
		MaxIdlePerUpstream: -1, SessionTTL: -1, TLS: c.cfg.TLS,
	}, []*rotate.Upstream{u})
	if err != nil {
		r.fail(err)
		return r
	}
	defer pool.Close()
	if len(judges) == 0 {
		c.checkConnect(ctx, pool, u, &r, budget)
	} else {
		c.checkJudged(ctx, pool, u, judges, self, deadline, &r)
	}
	r.Stats = u.Stats()
	r.Elapsed = time.Since(start)
	c.filter(&r)
	c.log.Debug("checked", zap.String("upstream", r.Upstream), zap.Stringer("result", r.Outcome),
		zap.Duration("connect", r.Connect), zap.Duration("ttfb", r.TTFB), zap.Stringer("exit", r.ExitIP),
		zap.Stringer("anonymity", r.Anonymity), zap.Error(r.Err))
	return r
}

// checkJudged connects through u to each judge in turn and fetches it with
// rotate's prober, until one answers or a failure is not the judge's.
func (c *Checker) checkJudged(ctx context.Context, pool *rotate.Pool, u *rotate.Upstream, judges []judgeURL, self []netip.Addr, deadline time.Time, r *Result) {
	var err error
	for _, j := range judges {
		left := time.Until(deadline)
		if left < time.Millisecond {
			err = budgetSpent(err, c.cfg.timeout())
			break
		}
		var connect time.Duration
		if connect, err = c.connect(ctx, pool, u.Entry(), j); err == nil {
			var p rotate.ProbeResult
			if p, err = c.probe(ctx, pool, u, j, time.Until(deadline)); err == nil {
				r.Outcome, r.Err = OutcomeOK, nil
				r.Connect, r.TTFB, r.Judge = connect, p.Latency, j.label
				r.ExitIP = p.ExitIP
				r.Anonymity = rotate.ClassifyAnonymity(*p.Report, self)
				return
			}
		}
		if _, judgeSide := Classify(err); !judgeSide {
			break
		}
	}
	r.fail(err)
}

// budgetSpent is the error for an entry whose budget ran out between steps.
func budgetSpent(last error, budget time.Duration) error {
	if last != nil {
		return fmt.Errorf("%w: budget of %v spent after: %w", context.DeadlineExceeded, budget, last)
	}
	return fmt.Errorf("%w: budget of %v spent", context.DeadlineExceeded, budget)
}

// connect opens (and closes) what the prober is about to use: a tunnel to
// the judge, or the connection to an HTTP proxy that fetches an http judge
// itself. It returns the time the attempt took.
func (c *Checker) connect(ctx context.Context, pool *rotate.Pool, e rotate.Entry, j judgeURL) (time.Duration, error) {
	forward := j.url.Scheme == "http" && (e.Scheme == rotate.SchemeHTTP || e.Scheme == rotate.SchemeHTTPS)
	req := &dial.Request{Target: j.hostport, Protocol: dial.ProtocolHTTPConnect, Forward: forward}
	if forward {
		req.Protocol = dial.ProtocolHTTPForward
	}
	out, err := pool.Dial(ctx, req)
	if err != nil {
		return 0, err
	}
	out.Done(false)
	if n := len(out.Attempts); n > 0 {
		return out.Attempts[n-1].Elapsed, nil
	}
	return 0, nil
}

// probe fetches judge j through u with rotate's prober, within timeout.
func (c *Checker) probe(ctx context.Context, pool *rotate.Pool, u *rotate.Upstream, j judgeURL, timeout time.Duration) (rotate.ProbeResult, error) {
	if timeout < time.Millisecond {
		return rotate.ProbeResult{}, budgetSpent(nil, c.cfg.timeout())
	}
	pr, err := rotate.NewProber(pool, rotate.ProberConfig{
		Judge: j.raw, Timeout: timeout, Interval: -1, TLS: c.cfg.TLS, Logger: zap.NewNop(),
	})
	if err != nil {
		return rotate.ProbeResult{}, err
	}
	p := pr.Probe(ctx, u)
	switch {
	case p.Err != nil && (p.Status == http.StatusForbidden || p.Status >= 500):
		// An HTTP proxy's own page for a judge it would not or could not
		// fetch (the prober passes those on as the judge's answer).
		return p, fmt.Errorf("%w %d: %w", ErrJudgeStatus, p.Status, p.Err)
	case p.Err != nil:
		return p, p.Err
	case p.Report == nil || !p.ExitIP.IsValid():
		return p, fmt.Errorf("%w (no report)", rotate.ErrBadJudgeReply)
	}
	return p, nil
}

// checkConnect is the check without judges: a TCP connect to the upstream,
// as rotate's prober makes it.
func (c *Checker) checkConnect(ctx context.Context, pool *rotate.Pool, u *rotate.Upstream, r *Result, budget time.Duration) {
	pr, err := rotate.NewProber(pool, rotate.ProberConfig{Timeout: budget, Interval: -1, Logger: zap.NewNop()})
	if err != nil {
		r.fail(err)
		return
	}
	p := pr.Probe(ctx, u)
	if p.Err != nil {
		r.fail(p.Err)
		return
	}
	r.Outcome, r.Connect = OutcomeOK, p.Latency
}

// filter applies --min-anonymity and --max-latency to a working entry.
func (c *Checker) filter(r *Result) {
	if r.Outcome != OutcomeOK {
		return
	}
	if m := c.cfg.MinAnonymity; m != rotate.AnonymityUnknown && r.Anonymity < m {
		r.Outcome = OutcomeFiltered
		r.Err = fmt.Errorf("%w: judged %s, %s required", ErrAnonymity, r.Anonymity, m)
		return
	}
	if m := c.cfg.MaxLatency; m > 0 && r.speed() > m {
		r.Outcome = OutcomeFiltered
		r.Err = fmt.Errorf("%w: %v > %v", ErrTooSlow, r.speed().Round(time.Millisecond), m)
	}
}

// scoreAll scores every working result against the best latency of the OK ones, as
// PolicyWeighted would weigh them in a pool of the good entries.
func scoreAll(rep *Report) {
	for i := range rep.Results {
		r := &rep.Results[i]
		if l := r.Latency(); r.Outcome == OutcomeOK && l > 0 && (rep.Best == 0 || l < rep.Best) {
			rep.Best = l
		}
	}
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Outcome.Working() {
			r.Score = r.Stats.Score(rep.Best)
		}
	}
}
