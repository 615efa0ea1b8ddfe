package rotate

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/dial"
)

// maxProbeBody bounds what a probe reads of an answer.
const maxProbeBody = 64 << 10

// Probe checks one upstream now and records the outcome: latency and success
// rate, a failure of its own charged towards quarantine, a release when a
// quarantined upstream works again, and the judge's findings. ctx bounds the
// probe, further limited to ProberConfig.Timeout.
func (pr *Prober) Probe(ctx context.Context, u *Upstream) ProbeResult {
	pctx, cancel := context.WithTimeout(ctx, pr.timeout())
	defer cancel()
	r := pr.check(pctx, u)
	r.Upstream = u
	if !r.Skipped && ctx.Err() == nil {
		outcome, err := pr.record(ctx, u, r)
		pr.shareProbe(ctx, u, outcome, err)
	}
	return r
}

// check runs the probe kind the config asks for.
func (pr *Prober) check(ctx context.Context, u *Upstream) ProbeResult {
	switch {
	case pr.judge != nil && !pr.judgeDown.Load():
		return pr.checkJudge(ctx, u)
	case pr.target != nil:
		status, _, lat, err := pr.fetchThrough(ctx, u, pr.target)
		return ProbeResult{Err: err, Latency: lat, Status: status}
	case u.entry.Scheme == SchemeDirect:
		return ProbeResult{Skipped: true}
	default:
		return pr.checkConnect(ctx, u)
	}
}

// hasProbe reports whether check may have something to do for u: all but a
// direct entry when neither a probe URL nor a judge is set.
func (pr *Prober) hasProbe(u *Upstream) bool {
	return pr.judge != nil || pr.target != nil || u.entry.Scheme != SchemeDirect
}

// checkConnect opens (and closes) a TCP connection to the upstream.
func (pr *Prober) checkConnect(ctx context.Context, u *Upstream) ProbeResult {
	addr := u.addr
	if addr == "" {
		f := fill{}
		addr = net.JoinHostPort(f.expand(u.entry.Host), strconv.Itoa(int(u.entry.Port)))
	}
	start := time.Now()
	c, err := dial.DialTCP(ctx, nil, addr)
	if err != nil {
		return ProbeResult{Err: proxyFailure("connect", err)}
	}
	lat := time.Since(start)
	_ = c.Close()
	return ProbeResult{Latency: lat}
}

// checkJudge fetches the judge through u and classifies what it saw.
func (pr *Prober) checkJudge(ctx context.Context, u *Upstream) ProbeResult {
	status, body, lat, err := pr.fetchThrough(ctx, u, pr.judge)
	r := ProbeResult{Err: err, Latency: lat, Status: status}
	if err != nil {
		return r
	}
	rep, perr := ParseJudgeReport(body)
	if perr != nil || status != http.StatusOK {
		r.Err = proxyFailure("probe", fmt.Errorf("%w (status %d)", ErrBadJudgeReply, status))
		return r
	}
	r.Report = &rep
	r.ExitIP = netip.MustParseAddr(rep.IP) // ParseJudgeReport checked it
	r.Anonymity = ClassifyAnonymity(rep, pr.SelfAddrs())
	return r
}

// fetchThrough GETs target through u: as an absolute-form request to an
// HTTP(S) upstream for a plain-http target (so a transparent proxy can show
// its headers), through a tunnel otherwise, with TLS on top for https.
func (pr *Prober) fetchThrough(ctx context.Context, u *Upstream, target *url.URL) (status int, body []byte, lat time.Duration, err error) {
	hostport := target.Host
	if target.Port() == "" {
		port := "80"
		if target.Scheme == "https" {
			port = "443"
		}
		hostport = net.JoinHostPort(target.Hostname(), port)
	}
	s := u.entry.Scheme
	forward := target.Scheme == "http" && (s == SchemeHTTP || s == SchemeHTTPS)
	start := time.Now()
	out, err := u.dial(ctx, &dial.Request{Target: hostport, Forward: forward}, &pr.pool.env, 0)
	if err != nil {
		return 0, nil, 0, err
	}
	defer out.Done(false)
	conn := out.Conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if !out.Proxy && target.Scheme == "https" {
		cfg := &tls.Config{}
		if pr.cfg.TLS != nil {
			cfg = pr.cfg.TLS.Clone()
		}
		cfg.ServerName = target.Hostname()
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, nil, 0, fmt.Errorf("probe TLS to %s: %w", target.Hostname(), err)
		}
		conn = tc
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("User-Agent", "hopper-prober")
	req.Header.Set("Accept", "application/json, */*")
	req.Close = true
	if out.Proxy {
		if out.ProxyAuthorization != "" {
			req.Header.Set("Proxy-Authorization", out.ProxyAuthorization)
		}
		err = req.WriteProxy(conn)
	} else {
		err = req.Write(conn)
	}
	if err != nil {
		return 0, nil, 0, probeIOError(forward, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, nil, 0, probeIOError(forward, err)
	}
	lat = time.Since(start)
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	_ = resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, lat, probeIOError(forward, err)
	}
	if forward && (resp.StatusCode == http.StatusProxyAuthRequired || resp.StatusCode >= 500) {
		rep := reply{code: resp.StatusCode, status: sanitize(resp.Status),
			hopper: sanitize(resp.Header.Get("Hopper-Error")), squid: sanitize(resp.Header.Get("X-Squid-Error"))}
		return resp.StatusCode, body, lat, rep.err()
	}
	return resp.StatusCode, body, lat, nil
}

// probeIOError attributes a failed exchange: talking to an HTTP proxy
// directly, it failed; through a tunnel, the upstream carried it and is
// charged too, since the probe target is assumed reliable.
func probeIOError(forward bool, err error) error {
	if forward {
		return proxyFailure("reply", err)
	}
	return proxyFailure("probe", err)
}

// fetchDirect GETs the judge without an upstream.
func (pr *Prober) fetchDirect(ctx context.Context) (JudgeReport, error) {
	var rep JudgeReport
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.judge.String(), nil)
	if err != nil {
		return rep, err
	}
	req.Header.Set("User-Agent", "hopper-prober")
	resp, err := pr.direct.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return rep, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return rep, err
	}
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("%w (status %d)", ErrBadJudgeReply, resp.StatusCode)
	}
	rep, err = ParseJudgeReport(body)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadJudgeReply, err)
	}
	return rep, nil
}

// record applies a probe's outcome to u and its pool, and returns it with
// the error it recorded as u's last (nil if none), for shareProbe.
func (pr *Prober) record(ctx context.Context, u *Upstream, r ProbeResult) (probeOutcome, error) {
	now := pr.clock.Now()
	u.probes.Add(1)
	u.lastProbe.Store(now.UnixNano())
	if r.Err != nil {
		u.probeFailures.Add(1)
		if blame(r.Err) != faultUpstream {
			return probeInconclusive, r.Err
		}
		u.consec.Add(1)
		pr.pool.sharedFailure(ctx, u)
		u.recordRate(false)
		u.lastErr.Store(&errorRecord{err: r.Err, at: now})
		pr.pool.charge(u, r.Err)
		return probeFailed, r.Err
	}
	ewma(&u.probeLatency, int64(r.Latency))
	u.recordRate(true)
	if u.consec.Load() != 0 {
		u.consec.Store(0)
		pr.pool.sharedSuccess(ctx, u, true)
	}
	outcome, err := probeWorked, error(nil)
	if r.ExitIP.IsValid() {
		outcome, err = pr.judged(u, r)
	}
	pr.pool.releaseProbed(u, outcome == probeWorked)
	return outcome, err
}

// judged records the judge's findings and quarantines an upstream that breaks
// the config's requirements: probeLeaked or probeExitChanged, with the error
// recorded, or probeWorked when u is clean.
func (pr *Prober) judged(u *Upstream, r ProbeResult) (probeOutcome, error) {
	prev := u.exit.Load()
	rec := &exitRecord{ip: r.ExitIP, anonymity: r.Anonymity, pinned: r.ExitIP}
	if prev != nil && prev.pinned.IsValid() {
		rec.pinned = prev.pinned
	}
	changed := pr.cfg.PinExitIP && pinnable(u) && rec.pinned != r.ExitIP
	if changed {
		rec.pinned = r.ExitIP
	}
	u.exit.Store(rec)
	if prev == nil || prev.anonymity != r.Anonymity {
		pr.log.Info("upstream judged", zap.String("upstream", u.label),
			zap.Stringer("exit", r.ExitIP), zap.Stringer("anonymity", r.Anonymity))
	}
	if changed {
		err := fmt.Errorf("%w: %s, was %s", ErrExitIPChanged, r.ExitIP, prev.pinned)
		u.lastErr.Store(&errorRecord{err: err, at: pr.clock.Now()})
		pr.pool.quarantine(u, causeExitIP, err)
		return probeExitChanged, err
	}
	if req := pr.cfg.RequireAnonymity; req != AnonymityUnknown && r.Anonymity < req && u.entry.Scheme != SchemeDirect {
		err := fmt.Errorf("%w: judged %s, %s required", ErrLeak, r.Anonymity, req)
		u.lastErr.Store(&errorRecord{err: err, at: pr.clock.Now()})
		pr.pool.quarantine(u, causeLeak, err)
		return probeLeaked, err
	}
	return probeWorked, nil
}

// pinnable reports whether u should keep one exit IP: not a provider
// template, not a direct prefix picking a random address.
func pinnable(u *Upstream) bool {
	e := u.entry
	if e.Scheme == SchemeDirect {
		return !e.Local.IsValid() || e.Local.Bits() == e.Local.Addr().BitLen()
	}
	return !u.templated
}

// releaseProbed releases a quarantined upstream a probe found working and
// clean (no judge, or the judge found nothing against it), unless it is out
// for a changed exit IP, which only the period's end ends.
func (p *Pool) releaseProbed(u *Upstream, clean bool) {
	if u.healthy() {
		return
	}
	p.mu.Lock()
	if u.healthy() || !clean || u.cause == causeExitIP {
		p.mu.Unlock()
		return
	}
	now := p.clock.Now()
	p.releaseLocked(u, now)
	p.markDirtyLocked(u, now)
	p.publishLocked()
	p.mu.Unlock()
	p.logReleased(u, "probe succeeded")
}
