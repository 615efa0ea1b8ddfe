package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary doubles as the bare relay's process, as a program
	// calling Main does (see TestRunAgainstHopper).
	if os.Getenv(BareRelayEnv) != "" {
		ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		if _, err := serveBareRelayFromEnv(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

const tiny = 60 * time.Millisecond

func testOrigins(t *testing.T) *origins {
	t.Helper()
	o, err := startOrigins()
	require.NoError(t, err)
	t.Cleanup(o.close)
	return o
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Every scenario, direct and through a proxy on both front ends, moves the
// bytes it claims and yields positive figures.
func TestScenariosDirectAndThroughProxy(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	proxy := startTestProxy(t, &testProxy{})
	for _, r := range []route{{front: FrontDirect}, {front: FrontCONNECT, proxy: proxy}, {front: FrontSOCKS5, proxy: proxy}} {
		t.Run(r.front.String(), func(t *testing.T) {
			for _, mode := range []byte{modeDownload, modeUpload} {
				for _, streams := range []int{1, 3} {
					res, err := bulk(ctx, o, r, mode, streams, tiny)
					require.NoError(t, err, "%s ×%d", modeName(mode), streams)
					assert.Positive(t, res.bytes)
					assert.Positive(t, res.gbits())
				}
			}

			nt := newTunnels(ctx, o, r, 4, tiny)
			require.NoError(t, nt.firstErr)
			assert.Zero(t, nt.failures)
			assert.Positive(t, nt.ops)
			assert.Positive(t, nt.perSecond())
			assert.Positive(t, nt.lat.percentile(50))
			assert.GreaterOrEqual(t, nt.lat.percentile(99), nt.lat.percentile(50))

			rtt, err := echoRTT(ctx, o, r, tiny)
			require.NoError(t, err)
			assert.Positive(t, rtt.ops)
			assert.Positive(t, rtt.lat.percentile(50))

			if r.front != FrontSOCKS5 {
				fw := forward(ctx, o, r, 2, tiny)
				require.NoError(t, fw.firstErr)
				assert.Zero(t, fw.failures)
				assert.Positive(t, fw.ops)
				assert.Equal(t, 2, fw.conns, "keep-alive: one connection per client")
			}

			hs := httpsRequests(ctx, o, r, o.roots, 2, tiny)
			require.NoError(t, hs.firstErr)
			assert.Zero(t, hs.failures)
			assert.Positive(t, hs.ops)
			assert.Equal(t, 2, hs.conns, "keep-alive: one TLS connection per client")

			hn := httpsConnections(ctx, o, r, o.roots, 2, tiny)
			require.NoError(t, hn.firstErr)
			assert.Zero(t, hn.failures)
			assert.Positive(t, hn.ops)

			conns, err := openTunnels(ctx, o, r, 40)
			require.NoError(t, err)
			assert.Len(t, conns, 40)
			closeAll(conns)
		})
	}
}

// A proxy that loses upload bytes fails the bulk run instead of reporting a
// figure.
func TestBulkDetectsLostBytes(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	proxy := startTestProxy(t, &testProxy{upload: loseBytes(100 << 10)})
	_, err := bulk(ctx, o, route{front: FrontCONNECT, proxy: proxy}, modeUpload, 1, tiny)
	require.ErrorIs(t, err, ErrBytesMismatch)
}

// Bulk throughput is timed to the last byte: a proxy that passes the EOF on
// only after a while of its own (glider holds a finished tunnel for 5 s) is
// not charged for that wait.
func TestBulkTimedToLastByte(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	p := &testProxy{linger: 300 * time.Millisecond}
	proxy := startTestProxy(t, p)
	for _, mode := range []byte{modeDownload, modeUpload} {
		start := time.Now()
		res, err := bulk(ctx, o, route{front: FrontCONNECT, proxy: proxy}, mode, 2, tiny)
		require.NoError(t, err, modeName(mode))
		assert.Positive(t, res.bytes)
		passed := p.firstPassedAfter(start)
		require.False(t, passed.IsZero(), "%s: the proxy passed no EOF on", modeName(mode))
		assert.True(t, start.Add(res.elapsed).Before(passed), "%s: timed past the last byte", modeName(mode))
	}
}

// A proxy that refuses tunnels stops the idle scenario at once instead of
// letting every remaining tunnel time out.
func TestOpenTunnelsStopsAtFirstFailure(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	p := &testProxy{status: "503 Service Unavailable"}
	proxy := startTestProxy(t, p)
	conns, err := openTunnels(ctx, o, route{front: FrontCONNECT, proxy: proxy}, 5000)
	require.ErrorIs(t, err, ErrIdleShort)
	require.ErrorIs(t, err, ErrHandshake)
	assert.Empty(t, conns)
	assert.LessOrEqual(t, p.accepted.Load(), int64(64), "the workers stop after the first refusal")
}

func TestHandshakeRefusals(t *testing.T) {
	ctx := testContext(t)
	o := testOrigins(t)
	for name, tc := range map[string]struct {
		p     *testProxy
		front Front
	}{
		"CONNECT 403":       {&testProxy{status: "403 Forbidden"}, FrontCONNECT},
		"CONNECT 502":       {&testProxy{status: "502 Bad Gateway"}, FrontCONNECT},
		"SOCKS5 refused":    {&testProxy{socks: 5}, FrontSOCKS5},
		"SOCKS5 disallowed": {&testProxy{socks: 2}, FrontSOCKS5},
	} {
		t.Run(name, func(t *testing.T) {
			addr := startTestProxy(t, tc.p)
			c, err := route{front: tc.front, proxy: addr}.dial(ctx, o.echoAddr())
			if c != nil {
				_ = c.Close()
			}
			require.ErrorIs(t, err, ErrHandshake)
		})
	}
}

func TestPercentile(t *testing.T) {
	var l latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Microsecond)
	}
	assert.InDelta(t, 50, l.percentile(50), 0.001)
	assert.InDelta(t, 99, l.percentile(99), 0.001)
	assert.InDelta(t, 100, l.percentile(100), 0.001)
	assert.Equal(t, time.Duration(100)*time.Microsecond, l[0], "percentile must not reorder its input")
	assert.Zero(t, latencies(nil).percentile(50))
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultDuration, o.Duration)
	assert.Equal(t, DefaultReps, o.Reps)
	assert.Equal(t, DefaultIdleTunnels, o.IdleTunnels)
	q, err := Options{Quick: true, Reps: 5}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultQuickDuration, q.Duration)
	assert.Equal(t, 5, q.Reps)
	assert.Equal(t, DefaultQuickIdleTunnels, q.IdleTunnels)
	for _, bad := range []Options{{Reps: -1}, {IdleTunnels: maxIdleTunnels + 1}, {Duration: -time.Second}, {ForwardConns: -2}} {
		_, err := bad.withDefaults()
		assert.ErrorIs(t, err, ErrOptions, "%+v", bad)
	}
}
