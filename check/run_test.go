package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/internal/testnet"
	"github.com/hopper-proxy/hopper/rotate"
)

// TestFiftyBlackholesFinishWithinBudget: silent upstreams cost one budget
// each, Concurrency at a time, and nothing more.
func TestFiftyBlackholesFinishWithinBudget(t *testing.T) {
	live := startJudge(t)
	var entries []rotate.Entry
	for i := range 50 {
		kind, scheme := kindHTTP, "http://"
		if i%2 == 1 {
			kind, scheme = kindSOCKS5, "socks5://"
		}
		e, err := rotate.ParseEntry(scheme + startProxy(t, proxySpec{kind: kind, blackhole: true}))
		require.NoError(t, err)
		entries = append(entries, e)
	}
	cfg := Config{Judges: []string{live}, Timeout: 500 * time.Millisecond, Concurrency: 16}
	c, err := New(cfg)
	require.NoError(t, err)
	start := time.Now()
	rep, err := c.Run(context.Background(), entries, nil)
	elapsed := time.Since(start)
	require.NoError(t, err)
	require.Len(t, rep.Results, 50)
	for _, r := range rep.Results {
		assert.Equal(t, OutcomeTimeout, r.Outcome, "%s: %v", r.Upstream, r.Err)
	}
	assert.Less(t, elapsed, 3*cfg.Budget(50), "the run must end within its budget (hang check)")
	t.Logf("50 blackholes, timeout %v, concurrency %d: %v (budget %v)", cfg.Timeout, cfg.Concurrency, elapsed, cfg.Budget(50))
}

// TestJudgeFailoverPerEntry: a judge that answers directly but not through
// the upstreams (an HTML page, or denied by the proxy) is skipped for the
// next one, entry by entry; when none answers, the last failure is reported.
func TestJudgeFailoverPerEntry(t *testing.T) {
	live := startJudge(t)
	lying := startLyingJudge(t)
	denied := startJudge(t)
	deny := []string{strings.TrimSuffix(strings.TrimPrefix(denied, "http://"), "/")}
	specs := []struct {
		spec   proxySpec
		scheme string
		anon   rotate.Anonymity
	}{
		{proxySpec{deny: deny, egress: "127.0.0.70"}, "http://", rotate.AnonymityElite},
		{proxySpec{deny: deny, headers: headersTransparent, egress: "127.0.0.71"}, "http://", rotate.AnonymityTransparent},
		{proxySpec{kind: kindSOCKS5, deny: deny, egress: "127.0.0.72"}, "socks5://", rotate.AnonymityElite},
	}
	var entries []rotate.Entry
	for _, s := range specs {
		e, err := rotate.ParseEntry(s.scheme + startProxy(t, s.spec))
		require.NoError(t, err)
		entries = append(entries, e)
	}
	run := func(judges ...string) *Report {
		c, err := New(Config{Judges: judges, Timeout: 5 * time.Second, Logger: zaptest.NewLogger(t)})
		require.NoError(t, err)
		rep, err := c.Run(context.Background(), entries, nil)
		require.NoError(t, err)
		require.Len(t, rep.Results, len(entries))
		return rep
	}

	rep := run(lying, denied, live)
	for _, j := range rep.Judges {
		require.NoError(t, j.Err, "every judge answers directly")
	}
	for i, r := range rep.Results {
		require.Equal(t, OutcomeOK, r.Outcome, "%s: %v", r.Upstream, r.Err)
		assert.Equal(t, rotate.SourceLabel(live), r.Judge)
		assert.Equal(t, specs[i].spec.egress, r.ExitIP.String())
		assert.Equal(t, specs[i].anon, r.Anonymity)
	}

	for _, r := range run(denied, lying).Results {
		assert.Equal(t, OutcomeBadReply, r.Outcome, r.Upstream)
		var pe *rotate.ProxyError
		require.ErrorAs(t, r.Err, &pe, r.Upstream)
		assert.ErrorIs(t, pe.Cause, rotate.ErrBadJudgeReply, r.Upstream)
	}
	for _, r := range run(lying, denied).Results {
		assert.Equal(t, OutcomeUnreachable, r.Outcome, "%s: %v", r.Upstream, r.Err)
	}
}

// TestFilters: --min-anonymity and --max-latency keep working entries out
// of the good list.
func TestFilters(t *testing.T) {
	live := startJudge(t)
	elite := "http://" + startProxy(t, proxySpec{egress: "127.0.0.80"})
	leaky := "http://" + startProxy(t, proxySpec{egress: "127.0.0.81", headers: headersTransparent})
	slow := "socks5://" + startProxy(t, proxySpec{kind: kindSOCKS5, egress: "127.0.0.82", delay: 400 * time.Millisecond})
	var entries []rotate.Entry
	for _, s := range []string{elite, leaky, slow} {
		e, err := rotate.ParseEntry(s)
		require.NoError(t, err)
		entries = append(entries, e)
	}
	c, err := New(Config{Judges: []string{live}, Timeout: 5 * time.Second,
		MinAnonymity: rotate.AnonymityAnonymous, MaxLatency: 200 * time.Millisecond})
	require.NoError(t, err)
	rep, err := c.Run(context.Background(), entries, nil)
	require.NoError(t, err)
	require.Len(t, rep.Results, 3)
	assert.Equal(t, OutcomeOK, rep.Results[0].Outcome, "%v", rep.Results[0].Err)
	assert.Equal(t, OutcomeFiltered, rep.Results[1].Outcome)
	assert.ErrorIs(t, rep.Results[1].Err, ErrAnonymity)
	assert.Equal(t, rotate.AnonymityTransparent, rep.Results[1].Anonymity)
	assert.Equal(t, OutcomeFiltered, rep.Results[2].Outcome)
	assert.ErrorIs(t, rep.Results[2].Err, ErrTooSlow)
	assert.Positive(t, rep.Results[2].Score, "filtered entries work, so they are scored")

	var out bytes.Buffer
	require.NoError(t, WriteList(&out, rep))
	ups, errs := rotate.ParseList("good.txt", &out)
	require.Empty(t, errs)
	require.Len(t, ups, 1)
	assert.Equal(t, entries[0], ups[0].Entry())
}

// TestCheckWithoutJudge is a TCP reachability check.
func TestCheckWithoutJudge(t *testing.T) {
	up, err := rotate.ParseEntry("http://" + startProxy(t, proxySpec{}))
	require.NoError(t, err)
	down, err := rotate.ParseEntry("socks5://" + closedPort(t))
	require.NoError(t, err)
	c, err := New(Config{Timeout: 5 * time.Second})
	require.NoError(t, err)
	rep, err := c.Run(context.Background(), []rotate.Entry{up, down}, nil)
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	assert.Equal(t, OutcomeOK, rep.Results[0].Outcome)
	assert.Positive(t, rep.Results[0].Connect)
	assert.False(t, rep.Results[0].ExitIP.IsValid())
	assert.Equal(t, OutcomeRefused, rep.Results[1].Outcome)
	assert.Empty(t, rep.Judges)
}

// TestRunInterrupted: cancelling stops the run; what was checked is kept.
func TestRunInterrupted(t *testing.T) {
	live := startJudge(t)
	var entries []rotate.Entry
	for range 6 {
		e, err := rotate.ParseEntry("http://" + startProxy(t, proxySpec{blackhole: true}))
		require.NoError(t, err)
		entries = append(entries, e)
	}
	fast, err := rotate.ParseEntry("http://" + startProxy(t, proxySpec{egress: "127.0.0.90"}))
	require.NoError(t, err)
	entries = append([]rotate.Entry{fast}, entries...)
	c, err := New(Config{Judges: []string{live}, Timeout: 30 * time.Second, Concurrency: 2})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	rep, err := c.Run(ctx, entries, func(r Result) {
		if r.Outcome == OutcomeOK {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, rep.Interrupted)
	require.Len(t, rep.Results, 1)
	assert.Equal(t, fast, rep.Results[0].Entry)
	assert.Equal(t, 7, rep.Total)
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Judges: []string{"http://127.0.0.1:1/"}, MinAnonymity: rotate.AnonymityElite}, true},
		{Config{Judges: []string{"ftp://x/"}}, false},
		{Config{Judges: []string{"/relative"}}, false},
		{Config{Concurrency: -1}, false},
		{Config{Timeout: -1}, false},
		{Config{MaxLatency: -1}, false},
		{Config{MinAnonymity: rotate.AnonymityElite}, false},
		{Config{Judges: []string{"http://x/"}, MinAnonymity: rotate.Anonymity(9)}, false},
	}
	for i, c := range cases {
		err := c.cfg.Validate()
		if c.ok {
			assert.NoError(t, err, i)
			continue
		}
		assert.ErrorIs(t, err, ErrBadConfig, i)
		_, nerr := New(c.cfg)
		assert.True(t, errors.Is(nerr, ErrBadConfig), i)
	}
	cfg := Config{Timeout: time.Second, Concurrency: 10}
	assert.Equal(t, 5*(time.Second+100*time.Millisecond), cfg.Budget(41))
}

// TestAzenvJudge: a judge in the environment-dump format most public
// judges use (azenv.php) works as well as hopper's own JSON judge, direct
// and through proxies.
func TestAzenvJudge(t *testing.T) {
	azenv := serveHandler(t, testnet.Listen(t, ""), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "<html><body><pre>\nREMOTE_ADDR = %s\nHTTP_HOST = %s\n", host, r.Host)
		for k, v := range r.Header {
			fmt.Fprintf(w, "HTTP_%s = %s\n", strings.ToUpper(strings.ReplaceAll(k, "-", "_")), strings.Join(v, ", "))
		}
		fmt.Fprint(w, "</pre></body></html>\n")
	}))
	elite, err := rotate.ParseEntry("http://" + startProxy(t, proxySpec{egress: "127.0.0.83"}))
	require.NoError(t, err)
	leaky, err := rotate.ParseEntry("http://" + startProxy(t, proxySpec{egress: "127.0.0.84", headers: headersTransparent}))
	require.NoError(t, err)
	c, err := New(Config{Judges: []string{azenv}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	rep, err := c.Run(context.Background(), []rotate.Entry{elite, leaky}, nil)
	require.NoError(t, err)
	require.Len(t, rep.Judges, 1)
	require.NoError(t, rep.Judges[0].Err, "the judge's direct answer is accepted")
	require.Len(t, rep.Results, 2)
	assert.Equal(t, OutcomeOK, rep.Results[0].Outcome, "%v", rep.Results[0].Err)
	assert.Equal(t, "127.0.0.83", rep.Results[0].ExitIP.String())
	assert.Equal(t, rotate.AnonymityElite, rep.Results[0].Anonymity)
	assert.Equal(t, "127.0.0.84", rep.Results[1].ExitIP.String())
	assert.Equal(t, rotate.AnonymityTransparent, rep.Results[1].Anonymity)
}
