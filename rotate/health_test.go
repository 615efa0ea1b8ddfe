package rotate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hopper-proxy/hopper/dial"
)

// observedPool builds a pool whose logs the test can count.
func observedPool(t *testing.T, cfg Config, entries ...string) (*Pool, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(core)
	return newTestPool(t, cfg, entries...), logs
}

func countLogs(logs *observer.ObservedLogs, msg string) int {
	return logs.FilterMessage(msg).Len()
}

func TestQuarantineAfterFailuresAndReleaseAfterCooldown(t *testing.T) {
	origin := startEchoOrigin(t)
	good := startHTTPProxy(t, "127.0.0.111", proxyOpts{})
	clock := newFakeClock()
	p, logs := observedPool(t, Config{Clock: clock, Retries: -1},
		"http://"+refusingAddr(t, "127.0.0.110"), "http://"+good.addr)
	bad := p.Upstreams()[0]

	// Round robin alternates; without retries every pick of bad fails.
	for i := range 5 {
		_, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		if i%2 == 0 {
			require.Error(t, err, "dial %d", i)
			assert.Equal(t, dial.KindFailed, dial.Classify(err))
		} else {
			require.NoError(t, err, "dial %d", i)
		}
	}
	st := bad.Stats()
	assert.Equal(t, StateQuarantined, st.State, "quarantined after 3 consecutive failures")
	assert.Equal(t, uint64(1), st.Quarantines)
	assert.Equal(t, clock.Now().Add(DefaultQuarantine).UnixNano(), st.QuarantinedUntil.UnixNano())
	assert.Equal(t, []*Upstream{p.Upstreams()[1]}, p.Healthy(), "a healthy-only snapshot is published")
	assert.Equal(t, 1, countLogs(logs, "upstream quarantined"))

	for range 6 {
		src, out := dialSource(t, p, &dial.Request{Target: origin.addr})
		assert.Equal(t, "127.0.0.111", src)
		assert.Len(t, out.Attempts, 1, "the quarantined upstream is not tried")
	}
	assert.Equal(t, 1, countLogs(logs, "upstream quarantined"), "state changes are logged once")

	clock.Advance(DefaultQuarantine - time.Second)
	_, _ = dialSource(t, p, &dial.Request{Target: origin.addr})
	assert.Equal(t, StateQuarantined, bad.State(), "still inside the period")

	clock.Advance(time.Second)
	assert.Equal(t, StateHealthy, p.Status()[0].State, "released at the end of the period")
	assert.Len(t, p.Healthy(), 2)
	assert.Equal(t, 1, countLogs(logs, "upstream released"))
	// Released on probation: one failure quarantines it again.
	var err error
	for range 2 {
		if _, err = p.Dial(context.Background(), &dial.Request{Target: origin.addr}); err != nil {
			break
		}
	}
	require.Error(t, err)
	st = bad.Stats()
	assert.Equal(t, StateQuarantined, st.State, "one failure on probation quarantines again")
	assert.Equal(t, clock.Now().Add(2*DefaultQuarantine).UnixNano(), st.QuarantinedUntil.UnixNano(), "a repeat offence doubles the period")
	assert.Equal(t, uint64(2), st.Quarantines)
	assert.Equal(t, 2, countLogs(logs, "upstream quarantined"))
}

func TestQuarantinePeriodDoublesUpToCapAndResets(t *testing.T) {
	clock := newFakeClock()
	p := newTestPool(t, Config{Clock: clock, Quarantine: time.Minute, MaxQuarantine: 5 * time.Minute}, "a.example:1", "b.example:2")
	u := p.Upstreams()[0]
	offend := func() time.Duration {
		u.consec.Store(p.threshold)
		p.charge(u, errors.New("boom"))
		require.Equal(t, StateQuarantined, u.State())
		d := u.Stats().QuarantinedUntil.Sub(clock.Now())
		clock.Advance(d)
		p.releaseExpired(clock.Now())
		require.Equal(t, StateHealthy, u.State())
		return d
	}
	var got []time.Duration
	for range 5 {
		got = append(got, offend())
	}
	assert.Equal(t, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}, got)
	clock.Advance(5 * time.Minute) // healthy for MaxQuarantine: a clean slate
	assert.Equal(t, time.Minute, offend())
	assert.Equal(t, uint64(6), u.Stats().Quarantines)
}

func TestQuarantineThresholdAndOff(t *testing.T) {
	p := newTestPool(t, Config{FailuresUntilQuarantine: 5}, "a.example:1")
	u := p.Upstreams()[0]
	for i := range 5 {
		assert.Equal(t, StateHealthy, u.State(), "failure %d", i)
		u.recordFailure(errors.New("x"), faultUpstream, time.Now())
		p.charge(u, nil)
	}
	assert.Equal(t, StateQuarantined, u.State())

	off := newTestPool(t, Config{FailuresUntilQuarantine: -1}, "a.example:1")
	v := off.Upstreams()[0]
	for range 50 {
		v.recordFailure(errors.New("x"), faultUpstream, time.Now())
		off.charge(v, nil)
	}
	assert.Equal(t, StateHealthy, v.State())
	assert.Equal(t, 50, v.Stats().ConsecutiveFailures)
}

func TestAllQuarantinedAnswersNoUpstreamAtOnce(t *testing.T) {
	origin := startEchoOrigin(t)
	p := newTestPool(t, Config{FailuresUntilQuarantine: 1},
		"http://"+refusingAddr(t, "127.0.0.112"), "socks5://"+refusingAddr(t, "127.0.0.113"))
	_, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
	require.Error(t, err)
	assert.Equal(t, dial.KindFailed, dial.Classify(err), "the attempts themselves failed: %v", err)
	assert.Empty(t, p.Healthy())

	for range 3 {
		_, err = p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrAllQuarantined)
		assert.ErrorIs(t, err, dial.ErrNoUpstream)
		assert.Equal(t, dial.KindNoUpstream, dial.Classify(err), "503 no-upstream")
		var de *dial.Error
		require.ErrorAs(t, err, &de)
		assert.Zero(t, de.Attempt, "no attempt is made")
	}
	for _, u := range p.Upstreams() {
		assert.Equal(t, uint64(1), u.Stats().Failures, "nothing was retried meanwhile")
	}
}

func TestOnlyTheUpstreamsOwnFaultsCount(t *testing.T) {
	origin := startEchoOrigin(t)
	cases := []struct {
		name  string
		reply byte
	}{
		{"target refused", 0x05},
		{"target unreachable", 0x04},
		{"ruleset denies the target", 0x02},
	}
	for _, c := range cases {
		s := startSOCKSProxy(t, "127.0.0.114", proxyOpts{socksReply: c.reply})
		p := newTestPool(t, Config{FailuresUntilQuarantine: 2, Retries: -1}, "socks5://"+s.addr)
		for range 6 {
			_, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
			require.Error(t, err, c.name)
		}
		st := p.Upstreams()[0].Stats()
		assert.Equal(t, StateHealthy, st.State, c.name)
		assert.Zero(t, st.Quarantines, c.name)
	}

	// A client that went away is not the upstream's fault either.
	silent := startHTTPProxy(t, "127.0.0.115", proxyOpts{silent: true})
	p := newTestPool(t, Config{FailuresUntilQuarantine: 1, ConnectTimeout: time.Minute, Retries: -1}, "http://"+silent.addr)
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := p.Dial(ctx, &dial.Request{Target: origin.addr})
		cancel()
		require.Error(t, err)
	}
	assert.Equal(t, StateHealthy, p.Upstreams()[0].State())

	// The upstream's own failure (here a 502 without a target hint) counts.
	bad := startHTTPProxy(t, "127.0.0.116", proxyOpts{reply: "HTTP/1.1 502 Bad Gateway\r\n\r\n"})
	p = newTestPool(t, Config{FailuresUntilQuarantine: 2, Retries: -1}, "http://"+bad.addr)
	for range 2 {
		_, err := p.Dial(context.Background(), &dial.Request{Target: origin.addr})
		require.Error(t, err)
	}
	assert.Equal(t, StateQuarantined, p.Upstreams()[0].State())
}

func TestHealthySnapshotKeepsRoundRobinEven(t *testing.T) {
	p := newTestPool(t, Config{}, "a.example:1", "b.example:2", "c.example:3", "d.example:4")
	ups := p.Upstreams()
	ups[1].consec.Store(p.threshold)
	p.charge(ups[1], nil)
	counts := make(map[*Upstream]int)
	for range 300 {
		u, err := p.sel.Next()
		require.NoError(t, err)
		counts[u]++
	}
	assert.Equal(t, map[*Upstream]int{ups[0]: 100, ups[2]: 100, ups[3]: 100}, counts,
		"no double share for the entry after the quarantined one")
	assert.Same(t, ups[1], p.Upstreams()[1], "the full list keeps it")
	assert.Len(t, p.Status(), 4)
	assert.Equal(t, StateQuarantined, p.Status()[1].State)

	// A reload keeps its quarantine; dropping it from the list retires it.
	p.Replace(mustUpstreams(t, "a.example:1", "b.example:2", "c.example:3", "d.example:4"))
	assert.Equal(t, StateQuarantined, p.Upstreams()[1].State())
	assert.Len(t, p.Healthy(), 3)
	p.Replace(mustUpstreams(t, "a.example:1", "c.example:3"))
	assert.True(t, ups[1].retired.Load())
	assert.Len(t, p.Healthy(), 2)
}
