package check

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hopper-proxy/hopper/rotate"
)

// maxJudgeBody bounds a judge's answer: a report is a few KiB; anything
// larger is not one. rotate's prober reads at most the same through an
// upstream.
const maxJudgeBody = 64 << 10

// judgeURL is one configured judge.
type judgeURL struct {
	raw      string
	url      *url.URL
	label    string // redacted
	hostport string // with the scheme's default port
}

func newJudgeURL(raw string) (judgeURL, error) {
	u, err := parseJudgeURL(raw)
	if err != nil {
		return judgeURL{}, err
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return judgeURL{raw: raw, url: u, label: rotate.SourceLabel(raw), hostport: net.JoinHostPort(u.Hostname(), port)}, nil
}

// JudgeStatus is what fetching a judge directly, before the checks, found.
type JudgeStatus struct {
	URL string // redacted: no userinfo, no query
	// Err is nil when the judge answered with a report. A judge that did not
	// is still tried through upstreams, after the others.
	Err error
	// Self is this host's address as the judge saw it.
	Self netip.Addr
	// Latency is the time to its answer's headers.
	Latency time.Duration
}

// judgeDirect fetches every judge directly, concurrently, each within the
// entry budget. It returns their statuses in config order, the order to try
// them in (those that answered first), and this host's addresses.
func (c *Checker) judgeDirect(ctx context.Context) (status []JudgeStatus, order []judgeURL, self []netip.Addr) {
	if len(c.judges) == 0 {
		return nil, nil, nil
	}
	tr := &http.Transport{
		Proxy: nil, DisableKeepAlives: true, TLSClientConfig: c.cfg.TLS,
		TLSHandshakeTimeout: c.cfg.timeout(), ResponseHeaderTimeout: c.cfg.timeout(),
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: c.cfg.timeout()}
	status = make([]JudgeStatus, len(c.judges))
	var wg sync.WaitGroup
	for i, j := range c.judges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status[i] = fetchJudge(ctx, client, j)
		}()
	}
	wg.Wait()
	var dead []judgeURL
	for i, j := range c.judges {
		st := status[i]
		if st.Err != nil {
			dead = append(dead, j)
			if ctx.Err() == nil {
				c.log.Warn("judge does not answer directly; trying it last", zap.String("judge", j.label), zap.Error(st.Err))
			}
			continue
		}
		order = append(order, j)
		if !containsAddr(self, st.Self) {
			self = append(self, st.Self)
		}
	}
	if len(order) == 0 && ctx.Err() == nil {
		c.log.Warn("no judge answers directly: anonymity is judged without knowing this host's address")
	}
	return status, append(order, dead...), self
}

// fetchJudge GETs j without a proxy and validates its answer.
func fetchJudge(ctx context.Context, client *http.Client, j judgeURL) JudgeStatus {
	st := JudgeStatus{URL: j.label}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.raw, nil)
	if err != nil {
		st.Err = err
		return st
	}
	req.Header.Set("User-Agent", "hopper-check")
	req.Header.Set("Accept", "application/json, */*")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err // its text repeats the URL with its secrets
		}
		st.Err = err
		return st
	}
	defer resp.Body.Close()
	st.Latency = time.Since(start)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJudgeBody+1))
	if err != nil {
		st.Err = err
		return st
	}
	st.Self, st.Err = parseJudgeAnswer(resp.StatusCode, body)
	return st
}

// parseJudgeAnswer accepts a 200 answer of at most maxJudgeBody bytes in a
// format rotate.ParseJudgeReport reads, as rotate's prober does.
func parseJudgeAnswer(status int, body []byte) (netip.Addr, error) {
	if status != http.StatusOK {
		return netip.Addr{}, fmt.Errorf("%w (status %d)", ErrBadJudge, status)
	}
	if len(body) > maxJudgeBody {
		return netip.Addr{}, fmt.Errorf("%w (larger than %d bytes)", ErrBadJudge, maxJudgeBody)
	}
	rep, err := rotate.ParseJudgeReport(body)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w (%w)", ErrBadJudge, err)
	}
	return netip.MustParseAddr(rep.IP), nil // ParseJudgeReport checked it
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b == a {
			return true
		}
	}
	return false
}
