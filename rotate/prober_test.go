package rotate

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/hopper-proxy/hopper/dial"
	"github.com/hopper-proxy/hopper/internal/testnet"
)

func newTestProber(t *testing.T, p *Pool, cfg ProberConfig) *Prober {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	pr, err := NewProber(p, cfg)
	require.NoError(t, err)
	return pr
}

func TestProbeURLReleasesQuarantined(t *testing.T) {
	origin := startHTTPOrigin(t)
	a := startHTTPProxy(t, "127.0.0.120", proxyOpts{})
	b := startSOCKSProxy(t, "127.0.0.121", proxyOpts{})
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock}, "http://"+a.addr, "socks5://"+b.addr)
	pr := newTestProber(t, p, ProberConfig{URL: origin.URL + "/health"})

	res := pr.ProbeAll(context.Background())
	require.Len(t, res, 2)
	for _, r := range res {
		require.NoError(t, r.Err, r.Upstream.Label())
		assert.Equal(t, http.StatusOK, r.Status)
		assert.Positive(t, r.Latency)
		st := r.Upstream.Stats()
		assert.Equal(t, uint64(1), st.Probes)
		assert.Equal(t, r.Latency, st.ProbeLatency)
		assert.Equal(t, 1.0, st.SuccessRate)
	}
	assert.Equal(t, int64(1), a.connects.Load(), "the HTTP upstream forwarded the request itself")

	a.down.Store(true)
	b.down.Store(true)
	for range DefaultFailuresUntilQuarantine {
		for _, r := range pr.ProbeAll(context.Background()) {
			assert.ErrorIs(t, r.Err, dial.ErrUpstream)
		}
	}
	for _, u := range p.Upstreams() {
		st := u.Stats()
		assert.Equal(t, StateQuarantined, st.State, "probe failures quarantine an idle dead upstream: %s", u)
		assert.Equal(t, uint64(3), st.ProbeFailures)
		assert.Less(t, st.SuccessRate, 1.0)
		assert.Error(t, st.LastError)
	}
	_, err := p.Dial(context.Background(), &dial.Request{Target: "127.0.0.1:1"})
	assert.ErrorIs(t, err, ErrAllQuarantined)

	a.down.Store(false)
	pr.ProbeAll(context.Background())
	assert.Equal(t, StateHealthy, p.Upstreams()[0].State(), "a working probe releases it before its period ends")
	assert.Equal(t, StateQuarantined, p.Upstreams()[1].State())
	assert.Equal(t, []*Upstream{p.Upstreams()[0]}, p.Healthy())
}

func TestProbeTCPConnect(t *testing.T) {
	addr, free := testnet.RefusingAddrUntil(t, "127.0.0.122")
	p := newTestPool(t, Config{FailuresUntilQuarantine: 1}, "http://"+addr, "direct")
	pr := newTestProber(t, p, ProberConfig{})
	res := pr.ProbeAll(context.Background())
	assert.ErrorIs(t, res[0].Err, dial.ErrUpstream)
	assert.True(t, res[1].Skipped, "nothing to connect to for a direct entry")
	assert.Equal(t, StateQuarantined, p.Upstreams()[0].State())
	assert.Zero(t, p.Upstreams()[1].Stats().Probes)

	free()
	ln, err := net.Listen("tcp", addr) // the upstream comes back
	require.NoError(t, err)
	defer ln.Close()
	res = pr.ProbeAll(context.Background())
	require.NoError(t, res[0].Err)
	assert.Equal(t, StateHealthy, p.Upstreams()[0].State())
}

func TestProberRunPacesProbesAcrossTheInterval(t *testing.T) {
	var entries []string
	var proxies []*testProxy
	for _, ip := range []string{"127.0.0.123", "127.0.0.124", "127.0.0.125", "127.0.0.126"} {
		px := startHTTPProxy(t, ip, proxyOpts{})
		proxies = append(proxies, px)
		entries = append(entries, "http://"+px.addr)
	}
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock}, entries...)
	pr := newTestProber(t, p, ProberConfig{Interval: 4 * time.Second})
	probes := func() (n uint64) {
		for _, u := range p.Upstreams() {
			n += u.Stats().Probes
		}
		return n
	}
	stop := testnet.Go(t, "prober", pr.Run)

	// One slot of 1s per upstream: no probe before time moves, then one per
	// slot, never a burst.
	for i := range 4 {
		clock.waitSleepers(t, 1)
		assert.Equal(t, uint64(i), probes(), "slot %d", i)
		clock.Advance(time.Second)
		waitFor(t, func() bool { return probes() == uint64(i+1) }, "probe %d", i+1)
	}
	// The round ends when the interval has passed; the next begins at once
	// with its first slot.
	clock.waitSleepers(t, 1)
	assert.Equal(t, uint64(4), probes())
	clock.Advance(time.Second)
	waitFor(t, func() bool { return probes() == 5 }, "second round")
	for _, px := range proxies {
		assert.LessOrEqual(t, px.accepted.Load(), int64(2))
	}
	stop()
}

func TestProberRunRealClockAndOff(t *testing.T) {
	px := startHTTPProxy(t, "127.0.0.127", proxyOpts{})
	p := newTestPool(t, Config{}, "http://"+px.addr)
	pr := newTestProber(t, p, ProberConfig{Interval: 20 * time.Millisecond})
	stop := testnet.Go(t, "prober", pr.Run)
	waitFor(t, func() bool { return p.Upstreams()[0].Stats().Probes >= 3 }, "three probes")
	stop()

	off := newTestProber(t, p, ProberConfig{Interval: -1})
	testnet.Go(t, "prober that is off", off.Run)()
}

func TestProberConfigValidate(t *testing.T) {
	p := newTestPool(t, Config{})
	bad := []ProberConfig{
		{URL: "ftp://x/"}, {URL: "/relative"}, {Judge: "http://"}, {Timeout: -1}, {Concurrency: -2},
		{RequireAnonymity: AnonymityElite}, {PinExitIP: true}, {Judge: "http://j/", RequireAnonymity: 9},
	}
	for _, c := range bad {
		_, err := NewProber(p, c)
		assert.ErrorIs(t, err, ErrBadConfig, "%+v", c)
	}
	_, err := NewProber(p, ProberConfig{URL: "https://example.net/x", Judge: "http://127.0.0.1:1/", RequireAnonymity: AnonymityAnonymous, PinExitIP: true})
	assert.NoError(t, err)
}

func TestProbeURLCountsProxyErrorsOnly(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusNotFound)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(origin.Close)
	px := startHTTPProxy(t, "127.0.0.128", proxyOpts{})
	s5 := startSOCKSProxy(t, "127.0.0.129", proxyOpts{})
	p := newTestPool(t, Config{}, "http://"+px.addr, "socks5://"+s5.addr)
	pr := newTestProber(t, p, ProberConfig{URL: origin.URL})
	for _, r := range pr.ProbeAll(context.Background()) {
		assert.NoError(t, r.Err, "a 404 still proves the upstream works")
		assert.Equal(t, http.StatusNotFound, r.Status)
	}
	status.Store(http.StatusBadGateway)
	res := pr.ProbeAll(context.Background())
	assert.ErrorIs(t, res[0].Err, dial.ErrUpstream, "a forwarding HTTP proxy's 502 is its failure")
	var pe *ProxyError
	require.True(t, errors.As(res[0].Err, &pe))
	assert.Equal(t, 502, pe.Code)
	assert.NoError(t, res[1].Err, "through a tunnel any answer is the target's")
}
