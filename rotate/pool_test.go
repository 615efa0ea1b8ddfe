package rotate

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hopper-proxy/hopper/dial"
)

func TestPoolRoundRobinAcrossKinds(t *testing.T) {
	origin := startEchoOrigin(t)
	srvTLS, roots := testCA(t)
	h := startHTTPProxy(t, "127.0.0.11", proxyOpts{})
	hs := startHTTPProxy(t, "127.0.0.12", proxyOpts{tls: srvTLS})
	s5 := startSOCKSProxy(t, "127.0.0.13", proxyOpts{})
	s5h := startSOCKSProxy(t, "127.0.0.14", proxyOpts{})
	p := newTestPool(t, Config{TLS: &tls.Config{RootCAs: roots}},
		"http://"+h.addr, "https://"+hs.addr, "socks5://"+s5.addr, "socks5h://"+s5h.addr, "direct://127.0.0.15")
	want := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"}
	for i := range 12 { // two full rounds and a wrap into the third
		src, out := dialSource(t, p, &dial.Request{Target: origin.addr})
		assert.Equal(t, want[i%5], src, "dial %d", i)
		assert.Equal(t, p.Upstreams()[i%5].Label(), out.Upstream)
		require.Len(t, out.Attempts, 1)
		assert.NoError(t, out.Attempts[0].Err)
	}
	for i, u := range p.Upstreams() {
		assert.Equal(t, uint64(len(seq(12, 5, i))), u.Stats().Successes, u.Label())
		assert.NotZero(t, u.Stats().Latency)
	}
}

// seq lists the picks in 0..n-1 that land on slot i of a round robin of k.
func seq(n, k, i int) []int {
	var out []int
	for j := range n {
		if j%k == i {
			out = append(out, j)
		}
	}
	return out
}

func TestPoolConcurrentDialsSpreadEvenly(t *testing.T) {
	origin := startEchoOrigin(t)
	ips := []string{"127.0.0.31", "127.0.0.32", "127.0.0.33", "127.0.0.34", "127.0.0.35"}
	var entries []string
	for _, ip := range ips {
		entries = append(entries, "http://"+startHTTPProxy(t, ip, proxyOpts{}).addr)
	}
	p := newTestPool(t, Config{ConnectTimeout: time.Minute}, entries...)

	const n = 500
	var mu sync.Mutex
	counts := make(map[string]int)
	var failures, retried atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := p.Dial(ctx, &dial.Request{Target: origin.addr})
			if err != nil {
				failures.Add(1)
				return
			}
			defer out.Done(false)
			if len(out.Attempts) != 1 {
				retried.Add(1)
			}
			src := readFrom(t, out.Conn)
			mu.Lock()
			counts[src]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.Zero(t, failures.Load())
	require.Zero(t, retried.Load())
	for _, ip := range ips {
		assert.Equal(t, n/len(ips), counts[ip], ip)
	}
}

func TestPoolRetriesRefusingUpstream(t *testing.T) {
	origin := startEchoOrigin(t)
	good := startHTTPProxy(t, "127.0.0.42", proxyOpts{})
	p := newTestPool(t, Config{}, "http://"+refusingAddr(t, "127.0.0.41"), "http://"+good.addr)
	bad := p.Upstreams()[0]

	src, out := dialSource(t, p, &dial.Request{Target: origin.addr})
	assert.Equal(t, "127.0.0.42", src)
	assert.Equal(t, p.Upstreams()[1].Label(), out.Upstream)
	require.Len(t, out.Attempts, 2)
	assert.Equal(t, bad.Label(), out.Attempts[0].Upstream)
	assert.True(t, errors.Is(out.Attempts[0].Err, dial.ErrUpstream), "%v", out.Attempts[0].Err)
	var pe *ProxyError
	require.True(t, errors.As(out.Attempts[0].Err, &pe))
	assert.Equal(t, "connect", pe.Op)
	assert.NoError(t, out.Attempts[1].Err)
	assert.Equal(t, uint64(1), bad.Stats().Failures)
	assert.Error(t, bad.Stats().LastError)
}

func TestPoolAllFailing(t *testing.T) {
	origin := startEchoOrigin(t)
	p := newTestPool(t, Config{},
		"http://"+refusingAddr(t, "127.0.0.43"),
		"socks5://"+refusingAddr(t, "127.0.0.44"),
		"https://"+refusingAddr(t, "127.0.0.45"),
		"http://"+refusingAddr(t, "127.0.0.46"))
	_, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
	require.Error(t, err)
	kind := dial.Classify(err)
	assert.Contains(t, []dial.Kind{dial.KindFailed, dial.KindRefused}, kind, "%v", err)
	assert.Equal(t, "upstream-failed", kind.String())
	var de *dial.Error
	require.True(t, errors.As(err, &de))
	assert.Equal(t, 3, de.Attempt, "first try plus the two default retries")
	assert.Equal(t, origin.addr, de.Target)
	var ae *AttemptsError
	require.True(t, errors.As(err, &ae))
	require.Len(t, ae.Attempts, 3)
	for i, a := range ae.Attempts {
		assert.Equal(t, p.Upstreams()[i].Label(), a.Upstream)
		assert.True(t, errors.Is(a.Err, dial.ErrUpstream))
		assert.Contains(t, err.Error(), a.Upstream)
	}
	assert.Equal(t, ae.Attempts[2].Upstream, de.Upstream)
}

func TestPoolEmpty(t *testing.T) {
	p := newTestPool(t, Config{})
	_, err := p.Dial(context.Background(), &dial.Request{Target: "127.0.0.1:1"})
	require.Error(t, err)
	assert.True(t, errors.Is(err, dial.ErrNoUpstream))
	assert.Equal(t, dial.KindNoUpstream, dial.Classify(err))

	p.Replace(mustUpstreams(t, "direct"))
	p.Replace(nil)
	_, err = p.Dial(context.Background(), &dial.Request{Target: "127.0.0.1:1"})
	assert.True(t, errors.Is(err, dial.ErrNoUpstream))
}

func TestPoolStopsEarlyWhenTargetAnswers(t *testing.T) {
	refused := refusingAddr(t, "127.0.0.1")
	s1 := startSOCKSProxy(t, "127.0.0.47", proxyOpts{})
	s2 := startSOCKSProxy(t, "127.0.0.48", proxyOpts{})
	p := newTestPool(t, Config{}, "socks5://"+s1.addr, "socks5://"+s2.addr)
	_, err := p.Dial(context.Background(), &dial.Request{Target: refused})
	require.Error(t, err)
	assert.Equal(t, dial.KindRefused, dial.Classify(err), "%v", err)
	var de *dial.Error
	require.True(t, errors.As(err, &de))
	assert.Equal(t, 1, de.Attempt, "another exit would get the same refusal")
	assert.Equal(t, uint64(1), p.Upstreams()[0].Stats().TargetFailures)
	assert.Zero(t, p.Upstreams()[0].Stats().Failures, "the upstream is not charged for the target")

	d := newTestPool(t, Config{}, "direct://127.0.0.49", "direct")
	_, err = d.Dial(context.Background(), &dial.Request{Target: refused})
	assert.Equal(t, dial.KindRefused, dial.Classify(err))
	require.True(t, errors.As(err, &de))
	assert.Equal(t, 1, de.Attempt)
}

func TestPoolAttemptTimeoutMovesOn(t *testing.T) {
	origin := startEchoOrigin(t)
	silent := startHTTPProxy(t, "127.0.0.50", proxyOpts{silent: true})
	good := startHTTPProxy(t, "127.0.0.51", proxyOpts{})
	p := newTestPool(t, Config{ConnectTimeout: 2 * time.Second, Retries: 1}, "http://"+silent.addr, "http://"+good.addr)
	src, out := dialSource(t, p, &dial.Request{Target: origin.addr})
	assert.Equal(t, "127.0.0.51", src)
	require.Len(t, out.Attempts, 2)
	var pe *ProxyError
	require.True(t, errors.As(out.Attempts[0].Err, &pe), "%v", out.Attempts[0].Err)
	assert.True(t, errors.Is(out.Attempts[0].Err, dial.ErrUpstream))
	assert.Equal(t, uint64(1), p.Upstreams()[0].Stats().Failures)
}

func TestPoolCallerCancel(t *testing.T) {
	silent := startHTTPProxy(t, "127.0.0.52", proxyOpts{silent: true})
	p := newTestPool(t, Config{ConnectTimeout: time.Minute}, "http://"+silent.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer cancel()
		for deadline := time.Now().Add(10 * time.Second); silent.accepted.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := p.Dial(ctx, &dial.Request{Target: "127.0.0.1:9"})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	var de *dial.Error
	require.True(t, errors.As(err, &de))
	assert.Equal(t, 1, de.Attempt, "a client that left is not retried")
	assert.Zero(t, p.Upstreams()[0].Stats().Failures, "nor is the upstream charged")
}

func TestPoolBadTargetAndTemplateValue(t *testing.T) {
	p := newTestPool(t, Config{}, "http://u-{session}:p@127.0.0.1:1")
	_, err := p.Dial(context.Background(), &dial.Request{Target: "no-port"})
	assert.True(t, errors.Is(err, errBadTarget))
	_, err = p.Dial(context.Background(), &dial.Request{Target: "a:1", Country: "bad country"})
	assert.True(t, errors.Is(err, ErrTemplateValue))
	var de *dial.Error
	require.True(t, errors.As(err, &de))
	assert.Equal(t, 1, de.Attempt)
}

func TestConfigValidate(t *testing.T) {
	ok := []Config{{}, {Retries: -1}, {Retries: 5, ConnectTimeout: time.Second, Rotate: Rotation{Mode: RotateEveryN, Every: 3}}}
	for _, c := range ok {
		assert.NoError(t, c.Validate(), "%+v", c)
	}
	bad := []Config{{Retries: 100}, {ConnectTimeout: -1}, {IdleTimeout: -1}, {Rotate: Rotation{Mode: RotateEveryN}}, {Rotate: Rotation{Mode: 9}},
		{Policy: 9}, {Quarantine: -1}, {MaxQuarantine: -1}, {Quarantine: time.Hour, MaxQuarantine: time.Minute}, {MaxSessions: -1}}
	for _, c := range bad {
		err := c.Validate()
		assert.True(t, errors.Is(err, ErrBadConfig), "%+v: %v", c, err)
	}
	_, err := New(Config{ConnectTimeout: -1}, nil)
	assert.True(t, errors.Is(err, ErrBadConfig))
	assert.Equal(t, 3, (&Config{}).attempts())
	assert.Equal(t, 1, (&Config{Retries: -1}).attempts())
	assert.Equal(t, DefaultConnectTimeout, (&Config{}).connectTimeout())
	base, ceiling := (&Config{Quarantine: 2 * time.Hour}).quarantine()
	assert.Equal(t, 2*time.Hour, base)
	assert.Equal(t, 2*time.Hour, ceiling, "the cap is never below the first period")
	assert.Equal(t, int32(0), (&Config{FailuresUntilQuarantine: -1}).threshold())
	assert.Equal(t, time.Duration(0), (&Config{MaxQueueWait: -1}).maxQueueWait())
	assert.Equal(t, DefaultMaxQueueWait, (&Config{}).maxQueueWait())
	assert.Nil(t, (&Config{SessionTTL: -1}).sessionTable())
}

func TestParseRotation(t *testing.T) {
	for _, s := range []string{"per-request", "per-connection", "every-1", "every-25"} {
		r, err := ParseRotation(s)
		require.NoError(t, err, s)
		assert.Equal(t, s, r.String())
		var back Rotation
		text, err := r.MarshalText()
		require.NoError(t, err)
		require.NoError(t, back.UnmarshalText(text))
		assert.Equal(t, r, back)
	}
	for _, s := range []string{"", "every-0", "every--1", "every-+2", "every-x", "per-host", "Per-Request"} {
		_, err := ParseRotation(s)
		assert.True(t, errors.Is(err, ErrBadRotation), s)
	}
	assert.Equal(t, Rotation{}, Rotation{Mode: RotatePerRequest}, "the zero value is per-request")
}
